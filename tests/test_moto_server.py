"""The moto server helper: a real server process on loopback that boto3 reaches through
the normal credential chain, stopped by PID afterwards."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.aws import moto_server

pytestmark = pytest.mark.aws


def test_boto3_reaches_moto_through_the_environment_and_the_server_stops(
    tmp_path: Path,
) -> None:
    code = (
        "import boto3, json; ec2 = boto3.client('ec2');"
        "vpc = ec2.create_vpc(CidrBlock='10.0.0.0/16')['Vpc']['VpcId'];"
        "print(json.dumps([v['VpcId'] for v in ec2.describe_vpcs()['Vpcs']]))"
    )
    with moto_server(tmp_path) as server:
        done = subprocess.run(
            [sys.executable, "-c", code], env=server.env(), capture_output=True, text=True,
            timeout=60, check=True,
        )
        pid = server.pid
    assert len(json.loads(done.stdout)) >= 2  # moto's default VPC and ours
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
