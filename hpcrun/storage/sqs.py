"""SQS for the render farm: a work queue with its dead-letter queue, sending a run's
messages, and counting what is waiting, in flight and dead.

boto3 is imported here only, inside the functions (it costs ~0.3 s); credentials come from
the user's own chain (AWS_PROFILE, environment, SSO) and never pass through hpcrun, and
AWS_ENDPOINT_URL points everything at another endpoint (moto in tests). Errors become one
line naming the queue and what AWS said.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

from hpcrun.errors import HpcrunError

SEND_BATCH = 10  # SendMessageBatch's limit
LONG_POLL_S = 20  # the most SQS allows: a worker's empty receive costs one call per 20 s


class QueueError(HpcrunError):
    """SQS refused or could not be reached; the message names the queue."""


@dataclass(frozen=True)
class FarmQueues:
    url: str
    arn: str
    dead_url: str
    dead_arn: str

    def to_json(self) -> dict[str, str]:
        return {
            "url": self.url,
            "arn": self.arn,
            "dead_url": self.dead_url,
            "dead_arn": self.dead_arn,
        }


@dataclass(frozen=True)
class QueueCounts:
    waiting: int  # visible: no worker has it
    in_flight: int  # received and not yet deleted (rendering, or a dead worker's)
    dead: int  # in the dead-letter queue: failed on every delivery


def _client(region: str | None) -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
    except ImportError:
        raise QueueError(
            "boto3 is not installed (an optional dependency)", "pip install 'hpcrun[aws]'"
        ) from None
    # boto3's chain honours AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL(_SQS)
    return boto3.session.Session(region_name=region).client("sqs")


@contextmanager
def _errors(what: str) -> Iterator[None]:
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    try:
        yield
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise QueueError(
            f"SQS refused to {what}: {error.get('Code', '?')}: {error.get('Message', exc)}",
            "check your AWS credentials and that they may use SQS in this region",
        ) from None
    except BotoCoreError as exc:
        raise QueueError(f"cannot reach SQS to {what}: {exc}", None) from None


class Queues:
    """The farm's queues in one region (one client for every call)."""

    def __init__(self, region: str | None = None) -> None:
        self.client = _client(region)

    def ensure(self, name: str, *, visibility_s: int, max_receives: int) -> FarmQueues:
        """Create (or find: CreateQueue with the same attributes is idempotent) `name` and
        `name-dead`, the work queue redriving to the dead one after `max_receives`."""
        with _errors(f"create queue {name}-dead"):
            dead_url = self.client.create_queue(
                QueueName=f"{name}-dead", Attributes={"MessageRetentionPeriod": "1209600"}
            )["QueueUrl"]
            dead_arn = self._arn(dead_url)
        policy = json.dumps({"deadLetterTargetArn": dead_arn, "maxReceiveCount": max_receives})
        with _errors(f"create queue {name}"):
            url = self.client.create_queue(
                QueueName=name,
                Attributes={
                    "VisibilityTimeout": str(visibility_s),
                    "ReceiveMessageWaitTimeSeconds": str(LONG_POLL_S),
                    "RedrivePolicy": policy,
                },
            )["QueueUrl"]
            return FarmQueues(url, self._arn(url), dead_url, dead_arn)

    def _arn(self, url: str) -> str:
        found = self.client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
        return str(found["Attributes"]["QueueArn"])

    def send(self, url: str, bodies: Sequence[str]) -> int:
        """Send every body (in batches of 10); a body SQS refuses is an error naming it."""
        sent = 0
        for at in range(0, len(bodies), SEND_BATCH):
            batch = [
                {"Id": str(i), "MessageBody": b} for i, b in enumerate(bodies[at : at + SEND_BATCH])
            ]
            with _errors(f"send {len(batch)} messages to {url}"):
                answer = self.client.send_message_batch(QueueUrl=url, Entries=batch)
            failed = answer.get("Failed") or []
            if failed:
                first = failed[0]
                raise QueueError(
                    f"SQS refused message {batch[int(first['Id'])]['MessageBody']}: "
                    f"{first.get('Code')}: {first.get('Message')}"
                )
            sent += len(batch)
        return sent

    def counts(self, queues: FarmQueues) -> QueueCounts:
        names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        with _errors(f"read the counts of {queues.url}"):
            work = self.client.get_queue_attributes(QueueUrl=queues.url, AttributeNames=names)
            dead = self.client.get_queue_attributes(QueueUrl=queues.dead_url, AttributeNames=names)
        a, d = work["Attributes"], dead["Attributes"]
        return QueueCounts(
            int(a.get(names[0], 0)),
            int(a.get(names[1], 0)),
            int(d.get(names[0], 0)) + int(d.get(names[1], 0)),
        )

    def dead_bodies(self, queues: FarmQueues, limit: int = 10) -> list[str]:
        """Bodies in the dead-letter queue, looked at without taking them (visibility 0)."""
        with _errors(f"read {queues.dead_url}"):
            answer = self.client.receive_message(
                QueueUrl=queues.dead_url,
                MaxNumberOfMessages=min(limit, 10),
                VisibilityTimeout=0,
                WaitTimeSeconds=0,
            )
        return [str(m["Body"]) for m in answer.get("Messages") or []]

    def purge(self, queues: FarmQueues, run_id: str) -> int:
        """Take this run's messages off both queues (`render --cancel`); others stay.
        SQS has no delete-by-content: receive, delete what is the run's, let the rest go."""
        removed = 0
        for url in (queues.url, queues.dead_url):
            for _ in range(100):  # at most 1000 messages looked at per queue
                with _errors(f"read {url}"):
                    answer = self.client.receive_message(
                        QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=5, WaitTimeSeconds=0
                    )
                messages = answer.get("Messages") or []
                if not messages:
                    break
                for message in messages:
                    ours = json.loads(message["Body"]).get("run") == run_id
                    with _errors(f"release a message on {url}"):
                        if ours:
                            self.client.delete_message(
                                QueueUrl=url, ReceiptHandle=message["ReceiptHandle"]
                            )
                            removed += 1
                        else:
                            self.client.change_message_visibility(
                                QueueUrl=url,
                                ReceiptHandle=message["ReceiptHandle"],
                                VisibilityTimeout=0,
                            )
        return removed

    def delete(self, queues: FarmQueues) -> None:
        for url in (queues.url, queues.dead_url):
            gone = self.client.exceptions.QueueDoesNotExist
            with _errors(f"delete queue {url}"), suppress(gone):
                self.client.delete_queue(QueueUrl=url)
