"""Media in an S3-compatible bucket: ``S3Storage`` against moto's real S3 server (in this
process, on 127.0.0.1), the media API end to end with ``PLEXUS_MEDIA_STORAGE=s3``, the
settings that choose it, and ``plexus doctor``'s check of the bucket."""

from __future__ import annotations

import hashlib
import io
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.response import StreamingBody
from moto.server import ThreadedMotoServer
from PIL import Image
from urllib3.exceptions import ReadTimeoutError

from plexus.config import ConfigError, load_settings
from plexus.media.s3 import S3Storage
from plexus.media.storage import MediaStorageUnavailable

from auth_helpers import sign_in
from conftest import run_cli

MEDIA = "/api/v1/media"
ACCESS_KEY_ID = "plexus-test-access-key"
SECRET_ACCESS_KEY = "plexus-test-secret-" + "s" * 24
PREFIX = "plexus/media/"


@pytest.fixture(scope="module")
def s3_endpoint():
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint):
    """A client of its own (not Plexus's) to look into the bucket with."""
    return boto3.session.Session().client(
        "s3",
        region_name="us-east-1",
        endpoint_url=s3_endpoint,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


@pytest.fixture
def bucket(s3) -> str:
    name = f"plexus-t-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


@pytest.fixture
def env_vars(env_vars: dict[str, str], s3_endpoint: str, bucket: str) -> dict[str, str]:
    return {
        **env_vars,
        "PLEXUS_MEDIA_STORAGE": "s3",
        "PLEXUS_MEDIA_S3_BUCKET": bucket,
        "PLEXUS_MEDIA_S3_ENDPOINT_URL": s3_endpoint,
        "PLEXUS_MEDIA_S3_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "PLEXUS_MEDIA_S3_PREFIX": PREFIX,
        "PLEXUS_MEDIA_S3_PATH_STYLE": "true",
    }


@pytest.fixture
def storage(settings) -> S3Storage:
    return S3Storage.for_settings(settings)


def _temp_file(storage: S3Storage, data: bytes) -> Path:
    path = storage.temp_dir / f"upload-{uuid.uuid4().hex}"
    path.write_bytes(data)
    return path


def _names(s3, bucket: str) -> list[str]:
    listing = s3.list_objects_v2(Bucket=bucket)
    return sorted(item["Key"] for item in listing.get("Contents", []))


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), "teal").save(out, format="PNG")
    return out.getvalue()


# --- the storage itself --------------------------------------------------------------------


def test_put_open_exists_delete(storage, s3, bucket):
    data = b"\x89PNG not really, but bytes " * 1000
    key = hashlib.sha256(data).hexdigest()
    source = _temp_file(storage, data)
    assert not storage.exists(key)
    storage.put(key, source)
    assert not source.exists()  # consumed
    assert storage.exists(key)
    name = f"{PREFIX}{key[:2]}/{key}"
    assert _names(s3, bucket) == [name]
    head = s3.head_object(Bucket=bucket, Key=name)
    assert head["ContentType"] == "application/octet-stream"
    assert head["ServerSideEncryption"] == "AES256"
    grants = s3.get_object_acl(Bucket=bucket, Key=name)["Grants"]
    # Private: the owner's grant only; no group (AllUsers, AuthenticatedUsers) is named.
    assert [g["Permission"] for g in grants] == ["FULL_CONTROL"]
    assert all("URI" not in g["Grantee"] for g in grants)
    with storage.open(key) as stream:
        assert stream.read(10) == data[:10]
        assert stream.read(5) == data[10:15]
        assert stream.read() == data[15:]
        assert stream.read(1) == b""
    assert stream.closed
    storage.delete(key)
    assert not storage.exists(key)
    assert _names(s3, bucket) == []
    storage.delete(key)  # idempotent
    with pytest.raises(FileNotFoundError):
        storage.open(key)


def test_storing_the_same_bytes_twice_keeps_one_object(storage, s3, bucket):
    data = b"same bytes"
    key = hashlib.sha256(data).hexdigest()
    storage.put(key, _temp_file(storage, data))
    storage.put(key, _temp_file(storage, data))
    assert _names(s3, bucket) == [f"{PREFIX}{key[:2]}/{key}"]
    with storage.open(key) as stream:
        assert stream.read() == data


def test_without_encryption_no_header_is_sent(env_vars, s3, bucket):
    settings = load_settings(environ={**env_vars, "PLEXUS_MEDIA_S3_SSE": "none"})
    storage = S3Storage.for_settings(settings)
    key = hashlib.sha256(b"x").hexdigest()
    storage.put(key, _temp_file(storage, b"x"))
    head = s3.head_object(Bucket=bucket, Key=f"{PREFIX}{key[:2]}/{key}")
    assert "ServerSideEncryption" not in head


@pytest.mark.parametrize(
    "key",
    [
        "",
        "../../etc/passwd",
        "A" * 64,
        "a" * 63,
        "a" * 65,
        "g" * 64,
        "a" * 62 + "/x",
        "a" * 64 + "\n",
    ],
)
def test_a_key_that_is_not_a_sha256_is_refused(storage, s3, bucket, key):
    source = _temp_file(storage, b"data")
    for call in (
        lambda: storage.put(key, source),
        lambda: storage.open(key),
        lambda: storage.delete(key),
        lambda: storage.exists(key),
    ):
        with pytest.raises(ValueError, match="SHA-256"):
            call()
    assert _names(s3, bucket) == []


def test_a_malformed_prefix_is_refused(storage):
    for prefix in ("media", "/media/", "a//", "../", "media/../"):
        with pytest.raises(ValueError, match="prefix"):
            S3Storage(storage.client, storage.bucket, media_root=Path("unused"), prefix=prefix)


def test_a_missing_bucket_is_an_outage_not_an_absent_object(env_vars, s3_endpoint):
    """Every call fails with an OSError (the publisher retries those later), never a
    FileNotFoundError that would read as "this media's bytes are gone"."""
    settings = load_settings(environ={**env_vars, "PLEXUS_MEDIA_S3_BUCKET": "no-such-bucket-x"})
    storage = S3Storage.for_settings(settings)
    key = hashlib.sha256(b"data").hexdigest()
    source = _temp_file(storage, b"data")
    with pytest.raises(MediaStorageUnavailable, match="NoSuchBucket"):
        storage.put(key, source)
    assert not source.exists()
    with pytest.raises(MediaStorageUnavailable, match="NoSuchBucket"):
        storage.open(key)
    with pytest.raises(MediaStorageUnavailable, match="no such bucket"):
        storage.check_bucket()


def test_a_server_that_does_not_answer_is_an_outage(env_vars, free_port):
    settings = load_settings(
        environ={**env_vars, "PLEXUS_MEDIA_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port}"}
    )
    storage = S3Storage.for_settings(settings)
    with pytest.raises(MediaStorageUnavailable, match="EndpointConnectionError"):
        storage.exists(hashlib.sha256(b"").hexdigest())
    with pytest.raises(MediaStorageUnavailable, match="no answer"):
        storage.check_bucket()


class _StalledRaw(io.RawIOBase):
    def readable(self):
        return True

    def readinto(self, buffer):  # noqa: ARG002 - it fails before it would write
        raise ReadTimeoutError(None, "/", "read timed out")


class _StalledClient:
    def get_object(self, **kwargs):  # noqa: ARG002 - whichever object: it stalls
        return {"Body": StreamingBody(_StalledRaw(), 100)}


def test_a_body_that_stalls_while_read_raises_an_oserror(tmp_path):
    storage = S3Storage(_StalledClient(), "bucket", media_root=tmp_path)
    with (
        storage.open(hashlib.sha256(b"").hexdigest()) as stream,
        pytest.raises(MediaStorageUnavailable, match="ReadTimeoutError"),
    ):
        stream.read()


def test_boto3_ignores_ambient_aws_configuration(env_vars, s3, bucket, tmp_path, monkeypatch):
    """No ~/.aws file, profile, endpoint, region or key from the environment is used: the
    Plexus settings alone say where the bucket is and which key opens it; without keys only
    role credentials from the platform would be (none here)."""
    marker = tmp_path / "credential-process-ran"
    config = tmp_path / "aws-config"
    config.write_text(
        "[default]\n"
        "region = eu-west-3\n"
        "endpoint_url = http://127.0.0.1:9\n"
        f"credential_process = touch {marker}\n"
        "[profile elsewhere]\n"
        "region = eu-west-3\n"
    )
    credentials = tmp_path / "aws-credentials"
    credentials.write_text(
        "[default]\naws_access_key_id = FROMFILE\naws_secret_access_key = from-file\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(credentials))
    monkeypatch.setenv("AWS_PROFILE", "missing-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-3")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "FROMENV")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "from-env")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    settings = load_settings(environ=env_vars)
    storage = S3Storage.for_settings(settings)
    key = hashlib.sha256(b"ambient").hexdigest()
    storage.put(key, _temp_file(storage, b"ambient"))
    assert _names(s3, bucket) == [f"{PREFIX}{key[:2]}/{key}"]
    assert storage.client.meta.region_name == "us-east-1"

    keyless = {
        k: v
        for k, v in env_vars.items()
        if k not in {"PLEXUS_MEDIA_S3_ACCESS_KEY_ID", "PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY"}
    }
    without_keys = S3Storage.for_settings(load_settings(environ=keyless))
    with pytest.raises(MediaStorageUnavailable, match="NoCredentialsError"):
        without_keys.exists(key)
    with pytest.raises(MediaStorageUnavailable, match="no credentials"):
        without_keys.check_bucket()
    assert not marker.exists()


def test_one_client_serves_every_call_with_the_same_settings(settings, env_vars, monkeypatch):
    from plexus.media.service import storage_for

    first, second = storage_for(settings), storage_for(settings)
    assert isinstance(first, S3Storage)
    assert first.client is second.client
    assert first.temp_dir == settings.data_dir / "media" / "tmp"
    # Without credentials no client is kept: the machine's role is looked for again.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    keyless = load_settings(
        environ={
            k: v
            for k, v in env_vars.items()
            if k not in {"PLEXUS_MEDIA_S3_ACCESS_KEY_ID", "PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY"}
        }
    )
    assert storage_for(keyless).client is not storage_for(keyless).client


@pytest.fixture
def free_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- the media API on S3 -------------------------------------------------------------------


def _local_media(runtime) -> list[Path]:
    root = runtime.settings.data_dir / "media"
    return sorted(root.rglob("*")) if root.exists() else []


def test_upload_download_delete_through_the_api(client, runtime, s3, bucket):
    owner = sign_in(runtime, client, "owner@example.com")
    response = client.post(
        MEDIA, params={"filename": "a.png"}, content=_png(), headers=owner.headers
    )
    assert response.status_code == 201, response.text
    stored = response.json()
    key = stored["sha256"]
    name = f"{PREFIX}{key[:2]}/{key}"
    assert _names(s3, bucket) == [name]
    in_bucket = s3.get_object(Bucket=bucket, Key=name)["Body"].read()
    assert hashlib.sha256(in_bucket).hexdigest() == key
    # Nothing stays on the local disk but the (empty) folder uploads are checked in.
    root = runtime.settings.data_dir / "media"
    assert _local_media(runtime) == [root / "tmp"]

    content = client.get(f"{MEDIA}/{stored['id']}/content", headers=owner.headers)
    assert content.status_code == 200
    assert content.headers["content-type"] == "image/png"
    assert content.content == in_bucket

    assert client.delete(f"{MEDIA}/{stored['id']}", headers=owner.headers).status_code == 204
    assert _names(s3, bucket) == []
    with pytest.raises(ClientError):
        s3.head_object(Bucket=bucket, Key=name)


def test_a_refused_upload_leaves_no_object(client, runtime, s3, bucket):
    owner = sign_in(runtime, client, "owner@example.com")
    headers = {**owner.headers, "Content-Type": "image/jpeg"}
    php = b"<?php system($_GET['c']); ?>\n"
    response = client.post(MEDIA, params={"filename": "shell.jpg"}, content=php, headers=headers)
    assert response.status_code == 415, response.text
    assert _names(s3, bucket) == []
    assert [p for p in _local_media(runtime) if p.is_file()] == []


def test_content_missing_from_the_bucket_answers_404(client, runtime, s3, bucket):
    owner = sign_in(runtime, client, "owner@example.com")
    stored = client.post(MEDIA, content=_png(), headers=owner.headers).json()
    key = stored["sha256"]
    s3.delete_object(Bucket=bucket, Key=f"{PREFIX}{key[:2]}/{key}")
    response = client.get(f"{MEDIA}/{stored['id']}/content", headers=owner.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


# --- the settings --------------------------------------------------------------------------


def test_s3_without_a_bucket_is_refused_naming_the_variable(env_vars, tmp_path):
    env = {k: v for k, v in env_vars.items() if k != "PLEXUS_MEDIA_S3_BUCKET"}
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert caught.value.problems == ["PLEXUS_MEDIA_STORAGE=s3 needs PLEXUS_MEDIA_S3_BUCKET"]
    result = run_cli(["doctor"], env, tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "PLEXUS_MEDIA_S3_BUCKET" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_s3_settings_are_checked(env_vars, tmp_path):
    def problems(**changes: str | None) -> list[str]:
        env = {**env_vars, **changes}
        env = {k: v for k, v in env.items() if v is not None}
        try:
            load_settings(environ=env)
        except ConfigError as error:
            return error.problems
        return []

    assert problems() == []
    together = (
        "PLEXUS_MEDIA_S3_ACCESS_KEY_ID and PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY are set together "
        "or not at all"
    )
    assert problems(PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY=None) == [together]
    assert problems(PLEXUS_MEDIA_S3_CA_FILE=str(tmp_path / "none.pem")) == [
        "PLEXUS_MEDIA_S3_CA_FILE names a file that does not exist"
    ]
    for variable, value in {
        "PLEXUS_MEDIA_S3_BUCKET": "Not_A_Bucket",
        "PLEXUS_MEDIA_S3_ENDPOINT_URL": "https://key:secret@minio.internal",
        "PLEXUS_MEDIA_S3_PREFIX": "no-trailing-slash",
        "PLEXUS_MEDIA_S3_SSE": "aws:kms",
        "PLEXUS_MEDIA_STORAGE": "ftp",
    }.items():
        found = problems(**{variable: value})
        assert len(found) == 1, found
        assert found[0].startswith(f"{variable} is invalid"), found
        assert value not in found[0]
    # An empty value (as an env file leaves it) is "not set".
    assert problems(PLEXUS_MEDIA_S3_ENDPOINT_URL="", PLEXUS_MEDIA_S3_CA_FILE="") == []
    # Local storage does not look at the S3 settings at all.
    assert problems(PLEXUS_MEDIA_STORAGE="local", PLEXUS_MEDIA_S3_BUCKET=None) == []


def test_production_wants_https_and_a_real_secret(env_vars, tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("unused")
    key.write_text("unused")
    production = {
        **env_vars,
        "PLEXUS_ENV": "production",
        "PLEXUS_BCRYPT_ROUNDS": "10",
        "PLEXUS_TLS_CERT_FILE": str(cert),
        "PLEXUS_TLS_KEY_FILE": str(key),
    }
    # A loopback endpoint may be plain HTTP (a MinIO beside Plexus, behind its own TLS).
    assert load_settings(environ=production).media_s3_endpoint_url.startswith("http://127.")
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={
                **production,
                "PLEXUS_MEDIA_S3_ENDPOINT_URL": "http://minio.internal:9000",
                "PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY": "change-me-to-the-secret-access-key",
            }
        )
    https_only = (
        "PLEXUS_MEDIA_S3_ENDPOINT_URL must be an https:// address in production "
        "(http only for a loopback address)"
    )
    assert caught.value.problems == [
        https_only,
        "PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY is a placeholder value",
    ]
    https = {**production, "PLEXUS_MEDIA_S3_ENDPOINT_URL": "https://minio.internal:9000"}
    assert load_settings(environ=https).media_s3_endpoint_url == "https://minio.internal:9000"


def test_the_secret_key_may_come_from_a_file_and_is_redacted(env_vars, tmp_path):
    secret_file = tmp_path / "s3-secret"
    secret_file.write_text("from-a-file-" + "f" * 30 + "\n")
    env = {k: v for k, v in env_vars.items() if k != "PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY"}
    env["PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY_FILE"] = str(secret_file)
    settings = load_settings(environ=env)
    assert settings.media_s3_secret_access_key.get_secret_value() == "from-a-file-" + "f" * 30
    assert "from-a-file-" + "f" * 30 in settings.secret_values()
    assert SECRET_ACCESS_KEY not in repr(settings)


# --- plexus doctor -------------------------------------------------------------------------


def _storage_line(stdout: str) -> str:
    lines = [line for line in stdout.splitlines() if line[7:].startswith("storage ")]
    assert len(lines) == 1, stdout
    return lines[0]


def test_doctor_checks_the_bucket(env_vars, tmp_path):
    result = run_cli(["doctor"], env_vars, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _storage_line(result.stdout).startswith("[ok  ] storage ")
    assert f"s3 bucket {env_vars['PLEXUS_MEDIA_S3_BUCKET']} answers" in result.stdout


def test_doctor_fails_when_the_bucket_does_not_answer(env_vars, tmp_path):
    env = {**env_vars, "PLEXUS_MEDIA_S3_BUCKET": "no-such-bucket-x"}
    result = run_cli(["doctor"], env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    line = _storage_line(result.stdout)
    assert line.startswith("[FAIL] storage ")
    assert line.endswith("s3 bucket no-such-bucket-x: no such bucket")
    assert SECRET_ACCESS_KEY not in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
