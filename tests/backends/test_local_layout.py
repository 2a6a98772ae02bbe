"""Local cluster layout: generated slurm.conf / gres.conf / slurmdbd.conf, ports, paths."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest

from hpcrun.backends.local_layout import (
    DEFAULT_PORT_BASE,
    MAX_SOCKET_DIR,
    LocalPaths,
    Ports,
    check_ports,
    find_free_ports,
    port_is_free,
    render_config_files,
)
from hpcrun.config.models import LocalClusterConfig
from hpcrun.errors import PortInUse, UsageError
from tests.golden_util import assert_golden

ROOT = Path("/hpc/clusters/dev")
PORTS = Ports(16800, 4)


def render(**overrides: Any) -> dict[str, str]:
    config = LocalClusterConfig(port_base=16800, **overrides).model_dump()
    return render_config_files(LocalPaths(ROOT), config, Ports(16800, config["nodes"]))


def conf_lines(text: str) -> dict[str, str]:
    """Key=Value lines of a Slurm config file; NodeName/PartitionName lines keyed by name."""
    lines = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        lines[key] = value
    return lines


# --- golden files -------------------------------------------------------------------------


def test_default_config_golden() -> None:
    files = render()
    assert sorted(files) == ["gres.conf", "slurm.conf", "slurmdbd.conf"]
    for name, text in files.items():
        assert_golden(name, text)


def test_no_accounting_golden() -> None:
    files = render(accounting=False)
    assert sorted(files) == ["gres.conf", "slurm.conf"]
    assert_golden("slurm_no_accounting.conf", files["slurm.conf"])
    conf = conf_lines(files["slurm.conf"])
    assert conf["AccountingStorageType"] == "accounting_storage/none"
    assert "AccountingStoragePort" not in conf
    assert "AccountingStoragePass" not in conf


def test_no_gpus_golden() -> None:
    files = render(gpus_per_node=0)
    assert_golden("slurm_no_gpus.conf", files["slurm.conf"])
    assert_golden("gres_no_gpus.conf", files["gres.conf"])
    assert "Gres=" not in files["slurm.conf"]
    assert "Name=gpu" not in files["gres.conf"]
    assert conf_lines(files["gres.conf"]) == {"AutoDetect": "off"}


# --- what hpcrun relies on, stated explicitly ---------------------------------------------


def test_scheduler_allows_job_expansion_and_big_arrays() -> None:
    conf = conf_lines(render()["slurm.conf"])
    assert "permit_job_expansion" in conf["SchedulerParameters"].split(",")
    assert int(conf["MaxArraySize"]) >= 10001  # indexes 0..10000
    assert int(conf["MaxJobCount"]) >= 20000


def test_node_line_declares_gpus_and_a_port_per_node() -> None:
    slurm_conf = render()["slurm.conf"]
    (node_line,) = [line for line in slurm_conf.splitlines() if line.startswith("NodeName=")]
    fields = dict(f.split("=", 1) for f in node_line.split())
    assert fields["NodeName"] == "n[1-4]"
    assert fields["Gres"] == "gpu:2"
    assert fields["Port"] == "16803-16806"
    assert fields["CPUs"] == "8"
    assert fields["RealMemory"] == "4096"


def test_ports_in_config_match_the_port_block() -> None:
    files = render()
    slurm = conf_lines(files["slurm.conf"])
    dbd = conf_lines(files["slurmdbd.conf"])
    assert slurm["SlurmctldPort"] == str(PORTS.slurmctld)
    assert slurm["SlurmdPort"] == str(PORTS.slurmd_first)
    assert slurm["AccountingStoragePort"] == dbd["DbdPort"] == str(PORTS.slurmdbd)
    assert dbd["StoragePort"] == str(PORTS.mariadb)


def test_accounting_password_is_the_munge_socket() -> None:
    files = render()
    slurm = conf_lines(files["slurm.conf"])
    socket_path = str(LocalPaths(ROOT).munge_socket)
    assert slurm["AccountingStoragePass"] == socket_path
    assert slurm["AuthInfo"] == f"socket={socket_path}"
    assert conf_lines(files["slurmdbd.conf"])["AuthInfo"] == f"socket={socket_path}"


def test_gres_conf_lists_one_device_file_per_gpu() -> None:
    gres = render(gpus_per_node=3, nodes=2)["gres.conf"]
    assert f"NodeName=n[1-2] Name=gpu File={ROOT}/dev/gpu[0-2]\n" in gres


def test_every_path_stays_under_the_cluster_root() -> None:
    for name, text in render().items():
        for line in text.splitlines():
            if line.startswith("#"):
                continue
            for token in line.replace("=", " ").split():
                if token.startswith("/"):
                    assert token.startswith(f"{ROOT}/"), f"{name}: {line}"


def test_missing_config_key_fails_loudly() -> None:
    config = LocalClusterConfig(port_base=16800).model_dump()
    del config["partition"]
    with pytest.raises(jinja2.UndefinedError):
        render_config_files(LocalPaths(ROOT), config, PORTS)


# --- ports --------------------------------------------------------------------------------


def test_port_block_layout() -> None:
    assert PORTS.all() == {
        16800: "slurmctld",
        16801: "slurmdbd",
        16802: "mariadb",
        16803: "slurmd n1",
        16804: "slurmd n2",
        16805: "slurmd n3",
        16806: "slurmd n4",
    }
    assert PORTS.slurmd_last == 16806


@pytest.fixture
def listening() -> Iterator[list[socket.socket]]:
    """Sockets the test binds; closed afterwards."""
    held: list[socket.socket] = []
    yield held
    for sock in held:
        sock.close()


def listen_on(held: list[socket.socket], port: int, host: str = "127.0.0.1") -> int:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.append(sock)
    # As the daemons do: a cluster stopped moments ago (the README test's, say) leaves its
    # connections in TIME_WAIT on these ports, which would otherwise refuse the bind.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen()
    return int(sock.getsockname()[1])


def test_find_free_ports_skips_claimed_ports() -> None:
    first = find_free_ports(4, set())
    assert first.base >= DEFAULT_PORT_BASE
    claimed = {first.slurmd_last}  # one port of the block is enough to skip it
    second = find_free_ports(4, claimed)
    assert second.base != first.base
    assert not set(second.all()) & claimed


def test_find_free_ports_skips_a_port_in_use(listening: list[socket.socket]) -> None:
    first = find_free_ports(2, set())
    listen_on(listening, first.mariadb)
    second = find_free_ports(2, set())
    assert second.base != first.base
    assert first.mariadb not in second.all()


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_check_ports_names_the_busy_port(listening: list[socket.socket], host: str) -> None:
    port = listen_on(listening, 0, host)
    assert not port_is_free(port)
    with pytest.raises(PortInUse) as err:
        check_ports(Ports(port, 1))
    assert err.value.port == port
    assert str(port) in err.value.message
    assert "slurmctld" in err.value.message
    assert err.value.hint is not None and "--port-base" in err.value.hint


def test_check_ports_passes_on_a_free_block() -> None:
    check_ports(find_free_ports(1, set()))


# --- paths --------------------------------------------------------------------------------


def test_make_dirs_creates_the_layout(tmp_path: Path) -> None:
    paths = LocalPaths(tmp_path / "dev")
    paths.make_dirs()
    for path in (paths.etc, paths.log, paths.run, paths.state, paths.spool, paths.devices):
        assert path.is_dir()
    assert paths.munge.stat().st_mode & 0o777 == 0o700
    paths.make_dirs()  # again: nothing to do, no error


def test_make_dirs_rejects_a_root_too_long_for_unix_sockets(tmp_path: Path) -> None:
    root = tmp_path / ("x" * (MAX_SOCKET_DIR + 1))
    with pytest.raises(UsageError, match="too long for unix sockets") as err:
        LocalPaths(root).make_dirs()
    assert err.value.hint is not None and "HPCRUN_HOME" in err.value.hint
    assert not root.exists()


def test_socket_paths_fit_when_run_dir_is_at_the_limit() -> None:
    root = Path("/" + "r" * (MAX_SOCKET_DIR - len("/run") - 1))
    paths = LocalPaths(root)
    assert len(str(paths.run)) == MAX_SOCKET_DIR
    assert len(str(paths.munge_socket).encode()) < 108
