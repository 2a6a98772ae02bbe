"""Fixtures the EKS tests share: a real moto server with AWS's managed IAM policies (the
EKS lifecycle attaches AmazonEKSClusterPolicy and the like, which moto has only when it
loads them), one per test module."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.aws import MotoServer, moto_server


@pytest.fixture(scope="module")
def eks_moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    if not Path(sys.executable).with_name("moto_server").exists():
        message = "moto_server is not installed (pip install -e '.[dev]')"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
        with moto_server(tmp_path_factory.mktemp("eks")) as started:
            yield started
