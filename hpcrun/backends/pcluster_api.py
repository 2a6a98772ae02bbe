"""How hpcrun speaks to AWS ParallelCluster: the `pcluster` CLI of this venv, plus boto3.

Cluster lifecycle calls (dry run, create, describe, delete) run `pcluster ... --region R`
as a subprocess and parse the JSON it prints. pcluster's in-process API
(`pcluster.lib`) was measured and rejected: importing it costs 1.4-1.7 s, about what
the process start costs (a whole dry run is ~2.8 s either way, cold), and it keeps global
state: it rewrites `os.environ["AWS_DEFAULT_REGION"]`, caches boto3 clients and their
answers in a singleton (a polling loop would see stale data), prints its boto3 errors on
our stderr, and cannot take per-call environment overrides. A subprocess has none of
that and can be killed with its CDK/jsii node helpers. Waiting and stack events use
boto3's CloudFormation client directly: a poll then costs ~10 ms instead of a 2.5 s
`pcluster describe-cluster`, and deleted stacks stay visible by ARN, which pcluster
cannot show. Every failure becomes an `HpcrunError` saying what went wrong and how to
fix it; credentials are never logged (argv holds none, the environment is not logged).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from hpcrun.errors import HpcrunError

LOG = logging.getLogger(__name__)

# Validators that cannot pass against moto (the AWS stand-in in tests and benchmarks):
# the two launch-template validators issue RunInstances with DryRun=True, which moto
# answers "The request must contain the parameter ebs"; KeyPairValidator reads a `KeyType`
# moto does not return. On real AWS they catch real mistakes, so nothing is suppressed by
# default.
SUPPRESS_FOR_MOTO: tuple[str, ...] = (
    "type:HeadNodeLaunchTemplateValidator",
    "type:ComputeResourceLaunchTemplateValidator",
    "type:KeyPairValidator",
)
DEFAULT_SUPPRESSED: tuple[str, ...] = ()

# pcluster prints this (and exits 1) when a dry run found nothing at ERROR level.
DRY_RUN_OK = "Request would have succeeded, but DryRun flag is set."

# pcluster's clusterStatus from a CloudFormation stack status
# (pcluster.api.converters.cloud_formation_status_to_cluster_status, 3.16): everything
# else is passed through unchanged.
CLUSTER_STATUS_FOR_STACK_STATUS = {
    "ROLLBACK_IN_PROGRESS": "CREATE_FAILED",
    "ROLLBACK_FAILED": "CREATE_FAILED",
    "ROLLBACK_COMPLETE": "CREATE_FAILED",
    "UPDATE_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_IN_PROGRESS",
    "UPDATE_ROLLBACK_IN_PROGRESS": "UPDATE_IN_PROGRESS",
    "UPDATE_ROLLBACK_FAILED": "UPDATE_FAILED",
    "UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS": "UPDATE_IN_PROGRESS",
    "UPDATE_ROLLBACK_COMPLETE": "UPDATE_FAILED",
}

NO_CREDENTIALS = "no AWS credentials found"
CREDENTIALS_HINT = "set AWS_PROFILE or run `aws configure` / `aws sso login`"
LOG_HINT = "pcluster's own log has the details: ~/.parallelcluster/pcluster-cli.log"

Env = Mapping[str, str] | None
Progress = Callable[[str, float], None]


class PclusterError(HpcrunError):
    """ParallelCluster (or AWS behind it) refused or failed; `detail` is its own message."""

    def __init__(self, message: str, hint: str | None = None, detail: str = "") -> None:
        super().__init__(message, hint)
        self.detail = detail


class ClusterNotFound(PclusterError):
    """No ParallelCluster cluster (CloudFormation stack) of that name in that region."""

    def __init__(self, name: str, region: str) -> None:
        super().__init__(
            f"no ParallelCluster cluster named {name!r} in {region}",
            f"check the name and region (`pcluster list-clusters --region {region}`)",
        )
        self.name = name
        self.region = region


@dataclass(frozen=True)
class ValidationMessage:
    """One finding of a ParallelCluster validator, e.g. WARNING DcvValidator ..."""

    level: str  # ERROR, WARNING or INFO
    type: str  # the validator's class name, what `--suppress-validators type:X` takes
    message: str

    def __str__(self) -> str:
        return f"{self.level} {self.type}: {self.message}"


@dataclass(frozen=True)
class DryRunResult:
    """What `pcluster create-cluster --dryrun true` said about a configuration."""

    ok: bool
    message: str  # pcluster's top-level message, e.g. "Invalid cluster configuration: ..."
    messages: tuple[ValidationMessage, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> tuple[ValidationMessage, ...]:
        return tuple(m for m in self.messages if m.level == "ERROR")


@dataclass(frozen=True)
class CreateResult:
    """`pcluster create-cluster` started a CloudFormation stack; it is not ready yet."""

    name: str
    status: str
    stack_arn: str
    messages: tuple[ValidationMessage, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ClusterDescription:
    """A cluster as `pcluster describe-cluster` (or, once deleted, CloudFormation) sees it."""

    name: str
    status: str  # pcluster's clusterStatus: CREATE_IN_PROGRESS, CREATE_COMPLETE, ...
    stack_status: str  # the CloudFormation stack's own status
    stack_name: str
    stack_arn: str | None
    head_node_public_ip: str | None = None
    head_node_private_ip: str | None = None
    head_node_instance_id: str | None = None
    failure_reason: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_pcluster(cls, data: Mapping[str, Any]) -> ClusterDescription:
        head = data.get("headNode") or {}
        failures = data.get("failures") or []
        reasons = [f.get("failureReason") for f in failures if f.get("failureReason")]
        name = str(data.get("clusterName", ""))
        return cls(
            name=name,
            status=str(data.get("clusterStatus", "UNKNOWN")),
            stack_status=str(data.get("cloudFormationStackStatus", "UNKNOWN")),
            stack_name=name,  # pcluster names the stack after the cluster
            stack_arn=data.get("cloudformationStackArn"),
            head_node_public_ip=head.get("publicIpAddress"),
            head_node_private_ip=head.get("privateIpAddress"),
            head_node_instance_id=head.get("instanceId"),
            failure_reason="; ".join(reasons) or None,
            raw=dict(data),
        )

    @classmethod
    def from_stack(cls, stack: Mapping[str, Any]) -> ClusterDescription:
        """From CloudFormation's DescribeStacks entry: what is left to say once deleted."""
        status = str(stack["StackStatus"])
        return cls(
            name=str(stack["StackName"]),
            status=CLUSTER_STATUS_FOR_STACK_STATUS.get(status, status),
            stack_status=status,
            stack_name=str(stack["StackName"]),
            stack_arn=stack.get("StackId"),
            failure_reason=stack.get("StackStatusReason"),
            raw={k: str(v) if isinstance(v, datetime) else v for k, v in stack.items()},
        )


@dataclass(frozen=True)
class StackEvent:
    """One CloudFormation stack event; the failed ones say why a cluster did not come up."""

    timestamp: datetime | None
    logical_id: str
    resource_type: str
    status: str
    reason: str | None
    physical_id: str | None = None

    @property
    def failed(self) -> bool:
        return self.status.endswith("_FAILED")

    @classmethod
    def from_api(cls, event: Mapping[str, Any]) -> StackEvent:
        return cls(
            timestamp=event.get("Timestamp"),
            logical_id=str(event.get("LogicalResourceId", "")),
            resource_type=str(event.get("ResourceType", "")),
            status=str(event.get("ResourceStatus", "")),
            reason=event.get("ResourceStatusReason"),
            physical_id=event.get("PhysicalResourceId"),
        )

    def __str__(self) -> str:
        when = self.timestamp.strftime("%H:%M:%S ") if self.timestamp else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{when}{self.logical_id} ({self.resource_type}) {self.status}{why}"


def format_events(events: Sequence[StackEvent], limit: int = 10) -> str:
    """Failed events first (they say why), then the most recent others, one per line."""
    failed = [e for e in events if e.failed]
    others = [e for e in events if not e.failed]
    shown = (failed + others)[:limit]
    return "\n".join(f"  {event}" for event in shown) or "  (no stack events)"


# --- running pcluster ------------------------------------------------------------------


def pcluster_executable() -> str:
    """The `pcluster` beside this interpreter (the venv hpcrun runs in), else on PATH."""
    beside = Path(sys.executable).with_name("pcluster")
    if beside.exists():
        return str(beside)
    found = shutil.which("pcluster")
    if found is None:
        raise PclusterError(
            "pcluster is not installed (aws-parallelcluster is an optional dependency)",
            "pip install 'hpcrun[aws]' (it also needs Node.js on PATH for create-cluster)",
        )
    return found


def _environment(env: Env) -> dict[str, str]:
    return {**os.environ, **(env or {})}


def _run_pcluster(
    args: Sequence[str], region: str, env: Env, timeout_s: float
) -> tuple[int, dict[str, Any]]:
    """Run `pcluster ARGS --region R`; return its exit status and its JSON output.

    The process gets its own session so that a timeout ends it together with the node
    (jsii) helpers CDK starts during create-cluster.
    """
    argv = [pcluster_executable(), *args, "--region", region]
    LOG.debug("running %s", " ".join(argv))
    started = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=_environment(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise PclusterError(
            f"`pcluster {args[0]}` did not finish within {timeout_s:g} s",
            f"is AWS reachable from here? {LOG_HINT}",
        ) from None
    LOG.debug(
        "pcluster %s exited %d in %.1f s", args[0], proc.returncode, time.monotonic() - started
    )
    try:
        data = json.loads(out)
    except json.JSONDecodeError:
        tail = (err or out).strip().splitlines()[-5:]
        raise PclusterError(
            f"`pcluster {args[0]}` exited {proc.returncode} without its JSON answer: "
            + (" | ".join(tail) or "(no output)"),
            LOG_HINT,
        ) from None
    if not isinstance(data, dict):
        raise PclusterError(f"`pcluster {args[0]}` printed {type(data).__name__}, not an object")
    return proc.returncode, data


def _environment_error(message: str, region: str) -> PclusterError | None:
    """An error about where pcluster runs (credentials, network, node), not about the
    cluster: these are raised even by a dry run, whose job is to judge the config."""
    lowered = message.lower()
    if "unable to locate credentials" in lowered:
        return PclusterError(NO_CREDENTIALS, CREDENTIALS_HINT, message)
    if any(s in lowered for s in ("expiredtoken", "token has expired", "security token included")):
        return PclusterError(
            f"AWS rejected the credentials: {message}",
            "refresh them (`aws sso login`, or new keys in AWS_PROFILE's profile)",
            message,
        )
    if "could not connect to the endpoint url" in lowered:
        return PclusterError(
            f"cannot reach AWS in {region}: {message}",
            "check the network, the region, and AWS_ENDPOINT_URL if it is set",
            message,
        )
    if "unable to find node executable" in lowered:
        return PclusterError(
            "pcluster needs Node.js (AWS CDK) and none is on PATH",
            "install Node.js 18 or newer and make sure `node` is on PATH",
            message,
        )
    return None


def _not_found(message: str) -> bool:
    return "does not exist or belongs to an incompatible" in message


def _failure(action: str, name: str, message: str, region: str) -> PclusterError:
    if _not_found(message):
        return ClusterNotFound(name, region)
    return _environment_error(message, region) or PclusterError(
        f"pcluster {action} {name!r} failed: {message}", LOG_HINT, message
    )


def _validation_messages(
    items: Iterable[Mapping[str, Any]] | None,
) -> tuple[ValidationMessage, ...]:
    return tuple(
        ValidationMessage(
            str(m.get("level", "")), str(m.get("type", "")), str(m.get("message", ""))
        )
        for m in items or ()
    )


def _check_file(config_path: Path | str) -> Path:
    path = Path(config_path)
    if not path.is_file():
        raise HpcrunError(
            f"ParallelCluster configuration {str(path)!r} does not exist",
            "render one with `hpcrun config render FILE --format pcluster-v3 -o PATH`",
        )
    return path


def _suppress_args(suppress: Sequence[str]) -> list[str]:
    return ["--suppress-validators", *suppress] if suppress else []


# --- the lifecycle -------------------------------------------------------------------


def dry_run(
    config_path: Path | str,
    cluster_name: str,
    region: str,
    *,
    suppress: Sequence[str] = DEFAULT_SUPPRESSED,
    env: Env = None,
    timeout_s: float = 300,
) -> DryRunResult:
    """Validate a v3 configuration against the account without creating anything.

    Unlike `hpcrun config validate` (offline, schema only) this checks that the AMI,
    subnet, key pair and instance types exist. A config problem is a result (`ok`
    False), not an exception; credentials or network problems raise `PclusterError`.
    """
    path = _check_file(config_path)
    _, data = _run_pcluster(
        [
            "create-cluster",
            "--cluster-name",
            cluster_name,
            "--cluster-configuration",
            str(path),
            "--dryrun",
            "true",
            *_suppress_args(suppress),
        ],
        region,
        env,
        timeout_s,
    )
    message = str(data.get("message", ""))
    problem = _environment_error(message, region)
    if problem is not None:
        raise problem
    messages = _validation_messages(
        data.get("validationMessages") or data.get("configurationValidationErrors")
    )
    return DryRunResult(ok=message == DRY_RUN_OK, message=message, messages=messages, raw=data)


def create_cluster(
    config_path: Path | str,
    cluster_name: str,
    region: str,
    *,
    suppress: Sequence[str] = DEFAULT_SUPPRESSED,
    rollback_on_failure: bool = True,
    env: Env = None,
    timeout_s: float = 600,
) -> CreateResult:
    """Start creating a cluster; returns once CloudFormation accepted the stack.

    pcluster validates, synthesises the CloudFormation template with CDK (node, ~10 s),
    uploads it to its S3 bucket and calls CreateStack; the cluster then takes minutes to
    come up: follow it with `wait_for(..., {"CREATE_COMPLETE"})`.
    """
    path = _check_file(config_path)
    code, data = _run_pcluster(
        [
            "create-cluster",
            "--cluster-name",
            cluster_name,
            "--cluster-configuration",
            str(path),
            "--rollback-on-failure",
            "true" if rollback_on_failure else "false",
            *_suppress_args(suppress),
        ],
        region,
        env,
        timeout_s,
    )
    cluster = data.get("cluster")
    if code != 0 or not isinstance(cluster, dict):
        message = str(data.get("message", "(no message)"))
        errors = _validation_messages(data.get("configurationValidationErrors"))
        listed = "".join(f"\n  {m}" for m in errors if m.level == "ERROR")
        problem = _environment_error(message, region)
        if problem is not None:
            raise problem
        raise PclusterError(
            f"pcluster could not create cluster {cluster_name!r}: {message}{listed}",
            _leftover_hint(cluster_name, region, env) or LOG_HINT,
            message,
        )
    return CreateResult(
        name=str(cluster.get("clusterName", cluster_name)),
        status=str(cluster.get("clusterStatus", "CREATE_IN_PROGRESS")),
        stack_arn=str(cluster.get("cloudformationStackArn", "")),
        messages=_validation_messages(data.get("validationMessages")),
        raw=data,
    )


def _leftover_hint(name: str, region: str, env: Env) -> str | None:
    """Whether a failed create still left a stack behind, and how to remove it."""
    try:
        stack = _find_stack(name, region, env)
    except HpcrunError:
        return None
    if stack is None:
        return None
    return (
        f"a stack {name!r} was left in {stack['StackStatus']}: remove it with "
        f"`pcluster delete-cluster -n {name} --region {region}` before trying again"
    )


def describe_cluster(
    name: str, region: str, *, env: Env = None, timeout_s: float = 120
) -> ClusterDescription:
    """Status, stack and head node of a cluster; `ClusterNotFound` when there is none."""
    code, data = _run_pcluster(["describe-cluster", "--cluster-name", name], region, env, timeout_s)
    if code != 0:
        raise _failure("describe-cluster", name, str(data.get("message", "")), region)
    return ClusterDescription.from_pcluster(data)


def delete_cluster(
    name: str,
    region: str,
    *,
    missing_ok: bool = False,
    env: Env = None,
    timeout_s: float = 180,
) -> ClusterDescription | None:
    """Start deleting a cluster; returns the stack as it stands (DELETE_IN_PROGRESS, or
    DELETE_COMPLETE where deletion is instant), None if there was none and `missing_ok`.

    The stack is looked up by name first to learn its ARN: when deletion finishes before
    pcluster reads the stack back (moto does it synchronously), pcluster reports the
    cluster as missing, and only the ARN can tell that apart from a wrong name.
    """
    stack = _find_stack(name, region, env)
    if stack is None:
        if missing_ok:
            return None
        raise ClusterNotFound(name, region)
    code, data = _run_pcluster(["delete-cluster", "--cluster-name", name], region, env, timeout_s)
    message = str(data.get("message", ""))
    if code != 0 and not _not_found(message):
        raise _failure("delete-cluster", name, message, region)
    after = _describe_stack(str(stack["StackId"]), region, env)
    if after is None or not str(after["StackStatus"]).startswith("DELETE_"):
        raise PclusterError(
            f"pcluster delete-cluster {name!r} did not start the deletion: {message or code}",
            LOG_HINT,
            message,
        )
    return ClusterDescription.from_stack(after)


# --- CloudFormation via boto3 ---------------------------------------------------------


def _cloudformation(region: str, env: Env) -> Any:
    """A CloudFormation client honouring the AWS_* overrides in `env` (the rest of the
    credential chain as usual) without touching this process's environment."""
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError:
        raise PclusterError(
            "boto3 is not installed (an optional dependency)", "pip install 'hpcrun[aws]'"
        ) from None
    overrides = env or {}
    session = boto3.session.Session(
        aws_access_key_id=overrides.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=overrides.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=overrides.get("AWS_SESSION_TOKEN"),
        profile_name=overrides.get("AWS_PROFILE"),
        region_name=region,
    )
    endpoint = overrides.get("AWS_ENDPOINT_URL_CLOUDFORMATION") or overrides.get("AWS_ENDPOINT_URL")
    return session.client("cloudformation", endpoint_url=endpoint)


def _aws_call(region: str, call: Callable[[], Any]) -> Any:
    """Run one boto3 call, turning credential and network failures into HpcrunErrors."""
    from botocore.exceptions import (  # type: ignore[import-untyped]
        EndpointConnectionError,
        NoCredentialsError,
    )

    try:
        return call()
    except NoCredentialsError:
        raise PclusterError(NO_CREDENTIALS, CREDENTIALS_HINT) from None
    except EndpointConnectionError as exc:
        raise PclusterError(
            f"cannot reach AWS in {region}: {exc}",
            "check the network, the region, and AWS_ENDPOINT_URL if it is set",
        ) from None


def _describe_stack(name_or_arn: str, region: str, env: Env) -> dict[str, Any] | None:
    """DescribeStacks for one stack; None when it does not exist (by name: or is deleted)."""
    from botocore.exceptions import ClientError

    client = _cloudformation(region, env)
    try:
        stacks = _aws_call(region, lambda: client.describe_stacks(StackName=name_or_arn))["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise PclusterError(f"CloudFormation refused DescribeStacks: {exc}", LOG_HINT) from None
    return dict(stacks[0]) if stacks else None


def _find_stack(name: str, region: str, env: Env) -> dict[str, Any] | None:
    """The live stack of cluster `name`, if it is a ParallelCluster stack."""
    stack = _describe_stack(name, region, env)
    if stack is None:
        return None
    tags = {t.get("Key") for t in stack.get("Tags", [])}
    return stack if "parallelcluster:version" in tags else None


def stack_events(stack: str, region: str, limit: int = 50, *, env: Env = None) -> list[StackEvent]:
    """The newest `limit` events of a stack (name, or ARN for a deleted one), newest first."""
    from botocore.exceptions import ClientError

    client = _cloudformation(region, env)
    events: list[StackEvent] = []
    token: str | None = None
    while len(events) < limit:
        kwargs: dict[str, Any] = {"StackName": stack}
        if token:
            kwargs["NextToken"] = token
        try:
            page = _aws_call(region, partial(client.describe_stack_events, **kwargs))
        except ClientError as exc:
            if "does not exist" in str(exc):
                raise ClusterNotFound(stack, region) from None
            raise PclusterError(f"CloudFormation refused DescribeStackEvents: {exc}") from None
        events += [StackEvent.from_api(e) for e in page.get("StackEvents", [])]
        token = page.get("NextToken")
        if not token:
            break
    return events[:limit]


def wait_for(
    name: str,
    region: str,
    until_statuses: Collection[str],
    progress: Progress | None = None,
    *,
    timeout_s: float = 3600,
    poll_s: float = 15,
    env: Env = None,
) -> ClusterDescription:
    """Wait until the cluster's status is one of `until_statuses` and describe it.

    Statuses are pcluster's clusterStatus values (CREATE_COMPLETE, DELETE_COMPLETE, ...).
    Polls CloudFormation (cheap; by ARN, so DELETE_COMPLETE is seen), calls
    `progress(status, elapsed_s)` whenever the status changes, and raises `PclusterError`
    with the failed stack events first when the stack settles elsewhere (CREATE_FAILED,
    ...) or `timeout_s` passes. A cluster that is already gone counts as DELETE_COMPLETE.
    """
    started = time.monotonic()
    stack = _find_stack(name, region, env)
    if stack is None:
        if "DELETE_COMPLETE" in until_statuses:
            return ClusterDescription(name, "DELETE_COMPLETE", "DELETE_COMPLETE", name, None)
        raise ClusterNotFound(name, region)
    arn = str(stack["StackId"])
    last: str | None = None
    while True:
        status = CLUSTER_STATUS_FOR_STACK_STATUS.get(stack["StackStatus"], stack["StackStatus"])
        elapsed = time.monotonic() - started
        if status != last and progress is not None:
            progress(status, elapsed)
        last = status
        if status in until_statuses:
            if status == "DELETE_COMPLETE":
                return ClusterDescription.from_stack(stack)
            return describe_cluster(name, region, env=env)
        if not status.endswith("_IN_PROGRESS"):
            raise _stack_trouble(name, region, arn, env, f"ended in {status}", until_statuses)
        if elapsed + poll_s > timeout_s:
            raise _stack_trouble(
                name, region, arn, env, f"still {status} after {elapsed:.0f} s", until_statuses
            )
        time.sleep(poll_s)
        stack = _describe_stack(arn, region, env) or stack


def _stack_trouble(
    name: str, region: str, arn: str, env: Env, what: str, wanted: Collection[str]
) -> PclusterError:
    events = stack_events(arn, region, 50, env=env)
    failed = any(e.failed for e in events)
    heading = "failed stack events first" if failed else "latest stack events"
    return PclusterError(
        f"cluster {name!r} {what}, not {' / '.join(sorted(wanted))}; {heading}:\n"
        + format_events(events),
        f"details: `pcluster describe-cluster -n {name} --region {region}` and the "
        "CloudFormation console; remove a failed cluster with `pcluster delete-cluster`",
    )
