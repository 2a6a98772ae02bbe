"""S3 as a place for render inputs and outputs: `s3://bucket/key` URLs, atomic downloads,
uploads, listings, a write check run before anything is submitted, and an `Uploader`
that ships frames to a prefix as they finish.

boto3 is imported inside the functions that use it: importing it costs ~150 ms, which
`hpcrun --help` and every command that never touches S3 should not pay. Clients come
from boto3's normal credential chain; `env`, when given, overrides the AWS_* variables
of this process (keys, profile, region, endpoint) without touching `os.environ`, so
tests can point one call at a moto server while the rest of the process stays as it
was. Every failure becomes an `S3Error` (an `HpcrunError`) that names the bucket, URL or
endpoint at fault and says how to fix it; credentials never appear in messages or logs.
Timeouts and retries are short (connect 5 s, 2 attempts) so a wrong endpoint fails in
seconds instead of the minute boto3's defaults take, before a render is submitted.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import mimetypes
import os
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from hpcrun.errors import HpcrunError, UsageError

LOG = logging.getLogger(__name__)

SCHEME = "s3://"
WRITE_TEST_NAME = ".hpcrun-write-test"
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 60
MAX_ATTEMPTS = 2
MAX_KEY_BYTES = 1024
LIST_PAGE_SIZE = 1000  # S3's maximum; tests lower it to see paging work

NO_CREDENTIALS = "no AWS credentials found"
CREDENTIALS_HINT = (
    "set AWS_PROFILE, run `aws configure` / `aws sso login`, "
    "or export AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
)
URL_HINT = "write it as s3://BUCKET/KEY, e.g. s3://my-renders/shots/shot1.blend"
BUCKET_RULES = (
    "bucket names have 3-63 characters: lowercase letters, digits, dots and hyphens, "
    "starting and ending with a letter or digit"
)

# The IAM action a person must grant for each S3 API call we make: what an
# AccessDenied hint should name (HeadObject needs s3:GetObject, listing s3:ListBucket).
IAM_ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "HeadBucket": "s3:ListBucket",
    "ListObjectsV2": "s3:ListBucket",
}
_BUCKET_CHARS = re.compile(r"[a-z0-9.-]+")
_NOT_FOUND = {"404", "NotFound", "NoSuchKey"}
_DENIED = {"403", "AccessDenied", "AllAccessDisabled", "Forbidden"}
_BAD_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}
_WRONG_REGION = {"PermanentRedirect", "AuthorizationHeaderMalformed", "301"}


class S3Error(HpcrunError):
    """Any S3 failure; the subclasses are the ones a caller may want to act on."""


class S3NotFound(S3Error):
    """The object does not exist (its bucket does)."""


class S3BucketNotFound(S3Error):
    """The bucket does not exist (or not where the endpoint and region say)."""


class S3AccessDenied(S3Error):
    """The credentials in use may not perform one action on one bucket."""


# --- URLs ---------------------------------------------------------------------------------


def _bucket_problem(bucket: str) -> str | None:
    """Why `bucket` cannot be an S3 bucket name, or None. Checked locally so that a typo
    fails at once with the rule it breaks, not later as S3's opaque InvalidBucketName."""
    if not bucket:
        return "it names no bucket"
    if not 3 <= len(bucket) <= 63:
        return f"bucket name {bucket!r} has {len(bucket)} characters"
    if not _BUCKET_CHARS.fullmatch(bucket):
        return f"bucket name {bucket!r} has characters other than a-z, 0-9, '.' and '-'"
    if not (bucket[0].isalnum() and bucket[-1].isalnum()):
        return f"bucket name {bucket!r} must start and end with a letter or digit"
    if ".." in bucket:
        return f"bucket name {bucket!r} has two dots in a row"
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(bucket)
        return f"bucket name {bucket!r} is formatted as an IP address"
    return None


@dataclass(frozen=True)
class S3Url:
    """One object (`key`) or folder-like prefix in `bucket`; valid by construction."""

    bucket: str
    key: str = ""

    def __post_init__(self) -> None:
        problem = _bucket_problem(self.bucket)
        if problem:
            raise UsageError(f"invalid S3 URL {str(self)!r}: {problem}", BUCKET_RULES)
        if len(self.key.encode()) > MAX_KEY_BYTES:
            raise UsageError(
                f"invalid S3 URL {str(self)[:80]!r}...: the key is longer than "
                f"{MAX_KEY_BYTES} bytes",
                "S3 keys are at most 1024 bytes of UTF-8; use a shorter path",
            )

    def __str__(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.key}"

    @property
    def folder(self) -> str:
        """The key as a folder prefix ('' at the bucket root, else ending in '/'), so that
        `s3://b/renders` never also means `s3://b/renders-old/...`."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"

    @property
    def name(self) -> str:
        """The last path component of the key ('' for a folder or the bucket root)."""
        return self.key.rsplit("/", 1)[-1]

    def join(self, name: str) -> S3Url:
        """`name` inside this URL taken as a folder, as `aws s3 cp FILE s3://b/dir` would
        place it: `s3://b/renders` joined with `f0001.png` is `s3://b/renders/f0001.png`."""
        name = name.lstrip("/")
        if not name:
            raise ValueError("S3Url.join needs a non-empty name")
        return S3Url(self.bucket, self.folder + name)


def is_s3_url(text: str) -> bool:
    """Whether `text` is meant as an S3 URL (any `s3://...`, valid or not), so a CLI can
    send a malformed one to `parse_s3_url` for a clear error instead of treating it as a
    local path."""
    return text[: len(SCHEME)].lower() == SCHEME


def parse_s3_url(text: str) -> S3Url:
    """`s3://bucket/key` -> S3Url; a UsageError says what is wrong with a malformed one."""
    if not text.startswith(SCHEME):
        raise UsageError(f"{text!r} is not an S3 URL (expected s3://BUCKET/KEY)", URL_HINT)
    bucket, _, key = text[len(SCHEME) :].partition("/")
    if not bucket:
        raise UsageError(f"invalid S3 URL {text!r}: it names no bucket", URL_HINT)
    return S3Url(bucket, key)


def _as_url(url: S3Url | str) -> S3Url:
    return url if isinstance(url, S3Url) else parse_s3_url(url)


# --- clients and errors -------------------------------------------------------------------


def _client(env: Mapping[str, str] | None) -> Any:
    """An S3 client from the default credential chain, with `env`'s AWS_* overrides."""
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]
        from botocore.exceptions import BotoCoreError  # type: ignore[import-untyped]
    except ImportError:
        raise S3Error(
            "boto3 is not installed (an optional dependency)", "pip install 'hpcrun[aws]'"
        ) from None
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
    )
    if env is None:
        # boto3's chain already honours AWS_PROFILE, AWS_REGION and AWS_ENDPOINT_URL.
        return boto3.session.Session().client("s3", config=config)
    try:
        session = boto3.session.Session(
            aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
            aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
            aws_session_token=env.get("AWS_SESSION_TOKEN"),
            profile_name=env.get("AWS_PROFILE"),
            region_name=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION"),
        )
        endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        return session.client("s3", endpoint_url=endpoint, config=config)
    except BotoCoreError as exc:  # e.g. ProfileNotFound: names the profile, no secrets
        raise S3Error(f"cannot set up an S3 client: {exc}", CREDENTIALS_HINT) from None


def _endpoint(client: Any) -> str:
    """The client's endpoint without any user:password@ part, fit for a message."""
    parts = urlsplit(str(client.meta.endpoint_url))
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _bucket_missing(bucket: str, endpoint: str) -> S3BucketNotFound:
    return S3BucketNotFound(
        f"S3 bucket {bucket!r} does not exist (at {endpoint})",
        f"check the bucket name, or create it with `aws s3 mb s3://{bucket}`; if it is in "
        "another account or endpoint, set AWS_PROFILE / AWS_ENDPOINT_URL accordingly",
    )


def _bucket_exists(client: Any, bucket: str) -> bool:
    """Whether HeadBucket finds `bucket`; used only to tell a missing bucket from a
    missing key, which HEAD requests answer with the same bare 404."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.head_bucket(Bucket=bucket)
    except ClientError as exc:
        return _error_code(exc) not in _NOT_FOUND | {"NoSuchBucket"}
    except BotoCoreError:  # cannot tell; the caller reports the error it already has
        return True
    return True


def _error_code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _client_error(exc: Any, client: Any, action: str, url: S3Url) -> S3Error:
    """The S3Error for one ClientError of `action` on `url`."""
    code = _error_code(exc)
    endpoint = _endpoint(client)
    if code == "NoSuchBucket" or (code in _NOT_FOUND and action == "HeadBucket"):
        return _bucket_missing(url.bucket, endpoint)
    if code in _NOT_FOUND:
        if not _bucket_exists(client, url.bucket):
            return _bucket_missing(url.bucket, endpoint)
        folder = S3Url(url.bucket, url.key[: url.key.rfind("/") + 1])
        return S3NotFound(
            f"{url} does not exist", f"check the key; `aws s3 ls {folder}` lists what is there"
        )
    if code in _DENIED:
        iam_action = IAM_ACTIONS.get(action, f"s3:{action}")
        resource = f"arn:aws:s3:::{url.bucket}" + ("" if iam_action == "s3:ListBucket" else "/*")
        return S3AccessDenied(
            f"access denied: {action} on S3 bucket {url.bucket!r} ({url})",
            f"the AWS identity in use needs {iam_action} on {resource}; check its IAM policy "
            "and the bucket policy, or use another AWS_PROFILE",
        )
    if code in _BAD_CREDENTIALS:
        return S3Error(
            f"AWS rejected the credentials in use ({code}) at {endpoint}", CREDENTIALS_HINT
        )
    if code in _WRONG_REGION:
        return S3Error(
            f"S3 bucket {url.bucket!r} is not in the region this client uses ({code})",
            "set AWS_REGION to the bucket's region (`aws s3api get-bucket-location`)",
        )
    message = exc.response.get("Error", {}).get("Message", "")
    return S3Error(f"S3 {action} on {url} failed: {code or 'error'}: {message}".rstrip(": "))


@contextlib.contextmanager
def _s3_errors(client: Any, action: str, url: S3Url) -> Iterator[None]:
    """Turn what boto3 raises during `action` on `url` into S3Errors."""
    from boto3.exceptions import (  # type: ignore[import-untyped]
        RetriesExceededError,
        S3UploadFailedError,
    )
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        ConnectionClosedError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except (S3UploadFailedError, RetriesExceededError) as exc:
        # boto3's transfer layer wraps the real error; unwrap it to say what happened.
        cause = exc.__cause__ or exc.__context__ or getattr(exc, "last_exception", None)
        if isinstance(cause, ClientError):
            raise _client_error(cause, client, action, url) from None
        if isinstance(cause, BotoConnectionError | ConnectionClosedError | ReadTimeoutError):
            raise _unreachable(client, cause) from None
        raise S3Error(f"S3 {action} on {url} failed: {exc}") from None
    except ClientError as exc:
        raise _client_error(exc, client, action, url) from None
    except (NoCredentialsError, PartialCredentialsError) as exc:
        LOG.debug("credential chain failed: %s", type(exc).__name__)
        raise S3Error(NO_CREDENTIALS, CREDENTIALS_HINT) from None
    except (BotoConnectionError, ConnectionClosedError, ReadTimeoutError) as exc:
        raise _unreachable(client, exc) from None
    except BotoCoreError as exc:
        raise S3Error(f"S3 {action} on {url} failed: {exc}") from None


def _unreachable(client: Any, exc: BaseException) -> S3Error:
    return S3Error(
        f"cannot reach S3 at {_endpoint(client)} ({type(exc).__name__}, "
        f"after {MAX_ATTEMPTS} attempts)",
        "check the network and proxy settings, AWS_REGION, and AWS_ENDPOINT_URL if it is set",
    )


# --- operations ---------------------------------------------------------------------------


def download(
    url: S3Url | str, dest_path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None
) -> Path:
    """Fetch one object to `dest_path` (a file, or an existing folder to put it in) and
    return the file's path. Written to a hidden temporary name beside it and renamed, so
    a reader (a Slurm job, a resumed run) never sees half a `.blend` file."""
    source = _as_url(url)
    if not source.name:
        raise UsageError(
            f"{source} names a folder, not an object", "give the object's full key, " + URL_HINT
        )
    dest = Path(dest_path)
    if dest.is_dir():
        dest = dest / source.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Not created here: boto3 creates it with the umask's permissions, as for any file.
    partial = dest.with_name(f".{dest.name}.{os.urandom(4).hex()}.part")
    client = _client(env)
    try:
        with _s3_errors(client, "GetObject", source):
            client.download_file(source.bucket, source.key, str(partial))
        partial.replace(dest)
    finally:
        partial.unlink(missing_ok=True)
    LOG.debug("downloaded %s to %s", source, dest)
    return dest


def _upload_with(client: Any, path: Path, target: S3Url, content_type: str | None) -> None:
    # A Content-Type lets a browser show a frame or play the mp4 straight from S3.
    content_type = content_type or mimetypes.guess_type(path.name)[0]
    extra = {"ContentType": content_type} if content_type else None
    with _s3_errors(client, "PutObject", target):
        client.upload_file(str(path), target.bucket, target.key, ExtraArgs=extra)
    LOG.debug("uploaded %s to %s", path, target)


def upload(
    path: str | os.PathLike[str],
    url: S3Url | str,
    *,
    env: Mapping[str, str] | None = None,
    content_type: str | None = None,
) -> S3Url:
    """Put a local file at `url` (a folder URL ending in '/' or the bucket root gets the
    file's name appended, as `aws s3 cp` does) and return where it went. The content
    type is guessed from the file name unless given."""
    source = Path(path)
    if not source.is_file():
        raise S3Error(f"cannot upload {source}: no such file", None)
    target = _as_url(url)
    if not target.name:
        target = target.join(source.name)
    _upload_with(_client(env), source, target, content_type)
    return target


def put_bytes(url: S3Url | str, data: bytes, *, env: Mapping[str, str] | None = None) -> None:
    """One small object from memory (a script, a manifest): one PUT, whole or not at all."""
    target = _as_url(url)
    client = _client(env)
    with _s3_errors(client, "PutObject", target):
        client.put_object(Bucket=target.bucket, Key=target.key, Body=data)


def etag(url: S3Url | str, *, env: Mapping[str, str] | None = None) -> str:
    """The object's ETag: it changes whenever the object's bytes do."""
    target = _as_url(url)
    client = _client(env)
    with _s3_errors(client, "HeadObject", target):
        return str(client.head_object(Bucket=target.bucket, Key=target.key)["ETag"]).strip('"')


def read_bytes(url: S3Url | str, *, env: Mapping[str, str] | None = None) -> bytes | None:
    """A small object's bytes (a log, a manifest); None when there is no such object."""
    target = _as_url(url)
    client = _client(env)
    try:
        with _s3_errors(client, "GetObject", target):
            return bytes(client.get_object(Bucket=target.bucket, Key=target.key)["Body"].read())
    except S3NotFound:
        return None


def copy(source: S3Url | str, target: S3Url | str, *, env: Mapping[str, str] | None = None) -> None:
    """Copy an object within S3 (no bytes pass through this machine)."""
    src, dst = _as_url(source), _as_url(target)
    client = _client(env)
    with _s3_errors(client, "CopyObject", dst):
        client.copy({"Bucket": src.bucket, "Key": src.key}, dst.bucket, dst.key)


def delete_keys(bucket: str, keys: list[str], *, env: Mapping[str, str] | None = None) -> None:
    """Delete objects of one bucket (missing ones are no error), 1000 a request."""
    client = _client(env)
    for at in range(0, len(keys), 1000):
        batch = [{"Key": k} for k in keys[at : at + 1000]]
        with _s3_errors(client, "DeleteObjects", S3Url(bucket)):
            client.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})


def exists(url: S3Url | str, *, env: Mapping[str, str] | None = None) -> bool:
    """Whether the object exists (for a bare bucket URL: whether the bucket does). A
    missing bucket is an error, not False: it is a typo to report, not a state."""
    target = _as_url(url)
    client = _client(env)
    if not target.key:
        try:
            with _s3_errors(client, "HeadBucket", target):
                client.head_bucket(Bucket=target.bucket)
        except S3BucketNotFound:
            return False
        return True
    try:
        with _s3_errors(client, "HeadObject", target):
            client.head_object(Bucket=target.bucket, Key=target.key)
    except S3NotFound:
        return False
    return True


def _list_with(client: Any, prefix: S3Url) -> dict[str, int]:
    keys: dict[str, int] = {}
    with _s3_errors(client, "ListObjectsV2", prefix):
        pages = client.get_paginator("list_objects_v2").paginate(
            Bucket=prefix.bucket,
            Prefix=prefix.folder,
            PaginationConfig={"PageSize": LIST_PAGE_SIZE},
        )
        for page in pages:
            for item in page.get("Contents", []):
                keys[str(item["Key"])] = int(item["Size"])
    return keys


def list_keys(prefix_url: S3Url | str, *, env: Mapping[str, str] | None = None) -> dict[str, int]:
    """Every object under `prefix_url` taken as a folder: full key -> size in bytes."""
    return _list_with(_client(env), _as_url(prefix_url))


def check_writable(prefix_url: S3Url | str, *, env: Mapping[str, str] | None = None) -> None:
    """Fail now, before anything is submitted, if frames could not be written under
    `prefix_url`: put and delete a small `.hpcrun-write-test` object there. Only
    s3:PutObject is required (no HeadBucket, which needs s3:ListBucket); a failed
    delete is logged, not raised, since writing is what the render needs."""
    probe = _as_url(prefix_url).join(WRITE_TEST_NAME)
    client = _client(env)
    with _s3_errors(client, "PutObject", probe):
        client.put_object(Bucket=probe.bucket, Key=probe.key, Body=b"hpcrun write test\n")
    try:
        with _s3_errors(client, "DeleteObject", probe):
            client.delete_object(Bucket=probe.bucket, Key=probe.key)
    except S3Error as exc:
        LOG.warning("could write but not delete %s: %s", probe, exc.message)


# --- uploading frames as they finish --------------------------------------------------------


class Uploader:
    """Uploads files matching `pattern` under `local_dir` to `prefix_url` (a folder) as
    they become complete; call `sync()` whenever convenient (after each poll of the
    render's jobs, and once at the end).

    `is_complete(path)` says whether a file is finished. By default a file is complete
    once it is non-empty and its size and mtime did not change since the previous
    `sync()`, which is what a watcher can know without the renderer's help; callers that
    know better (Slurm says the frame's task finished) should pass their own. Files
    already uploaded are not uploaded again unless they change, and an object that
    already exists with the same size (a resumed run) is skipped, not re-sent.
    """

    def __init__(
        self,
        local_dir: str | os.PathLike[str],
        prefix_url: S3Url | str,
        *,
        pattern: str = "*.png",
        is_complete: Callable[[Path], bool] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.local_dir = Path(local_dir)
        self.prefix = _as_url(prefix_url)
        self.pattern = pattern
        self.uploaded = 0  # files this Uploader sent
        self.skipped = 0  # files already in S3 with the same size
        self._is_complete = is_complete or self._settled
        self._env = env
        self._client: Any = None
        self._remote: dict[str, int] | None = None  # listing taken at the first sync
        self._done: dict[Path, tuple[int, int]] = {}  # path -> (size, mtime_ns) sent
        self._seen: dict[Path, tuple[int, int]] = {}  # for the default `is_complete`

    def _settled(self, path: Path) -> bool:
        stat = path.stat()
        signature = (stat.st_size, stat.st_mtime_ns)
        previous, self._seen[path] = self._seen.get(path), signature
        return stat.st_size > 0 and previous == signature

    def sync(self) -> list[str]:
        """Upload every complete file not uploaded yet; return the keys sent this time."""
        if self._client is None:
            self._client = _client(self._env)
        if self._remote is None:
            self._remote = _list_with(self._client, self.prefix)
        sent: list[str] = []
        for path in sorted(self.local_dir.glob(self.pattern)):
            try:
                if not path.is_file() or not self._is_complete(path):
                    continue
                stat = path.stat()
            except FileNotFoundError:  # renamed or removed by the renderer meanwhile
                continue
            signature = (stat.st_size, stat.st_mtime_ns)
            if self._done.get(path) == signature:
                continue
            target = self.prefix.join(path.relative_to(self.local_dir).as_posix())
            if path not in self._done and self._remote.get(target.key) == stat.st_size:
                self.skipped += 1
            else:
                _upload_with(self._client, path, target, None)
                self.uploaded += 1
                sent.append(target.key)
            self._done[path] = signature
        return sent
