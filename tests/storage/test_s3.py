"""The S3 layer against a real moto server process: URLs, atomic downloads, uploads,
the frame Uploader (complete files only, no re-uploads, resumed runs), the write check
run before submitting, and the errors a person sees when something is wrong."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from hpcrun.errors import HpcrunError, UsageError
from hpcrun.storage import s3
from hpcrun.storage.s3 import S3Url, Uploader, is_s3_url, parse_s3_url
from tests.aws import MotoServer, client, moto_server

pytestmark = pytest.mark.aws

_bucket_numbers = count()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    if Path(sys.executable).with_name("moto_server").exists():
        with moto_server(tmp_path_factory.mktemp("moto")) as started:
            yield started
        return
    message = "moto_server is not installed (pip install -e '.[dev]')"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def api(server: MotoServer) -> Any:
    """A plain boto3 client of the server, to arrange and inspect what S3 holds."""
    return client(server, "s3")


@pytest.fixture
def env(server: MotoServer) -> dict[str, str]:
    return server.env()


@pytest.fixture
def bucket(api: Any) -> str:
    """A fresh, empty bucket per test."""
    name = f"hpcrun-test-{next(_bucket_numbers)}"
    api.create_bucket(Bucket=name)
    return name


def body(api: Any, bucket: str, key: str) -> bytes:
    data: bytes = api.get_object(Bucket=bucket, Key=key)["Body"].read()
    return data


# --- URLs ---------------------------------------------------------------------------------


def test_parse_good_urls() -> None:
    url = parse_s3_url("s3://my-renders.v2/shots/shot 1.blend")
    assert url == S3Url("my-renders.v2", "shots/shot 1.blend")
    assert str(url) == "s3://my-renders.v2/shots/shot 1.blend"
    assert url.name == "shot 1.blend"
    assert parse_s3_url("s3://abc") == S3Url("abc", "")
    assert parse_s3_url("s3://abc/") == S3Url("abc", "")
    assert str(parse_s3_url("s3://abc")) == "s3://abc/"


def test_join_treats_the_url_as_a_folder() -> None:
    assert parse_s3_url("s3://abc/renders").join("f0001.png") == S3Url("abc", "renders/f0001.png")
    assert parse_s3_url("s3://abc/renders/").join("f0001.png").key == "renders/f0001.png"
    assert parse_s3_url("s3://abc").join("/f0001.png").key == "f0001.png"
    assert parse_s3_url("s3://abc/a/b").join("c/d.png").key == "a/b/c/d.png"
    with pytest.raises(ValueError):
        parse_s3_url("s3://abc/x").join("")


def test_is_s3_url_catches_every_s3_spelling_so_bad_ones_get_a_clear_error() -> None:
    assert is_s3_url("s3://abc/x")
    assert is_s3_url("S3://Bad_Bucket")
    assert is_s3_url("s3://")
    assert not is_s3_url("/data/s3://x")
    assert not is_s3_url("scene.blend")
    assert not is_s3_url("https://abc.s3.amazonaws.com/x")


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("s3://", "names no bucket"),
        ("s3:///x.blend", "names no bucket"),
        ("s3://Bad_Bucket/x", "characters other than a-z, 0-9"),
        ("s3://ab/x", "has 2 characters"),
        ("s3://" + "a" * 64 + "/x", "has 64 characters"),
        ("s3://-abc/x", "start and end with a letter or digit"),
        ("s3://abc./x", "start and end with a letter or digit"),
        ("s3://a..b/x", "two dots in a row"),
        ("s3://192.168.1.10/x", "formatted as an IP address"),
        ("https://abc/x", "is not an S3 URL"),
        ("S3://abc/x", "is not an S3 URL"),
    ],
)
def test_parse_rejects_malformed_urls_with_the_rule_they_break(text: str, reason: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_s3_url(text)
    assert reason in caught.value.message
    assert repr(text) in caught.value.message
    assert caught.value.hint
    assert caught.value.exit_code == 2


def test_too_long_key_is_rejected() -> None:
    with pytest.raises(UsageError, match="longer than 1024 bytes"):
        S3Url("abc", "k" * 1025)


def test_importing_the_module_does_not_import_boto3() -> None:
    code = (
        "import sys, hpcrun.storage.s3;"
        "print([m for m in ('boto3', 'botocore', 's3transfer') if m in sys.modules])"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.strip() == "[]"


# --- objects --------------------------------------------------------------------------------


def test_upload_download_round_trip_is_atomic(
    api: Any, bucket: str, env: dict[str, str], tmp_path: Path
) -> None:
    data = os.urandom(9 * 1024 * 1024 + 17)  # past the 8 MiB multipart threshold
    source = tmp_path / "scene.blend"
    source.write_bytes(data)
    assert s3.upload(source, f"s3://{bucket}/scenes/", env=env) == S3Url(
        bucket, "scenes/scene.blend"
    )
    frame = tmp_path / "f0001.png"
    frame.write_bytes(b"\x89PNG fake")
    s3.upload(frame, f"s3://{bucket}/out/f0001.png", env=env)
    assert api.head_object(Bucket=bucket, Key="out/f0001.png")["ContentType"] == "image/png"

    into = tmp_path / "fetched"
    into.mkdir()
    got = s3.download(f"s3://{bucket}/scenes/scene.blend", into / "copy.blend", env=env)
    assert got == into / "copy.blend"
    assert got.read_bytes() == data
    assert s3.download(S3Url(bucket, "scenes/scene.blend"), into, env=env) == into / "scene.blend"
    assert sorted(p.name for p in into.iterdir()) == ["copy.blend", "scene.blend"]

    # Overwriting keeps the old file whole until the new one is complete.
    s3.upload(frame, f"s3://{bucket}/scenes/scene.blend", env=env)
    s3.download(f"s3://{bucket}/scenes/scene.blend", into / "copy.blend", env=env)
    assert (into / "copy.blend").read_bytes() == frame.read_bytes()
    assert sorted(p.name for p in into.iterdir()) == ["copy.blend", "scene.blend"]


def test_download_of_a_missing_key_names_the_url_and_leaves_nothing(
    bucket: str, env: dict[str, str], tmp_path: Path
) -> None:
    previous = tmp_path / "x.blend"
    previous.write_bytes(b"last run's scene")
    with pytest.raises(s3.S3NotFound) as caught:
        s3.download(f"s3://{bucket}/scenes/missing.blend", previous, env=env)
    assert f"s3://{bucket}/scenes/missing.blend does not exist" in caught.value.message
    assert f"aws s3 ls s3://{bucket}/scenes/`" in (caught.value.hint or "")
    assert list(tmp_path.iterdir()) == [previous]
    assert previous.read_bytes() == b"last run's scene"


def test_download_of_a_folder_url_is_a_usage_error(env: dict[str, str], tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="names a folder"):
        s3.download("s3://abc/scenes/", tmp_path, env=env)


def test_a_missing_bucket_is_named(env: dict[str, str], tmp_path: Path) -> None:
    local = tmp_path / "f.png"
    local.write_bytes(b"x")
    calls = [
        lambda: s3.download("s3://no-such-bucket/a.blend", tmp_path / "a.blend", env=env),
        lambda: s3.upload(local, "s3://no-such-bucket/out/", env=env),
        lambda: s3.list_keys("s3://no-such-bucket/out", env=env),
        lambda: s3.exists("s3://no-such-bucket/a.blend", env=env),
    ]
    for call in calls:
        with pytest.raises(s3.S3BucketNotFound) as caught:
            call()
        assert "S3 bucket 'no-such-bucket' does not exist" in caught.value.message
        assert "aws s3 mb s3://no-such-bucket" in (caught.value.hint or "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png"]


def test_exists_and_list_keys(api: Any, bucket: str, env: dict[str, str]) -> None:
    for key, data in [
        ("renders/a.png", b"aa"),
        ("renders/sub/b.png", b"bbb"),
        ("renders-old/c", b""),
    ]:
        api.put_object(Bucket=bucket, Key=key, Body=data)
    assert s3.exists(f"s3://{bucket}/renders/a.png", env=env)
    assert not s3.exists(f"s3://{bucket}/renders/nope.png", env=env)
    assert s3.exists(f"s3://{bucket}", env=env)
    assert not s3.exists("s3://no-such-bucket", env=env)
    # The prefix is a folder: renders-old/ is not under s3://bucket/renders.
    expected = {"renders/a.png": 2, "renders/sub/b.png": 3}
    assert s3.list_keys(f"s3://{bucket}/renders", env=env) == expected
    assert s3.list_keys(S3Url(bucket, "renders/"), env=env) == expected
    assert len(s3.list_keys(f"s3://{bucket}", env=env)) == 3
    assert s3.list_keys(f"s3://{bucket}/nothing-here", env=env) == {}


def test_listing_reads_every_page(
    api: Any, bucket: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3, "LIST_PAGE_SIZE", 2)  # S3 pages at 1000; 5 keys make 3 pages
    for i in range(5):
        api.put_object(Bucket=bucket, Key=f"frames/f{i:04d}.png", Body=b"x" * i)
    listed = s3.list_keys(f"s3://{bucket}/frames", env=env)
    assert listed == {f"frames/f{i:04d}.png": i for i in range(5)}


# --- the Uploader -----------------------------------------------------------------------------


def test_uploader_sends_complete_files_once(
    api: Any, bucket: str, env: dict[str, str], tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    complete: set[str] = set()
    prefix = f"s3://{bucket}/shot1"
    uploader = Uploader(frames, prefix, is_complete=lambda p: p.name in complete, env=env)
    assert uploader.sync() == []  # nothing rendered yet: fine

    (frames / "f0001.png").write_bytes(b"one")
    (frames / "f0002.png").write_bytes(b"tw")  # still being written
    (frames / "notes.txt").write_bytes(b"not a frame")
    complete.update({"f0001.png", "notes.txt"})
    assert uploader.sync() == ["shot1/f0001.png"]
    assert uploader.sync() == []
    assert uploader.uploaded == 1

    (frames / "f0002.png").write_bytes(b"two")
    complete.add("f0002.png")
    assert uploader.sync() == ["shot1/f0002.png"]
    assert uploader.sync() == []
    assert (uploader.uploaded, uploader.skipped) == (2, 0)
    assert s3.list_keys(prefix, env=env) == {"shot1/f0001.png": 3, "shot1/f0002.png": 3}
    assert body(api, bucket, "shot1/f0002.png") == b"two"
    assert api.head_object(Bucket=bucket, Key="shot1/f0002.png")["ContentType"] == "image/png"


def test_a_resumed_run_skips_frames_already_in_s3_with_the_same_size(
    api: Any, bucket: str, env: dict[str, str], tmp_path: Path
) -> None:
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in ("f0001.png", "f0002.png", "f0003.png"):
        (frames / name).write_bytes(b"local")
    # What the interrupted run left: f0001 complete (same size, marked content so an
    # upload would show), f0002 cut short (different size).
    api.put_object(Bucket=bucket, Key="out/f0001.png", Body=b"REMOT")
    api.put_object(Bucket=bucket, Key="out/f0002.png", Body=b"lo")

    resumed = Uploader(frames, f"s3://{bucket}/out/", is_complete=lambda p: True, env=env)
    assert resumed.sync() == ["out/f0002.png", "out/f0003.png"]
    assert (resumed.uploaded, resumed.skipped) == (2, 1)
    assert body(api, bucket, "out/f0001.png") == b"REMOT"
    assert body(api, bucket, "out/f0002.png") == b"local"
    assert resumed.sync() == []


def test_uploader_resends_a_frame_rewritten_after_upload(
    api: Any, bucket: str, env: dict[str, str], tmp_path: Path
) -> None:
    frame = tmp_path / "f0001.png"
    frame.write_bytes(b"first")
    uploader = Uploader(tmp_path, f"s3://{bucket}/out", is_complete=lambda p: True, env=env)
    assert uploader.sync() == ["out/f0001.png"]
    frame.write_bytes(b"second render")  # a retried task rendered it again
    assert uploader.sync() == ["out/f0001.png"]
    assert body(api, bucket, "out/f0001.png") == b"second render"


def test_by_default_a_file_is_complete_once_it_stops_changing(
    bucket: str, env: dict[str, str], tmp_path: Path
) -> None:
    uploader = Uploader(tmp_path, f"s3://{bucket}/out", pattern="*.exr", env=env)
    frame = tmp_path / "f0001.exr"
    frame.write_bytes(b"")  # Blender's placeholder
    assert uploader.sync() == []
    assert uploader.sync() == []  # empty is never complete
    frame.write_bytes(b"partial")
    assert uploader.sync() == []  # changed since the last look
    assert uploader.sync() == ["out/f0001.exr"]


# --- the write check ------------------------------------------------------------------------


def test_check_writable_passes_and_leaves_nothing(
    api: Any, bucket: str, env: dict[str, str]
) -> None:
    s3.check_writable(f"s3://{bucket}/renders/shot1", env=env)
    assert s3.list_keys(f"s3://{bucket}", env=env) == {}


def test_check_writable_names_a_missing_bucket(env: dict[str, str]) -> None:
    with pytest.raises(s3.S3BucketNotFound, match="'no-such-bucket' does not exist"):
        s3.check_writable("s3://no-such-bucket/renders", env=env)


def test_check_writable_names_bucket_and_action_when_denied(
    api: Any, bucket: str, env: dict[str, str]
) -> None:
    deny_writes = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:PutObject",
                "Resource": f"arn:aws:s3:::{bucket}/*",
            }
        ],
    }
    api.put_bucket_policy(Bucket=bucket, Policy=json.dumps(deny_writes))
    with pytest.raises(s3.S3AccessDenied) as caught:
        s3.check_writable(f"s3://{bucket}/renders", env=env)
    assert f"PutObject on S3 bucket {bucket!r}" in caught.value.message
    assert f"s3:PutObject on arn:aws:s3:::{bucket}/*" in (caught.value.hint or "")


# --- credentials and reachability -------------------------------------------------------------


def test_an_unreachable_endpoint_fails_quickly_and_clearly(tmp_path: Path) -> None:
    secret = "not-a-real-secret-0123456789"
    nowhere = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLEBADKEY",
        "AWS_SECRET_ACCESS_KEY": secret,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    started = time.monotonic()
    with pytest.raises(HpcrunError) as caught:
        s3.check_writable("s3://abc/renders", env=nowhere)
    assert time.monotonic() - started < 10
    assert "cannot reach S3 at http://127.0.0.1:9" in caught.value.message
    text = f"{caught.value.message} {caught.value.hint}"
    assert secret not in text
    assert "AKIAEXAMPLEBADKEY" not in text
    with pytest.raises(HpcrunError, match="cannot reach S3"):
        s3.download("s3://abc/a.blend", tmp_path / "a.blend", env=nowhere)
    assert list(tmp_path.iterdir()) == []


def test_no_credentials_anywhere_says_how_to_get_some(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with pytest.raises(HpcrunError) as caught:
        s3.list_keys("s3://abc/renders")  # env=None: boto3's own chain
    assert caught.value.message == "no AWS credentials found"
    assert "aws sso login" in (caught.value.hint or "")


def test_an_unknown_profile_is_named(env: dict[str, str]) -> None:
    with pytest.raises(HpcrunError, match="no-such-profile"):
        s3.exists("s3://abc/x", env={**env, "AWS_PROFILE": "no-such-profile"})
