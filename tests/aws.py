"""A real moto server on loopback: the edge of the world for AWS APIs in tests.

Started as its own process (`moto_server -H 127.0.0.1 -p PORT`), reached through the
normal boto3 / pcluster credential chain pointed at it with AWS_ENDPOINT_URL and dummy
keys, and stopped by PID. Nothing talks to real AWS: the environment it hands out has no
other credentials and no instance metadata.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.conftest import clean_environ, free_port

REGION = "us-east-1"


@dataclass(frozen=True)
class MotoServer:
    url: str
    pid: int

    def env(self) -> dict[str, str]:
        """Environment for a process that must reach this server and nothing else: no
        other AWS settings, and none of the user's hpcrun or Slurm ones (HPCRUN_HOME would
        send the process to the user's own clusters)."""
        env = {k: v for k, v in clean_environ().items() if not k.startswith("AWS_")}
        env.update(
            AWS_ENDPOINT_URL=self.url,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION=REGION,
            AWS_EC2_METADATA_DISABLED="true",
        )
        return env


@contextmanager
def moto_server(log_dir: Path) -> Iterator[MotoServer]:
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    log = (log_dir / "moto.log").open("wb")
    proc = subprocess.Popen(
        [str(exe), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url + "/moto-api/", timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"moto_server did not start: {(log_dir / 'moto.log').read_text()[-500:]}"
                    ) from None
                time.sleep(0.05)
        yield MotoServer(url, proc.pid)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


# --- seeding moto for ParallelCluster -------------------------------------------------------

ACCOUNT_ID = "123456789012"  # moto's default account
KEY_NAME = "hpcrun-test"


def client(server: MotoServer, service: str, region: str = REGION) -> Any:
    """A boto3 client of `server`, built from its own environment (this process's is
    left alone, so nothing here can reach real AWS)."""
    import boto3  # type: ignore[import-untyped]

    env = server.env()
    session = boto3.session.Session(
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=region,
    )
    return session.client(service, endpoint_url=server.url)


def seed_network(server: MotoServer, region: str = REGION) -> dict[str, str]:
    """What a ParallelCluster dry run and create need to find in moto: a VPC with a
    subnet, a key pair, a custom AMI, and pcluster's S3 bucket.

    The AMI is made from an instance (RunInstances + CreateImage) because moto's
    RegisterImage drops `Architecture`, and pcluster then rejects the AMI ("AMI ...'s
    architecture (None) is incompatible with ... g4dn.4xlarge"). The bucket is created
    and marked bootstrapped here because moto evaluates a Deny with a Condition as a
    plain Deny: the bucket policy pcluster writes (deny when aws:SecureTransport is
    false) would then lock pcluster out of its own bucket ("Unable to initialize s3
    bucket ... 'Forbidden'"). Returns vpc_id, subnet_id, key_name, ami_id, bucket.
    """
    ec2 = client(server, "ec2", region)
    vpc_id = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet_id = ec2.create_subnet(
        VpcId=vpc_id, CidrBlock="10.0.1.0/24", AvailabilityZone=f"{region}a"
    )["Subnet"]["SubnetId"]
    ec2.create_key_pair(KeyName=KEY_NAME)
    base = ec2.describe_images(
        Owners=["amazon"],
        Filters=[
            {"Name": "architecture", "Values": ["x86_64"]},
            {"Name": "name", "Values": ["amzn2-ami-hvm-*"]},
        ],
    )["Images"][0]["ImageId"]
    instance_id = ec2.run_instances(
        ImageId=base, MinCount=1, MaxCount=1, InstanceType="t3.micro", SubnetId=subnet_id
    )["Instances"][0]["InstanceId"]
    ami_id = ec2.create_image(InstanceId=instance_id, Name="hpcrun-test-index-ami")["ImageId"]
    ec2.terminate_instances(InstanceIds=[instance_id])
    bucket = bootstrap_pcluster_bucket(server, region)
    return {
        "vpc_id": vpc_id,
        "subnet_id": subnet_id,
        "key_name": KEY_NAME,
        "ami_id": ami_id,
        "bucket": bucket,
    }


def bootstrap_pcluster_bucket(server: MotoServer, region: str = REGION) -> str:
    """Create ParallelCluster's per-region bucket as pcluster would, minus its bucket
    policy (see `seed_network`), and mark it bootstrapped so pcluster uses it as is."""
    from pcluster.constants import (  # type: ignore[import-untyped]
        PCLUSTER_BUCKET_REQUIRED_BOOTSTRAP_FEATURES,
    )
    from pcluster.models.s3_bucket import S3Bucket  # type: ignore[import-untyped]

    name: str = S3Bucket.get_bucket_name(ACCOUNT_ID, region)
    s3 = client(server, "s3", region)
    if region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name, CreateBucketConfiguration={"LocationConstraint": region})
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(
        Bucket=name,
        Key="parallelcluster/.bootstrapped",
        Body=json.dumps({"bootstrapped_features": PCLUSTER_BUCKET_REQUIRED_BOOTSTRAP_FEATURES}),
    )
    return name


def pcluster_cluster_data(seeded: dict[str, str], name: str, **overrides: Any) -> dict[str, Any]:
    """The index-g4dn preset as a cluster-file mapping, pointed at `seed_network`'s AMI,
    subnet, VPC and key pair; `overrides` replace any key after that."""
    import yaml

    from hpcrun.config.presets import preset_text

    data: dict[str, Any] = yaml.safe_load(preset_text("index-g4dn"))
    data.update(
        name=name,
        custom_ami=seeded["ami_id"],
        subnet_id=seeded["subnet_id"],
        vpc_id=seeded["vpc_id"],
        key_name=seeded["key_name"],
    )
    data.update(overrides)
    return data
