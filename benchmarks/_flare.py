"""What the FLARE benchmarks share: a FLARE system started by hand, as NVIDIA's guide does
it outside Kubernetes (provision, then the server and each client as plain processes in
their kits), with the by-hand fixes any user needs on one machine: free ports in the
project and the kits' `target` pointed at 127.0.0.1."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from hpcrun.node.flare.cli import free_ports
from hpcrun.workloads.flare import default_project

NVFLARE = str(Path(sys.executable).with_name("nvflare"))


class ByHand:
    """Provision + server + clients as processes; `start` returns when all registered."""

    def __init__(self, root: Path, sites: int) -> None:
        self.root = root
        self.sites = sites
        self.procs: list[subprocess.Popen[bytes]] = []
        self.kits = root / "ws" / "hpcrun" / "prod_00"

    def start(self) -> float:
        started = time.perf_counter()
        fl, admin = free_ports(2)
        self.root.mkdir(parents=True, exist_ok=True)
        project = self.root / "project.yml"
        project.write_text(default_project(self.sites, fl_port=fl, admin_port=admin))
        subprocess.run([NVFLARE, "provision", "-p", str(project), "-w", str(self.root / "ws"),
                        "--force"], check=True, capture_output=True)
        for n in range(1, self.sites + 1):
            path = self.kits / f"site-{n}" / "startup" / "fed_client.json"
            config = json.loads(path.read_text())
            config["servers"][0]["service"]["target"] = f"127.0.0.1:{fl}"
            path.write_text(json.dumps(config))
        admin_path = self.kits / "admin@nvidia.com" / "startup" / "fed_admin.json"
        config = json.loads(admin_path.read_text())
        config["admin"]["host"] = "127.0.0.1"
        admin_path.write_text(json.dumps(config))
        server = self.kits / "server"
        self.procs.append(subprocess.Popen(
            [sys.executable, "-u", "-m", "nvflare.private.fed.app.server.server_train", "-m",
             str(server), "-s", "fed_server.json", "--set", "secure_train=true",
             "config_folder=config", "org=nvidia"],
            cwd=server, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for n in range(1, self.sites + 1):
            kit = self.kits / f"site-{n}"
            self.procs.append(subprocess.Popen(
                [sys.executable, "-u", "-m", "nvflare.private.fed.app.client.client_train",
                 "-m", str(kit), "-s", "fed_client.json", "--set", "secure_train=true",
                 f"uid=site-{n}", "config_folder=config", "org=nvidia"],
                cwd=kit, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        log = server / "log.txt"
        wanted = f"Total clients: {self.sites}"
        while not (log.exists() and wanted in log.read_text()):
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a FLARE process of the by-hand system ended; see {log}")
            time.sleep(0.1)
        return time.perf_counter() - started

    @property
    def admin_kit(self) -> Path:
        return self.kits / "admin@nvidia.com"

    def stop(self) -> None:
        subprocess.run([NVFLARE, "system", "shutdown", "all", "--force", "--startup-kit",
                        str(self.admin_kit)], capture_output=True, timeout=120)
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
