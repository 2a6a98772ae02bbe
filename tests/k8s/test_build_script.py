"""scripts/k8s/build.sh's last step checks that the cached binaries report the versions
asked for. CI once failed there on binaries that were right: `etcd --version | grep -q`
under pipefail fails whenever grep exits at its first match and etcd then dies of SIGPIPE
writing its remaining lines. These tests run the script over a cache of stand-in binaries
whose stamps say they are up to date, so only the check runs (no Go build)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "k8s" / "build.sh"
VERSIONS = {
    "K8S_VERSION": "v1.99.0",
    "ETCD_VERSION": "v9.9.9",
    "KWOK_VERSION": "v0.0.1",
    "HELM_VERSION": "v0.0.2",
    "METRICS_SERVER_VERSION": "v0.0.3",
}


def _go() -> str:
    go = shutil.which("go", path=f"{os.environ.get('PATH', '')}:/usr/local/go/bin")
    if go is None:
        pytest.skip("go not installed (make setup installs it)")
    return go


def _stand_in(path: Path, body: str) -> None:
    path.write_text(f"#!/usr/bin/env bash\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def _cache(tmp_path: Path, etcd_body: str) -> tuple[Path, dict[str, str]]:
    go = _go()
    goversion = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=True
    ).stdout.strip()
    bin_dir = tmp_path / f"k8s-{VERSIONS['K8S_VERSION']}" / "bin"
    bin_dir.mkdir(parents=True)
    k8s, kwok = VERSIONS["K8S_VERSION"], VERSIONS["KWOK_VERSION"]
    modules = {
        **{
            name: f"k8s.io/kubernetes@{k8s}"
            for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")
        },
        "etcd": f"go.etcd.io/etcd/server/v3@{VERSIONS['ETCD_VERSION']}",
        "kwok": f"sigs.k8s.io/kwok@{kwok} k8s={k8s}",
        "kwokctl": f"sigs.k8s.io/kwok@{kwok} k8s={k8s}",
        "helm": f"helm.sh/helm/v3@{VERSIONS['HELM_VERSION']}",
        "metrics-server": f"sigs.k8s.io/metrics-server@{VERSIONS['METRICS_SERVER_VERSION']}",
    }
    for name, module in modules.items():
        (bin_dir / f".stamp-{name}").write_text(f"{name} {module} go={goversion}\n")
        _stand_in(bin_dir / name, "exit 0")
    _stand_in(bin_dir / "kubectl", f'echo "Client Version: {k8s}"; echo "Kustomize Version: v5"')
    _stand_in(bin_dir / "kube-apiserver", f'echo "Kubernetes {k8s}"')
    _stand_in(bin_dir / "etcd", etcd_body)
    _stand_in(bin_dir / "metrics-server", f'echo "{VERSIONS["METRICS_SERVER_VERSION"]}"')
    env = {
        **os.environ,
        **VERSIONS,
        "HPCRUN_K8S_CACHE": str(tmp_path),
        "PATH": f"{Path(go).parent}:{os.environ.get('PATH', '')}",
    }
    return bin_dir, env


def test_an_up_to_date_cache_passes_even_when_a_binary_prints_after_its_version(
    tmp_path: Path,
) -> None:
    # etcd's real --version prints four lines; the pause makes the race certain
    slow_etcd = 'echo "etcd Version: 9.9.9"; sleep 0.3; echo "Git SHA: x"; echo "Go Version: y"'
    bin_dir, env = _cache(tmp_path, slow_etcd)
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(bin_dir)
    assert "up to date" in done.stdout and "building" not in done.stdout


def test_a_binary_reporting_another_version_is_refused(tmp_path: Path) -> None:
    _, env = _cache(tmp_path, 'echo "etcd Version: 3.5.0"; echo "Git SHA: x"')
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "error: etcd does not report 9.9.9" in done.stderr


def test_a_metrics_server_reporting_another_version_is_refused(tmp_path: Path) -> None:
    bin_dir, env = _cache(tmp_path, 'echo "etcd Version: 9.9.9"')
    _stand_in(bin_dir / "metrics-server", 'echo "v0.7.2"')
    done = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert "error: metrics-server does not report v0.0.3" in done.stderr
