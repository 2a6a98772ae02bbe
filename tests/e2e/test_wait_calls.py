"""What `submit --wait` and `jobs --json` ask of the real local Slurm: `wait` polls one
squeue form that also carries exit codes, so nothing follows the poll that sees the end;
a job the controller no longer knows goes to accounting; the whole queue reaches JSON
text as its parsed jobs would; and `submit --wait` in a script reports without rich."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from hpcrun.slurm import JobSpec, SlurmClient
from hpcrun.slurm.parse import jobs_json_lines
from hpcrun.transport.runner import Completed, Runner
from tests.conftest import Cluster

pytestmark = pytest.mark.slurm


class Recording:
    """The cluster's own runner, noting each command it runs (nothing is answered here)."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.ran: list[tuple[str, ...]] = []

    def run(
        self, argv: Sequence[str], *, input: str | None = None, timeout_s: float | None = 60.0
    ) -> Completed:
        self.ran.append(tuple(argv))
        return self.runner.run(argv, input=input, timeout_s=timeout_s)

    def put(self, path: str, data: bytes) -> None:
        self.runner.put(path, data)

    def get(self, path: str, offset: int = 0) -> bytes:
        return self.runner.get(path, offset)

    def spawn(self, argv: Sequence[str], *, log_path: str) -> int:
        return self.runner.spawn(argv, log_path=log_path)


def test_wait_ends_on_the_poll_that_sees_the_end_with_its_exit_code(
    local_cluster: Cluster,
) -> None:
    recording = Recording(local_cluster.client.runner)
    client = SlurmClient(recording)
    job_id = client.submit(JobSpec(command=["sh", "-c", "exit 3"], name="hpcrun-wait-calls"))
    recording.ran.clear()
    (job,) = client.wait(job_id, timeout_s=120)
    assert (str(job.state), job.exit_code) == ("FAILED", 3)
    programs = [argv[0] for argv in recording.ran]
    assert set(programs) == {"squeue"}, recording.ran  # no scontrol or sacct after it
    assert all("-O" in argv for argv in recording.ran)


def test_a_job_the_controller_never_knew_is_asked_of_accounting(local_cluster: Cluster) -> None:
    recording = Recording(local_cluster.client.runner)
    assert SlurmClient(recording)._jobs_ending("987654") == []
    assert [argv[0] for argv in recording.ran] == ["squeue", "sacct"]


def test_the_whole_queue_as_json_text_is_its_parsed_jobs(local_cluster: Cluster) -> None:
    client = local_cluster.client
    # States that hold still while both are read: one running job, an array behind it.
    running = client.submit(JobSpec(command=["sleep", "300"], name="hpcrun-json-a"))
    array = client.submit(JobSpec(command=["true"], name="hpcrun-json-b", array="0-3",
                                  dependency=f"afterok:{running}"))
    try:
        deadline = time.monotonic() + 60
        while str(client.jobs([running])[0].state) != "RUNNING":
            assert time.monotonic() < deadline, "the sleep never started"
            time.sleep(0.1)

        def ours(lines: list[str]) -> list[str]:
            return [line for line in lines
                    if json.loads(line)["job_id"].split("_")[0] in (running, array)]

        as_text = ours(client.queue_json_lines())
        assert as_text == ours(jobs_json_lines(client.jobs()))
        assert len(as_text) == 5
    finally:
        client.cancel([array, running])


def test_submit_wait_in_a_script_reports_its_end_without_rich(local_cluster: Cluster) -> None:
    code = (
        "import sys\n"
        "from hpcrun.cli import main\n"
        "try:\n"
        "    main(['submit', '--wait', '--', 'sh', '-c', 'exit 3'])\n"
        "except SystemExit as exc:\n"
        "    print('rich' in sys.modules, exc.code)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env={**local_cluster.env,
                                           "HPCRUN_HOME": str(local_cluster.home),
                                           "HPCRUN_CLUSTER": local_cluster.name},
        capture_output=True, text=True, timeout=120, cwd=local_cluster.workdir,
    )  # fmt: skip
    job_id, rich_loaded, code = done.stdout.split()  # submit prints the job id first
    assert (rich_loaded, code) == ("False", "3"), done.stderr
    assert done.stderr.rstrip() == f"job {job_id}: FAILED (exit 3)", done.stderr
