"""Media bytes in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, Cloudflare R2).

Objects are named ``<prefix><aa>/<sha256>``, stored private (no ACL is ever sent) with the
type ``application/octet-stream`` and, unless ``PLEXUS_MEDIA_S3_SSE=none``, server-side
encryption ``AES256``. Uploads are still streamed to and checked in the local
``<data_dir>/media/tmp`` folder; only the checked bytes are sent, in one PUT (the largest
upload Plexus allows, 4 GiB, is below S3's 5 GB limit for one), and the temporary file
is then removed.

boto3 is told everything it needs by Plexus's settings and reads nothing else of its own
accord: no ``~/.aws/config`` or ``~/.aws/credentials`` (nor ``AWS_CONFIG_FILE``,
``AWS_SHARED_CREDENTIALS_FILE``, ``AWS_PROFILE``), no ``~/.boto``, no ``AWS_ENDPOINT_URL*``,
``AWS_DEFAULT_REGION``, ``AWS_CA_BUNDLE``, ``AWS_MAX_ATTEMPTS`` or other configuration
variable, no SSO, no ``credential_process``. Credentials are the static keys of
``PLEXUS_MEDIA_S3_ACCESS_KEY_ID`` / ``PLEXUS_MEDIA_S3_SECRET_ACCESS_KEY`` when set; without
them, only the platform's role credentials, in this order: web identity (EKS IRSA, from
``AWS_ROLE_ARN`` and ``AWS_WEB_IDENTITY_TOKEN_FILE``), the container credentials endpoint
(ECS task roles, EKS Pod Identity), the EC2 instance metadata service. In particular
``AWS_ACCESS_KEY_ID`` in the environment is never used: set the Plexus variables instead,
so the key is validated, redacted from logs and may come from a ``_FILE``.

Each call has bounded connect and read timeouts and at most ``MAX_ATTEMPTS`` attempts. A
bucket that does not answer, or refuses, raises ``MediaStorageUnavailable`` (an OSError);
an absent object raises FileNotFoundError on ``open`` and is ``False`` for ``exists``.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Final, Literal

import boto3
import botocore.session
from botocore.config import Config
from botocore.credentials import CredentialResolver, create_credential_resolver
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
from urllib3.exceptions import HTTPError

from plexus.media.storage import MediaStorageUnavailable, checked_key, temp_folder

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from _typeshed import WriteableBuffer
    from botocore.response import StreamingBody
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import PutObjectRequestTypeDef
    from pydantic import SecretStr

    from plexus.config import Settings

CONNECT_TIMEOUT_SECONDS: Final = 5
READ_TIMEOUT_SECONDS: Final = 60
#: Attempts of one call, the first included (botocore's "standard" retry mode).
MAX_ATTEMPTS: Final = 3
CONTENT_TYPE: Final = "application/octet-stream"
#: Clients kept at once (one per distinct set of S3 settings; a process has one).
MAX_CLIENTS: Final = 8
#: A prefix: empty, or path segments that each end in "/" (as PLEXUS_MEDIA_S3_PREFIX).
PREFIX_SHAPE: Final = re.compile(r"(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*")
#: The credential providers kept from botocore's chain: roles the platform hands out.
PLATFORM_CREDENTIALS: Final = ("assume-role-with-web-identity", "container-role", "iam-role")
#: Botocore settings that differ from its defaults: no shared files, and no endpoint URL
#: from ``AWS_ENDPOINT_URL*`` or a config file's ``services`` section.
_DEFAULTS: Final[dict[str, object]] = {
    "config_file": os.devnull,
    "credentials_file": os.devnull,
    "ignore_configured_endpoint_urls": True,
}
#: Every botocore setting with its default (or ours), read from no variable and no file.
_NO_AMBIENT_CONFIG: Final = {
    name: (None, None, _DEFAULTS.get(name, default), cast)
    for name, (_, _, default, cast) in botocore.session.Session.SESSION_VARIABLES.items()
}
_clients: dict[S3Options, S3Client] = {}


@dataclass(frozen=True, slots=True)
class S3Options:
    """What a client is made from (hashable: one client per distinct set of options)."""

    bucket: str
    region: str
    endpoint_url: str | None
    access_key_id: str | None
    secret_access_key: SecretStr | None
    path_style: bool
    ca_file: str | None

    @classmethod
    def of(cls, settings: Settings) -> S3Options:
        if settings.media_s3_bucket is None:  # refused at startup (config.check_settings)
            msg = "PLEXUS_MEDIA_STORAGE=s3 needs PLEXUS_MEDIA_S3_BUCKET"
            raise ValueError(msg)
        return cls(
            bucket=settings.media_s3_bucket,
            region=settings.media_s3_region,
            endpoint_url=settings.media_s3_endpoint_url,
            access_key_id=settings.media_s3_access_key_id,
            secret_access_key=settings.media_s3_secret_access_key,
            path_style=settings.media_s3_path_style,
            ca_file=str(settings.media_s3_ca_file) if settings.media_s3_ca_file else None,
        )


def checked_prefix(prefix: str) -> str:
    """``prefix`` itself; ValueError unless it is empty or segments each ending in "/"."""
    if not PREFIX_SHAPE.fullmatch(prefix):
        msg = 'an object prefix is empty or path segments that each end in "/"'
        raise ValueError(msg)
    return prefix


def _platform_credentials(session: botocore.session.Session) -> CredentialResolver:
    chain = create_credential_resolver(session)
    return CredentialResolver([p for p in chain.providers if p.METHOD in PLATFORM_CREDENTIALS])


def client_for(options: S3Options) -> S3Client:
    """The S3 client of ``options``, made once (boto3 clients are thread-safe).

    A client that found no credentials is not kept: the next call looks for the machine's
    role again, so a metadata service that did not answer once is not fatal until restart.
    """
    client = _clients.get(options)
    if client is None:
        client, has_credentials = _new_client(options)
        if has_credentials:
            if len(_clients) >= MAX_CLIENTS:
                _clients.clear()
            _clients[options] = client
    return client


def _new_client(options: S3Options) -> tuple[S3Client, bool]:
    core = botocore.session.Session(session_vars=_NO_AMBIENT_CONFIG)
    core.register_component("credential_provider", _platform_credentials(core))
    has_credentials = options.access_key_id is not None or core.get_credentials() is not None
    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"max_attempts": MAX_ATTEMPTS, "mode": "standard"},
        signature_version="s3v4",
        s3={"addressing_style": "path" if options.path_style else "auto"},
        # S3-compatible servers do not all know the CRC checksums AWS now adds by default.
        request_checksum_calculation="when_required" if options.endpoint_url else None,
        response_checksum_validation="when_required" if options.endpoint_url else None,
    )
    secret = options.secret_access_key
    client = boto3.session.Session(botocore_session=core).client(
        "s3",
        region_name=options.region,
        endpoint_url=options.endpoint_url,
        aws_access_key_id=options.access_key_id,
        aws_secret_access_key=secret.get_secret_value() if secret is not None else None,
        config=config,
        verify=options.ca_file or True,
    )
    return client, has_credentials


#: What HeadBucket's refusals mean, for ``plexus doctor``.
_BUCKET_REFUSALS: Final = {
    301: "the bucket is in another region than PLEXUS_MEDIA_S3_REGION",
    400: "bad request (check PLEXUS_MEDIA_S3_REGION and the endpoint)",
    403: "access denied (check the credentials and s3:ListBucket on the bucket)",
    404: "no such bucket",
}


def _reason(error: Exception) -> str:
    """A short, secret-free reason: the S3 error code, or the kind of failure."""
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code") or "")
        status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return f"{code or 'error'} (HTTP {status})" if status else code or "error"
    return type(error).__name__


def _is_absent(error: ClientError) -> bool:
    """Whether S3 says the object is absent (a missing bucket is a fault, not absence)."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    code = error.response.get("Error", {}).get("Code")
    return status == HTTPStatus.NOT_FOUND and code != "NoSuchBucket"


class _ObjectReader(io.RawIOBase):
    """An object's body as a raw stream; failures while reading become OSErrors."""

    def __init__(self, body: StreamingBody) -> None:
        super().__init__()
        self._body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        try:
            data = self._body.read(len(view))
        except (BotoCoreError, HTTPError) as error:
            msg = f"object storage: reading failed: {_reason(error)}"
            raise MediaStorageUnavailable(msg) from error
        view[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage:
    """Media in an S3-compatible bucket; see the module docstring."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        *,
        media_root: Path,
        prefix: str = "",
        sse: Literal["AES256", "none"] = "AES256",
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = checked_prefix(prefix)
        self.encrypt = sse == "AES256"
        self._media_root = media_root

    @classmethod
    def for_settings(cls, settings: Settings) -> S3Storage:
        """The storage the settings describe, on a client shared by every call."""
        options = S3Options.of(settings)
        return cls(
            client_for(options),
            options.bucket,
            media_root=settings.data_dir / "media",
            prefix=settings.media_s3_prefix,
            sse=settings.media_s3_sse,
        )

    @property
    def temp_dir(self) -> Path:
        """Where uploads are written while they are checked: local, as with LocalStorage."""
        return temp_folder(self._media_root)

    def name_of(self, key: str) -> str:
        """The object's name in the bucket: ``<prefix><aa>/<sha256>``."""
        key = checked_key(key)
        return f"{self.prefix}{key[:2]}/{key}"

    def put(self, key: str, source: Path) -> None:
        name = self.name_of(key)
        try:
            with source.open("rb") as body:
                request: PutObjectRequestTypeDef = {
                    "Bucket": self.bucket,
                    "Key": name,
                    "Body": body,
                    "ContentType": CONTENT_TYPE,
                }
                if self.encrypt:
                    request["ServerSideEncryption"] = "AES256"
                self.client.put_object(**request)
        except (BotoCoreError, ClientError) as error:
            raise self._failed("storing", error) from error
        finally:
            # Consumed either way, as LocalStorage's rename consumes it.
            source.unlink(missing_ok=True)

    def open(self, key: str) -> io.BufferedReader:
        name = self.name_of(key)
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=name)
        except ClientError as error:
            if _is_absent(error):
                raise FileNotFoundError(name) from None
            raise self._failed("reading", error) from error
        except BotoCoreError as error:
            raise self._failed("reading", error) from error
        return io.BufferedReader(_ObjectReader(response["Body"]))

    def delete(self, key: str) -> None:
        # DeleteObject answers 204 for an absent key too.
        self._call("deleting", self.client.delete_object, Key=self.name_of(key))

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.name_of(key))
        except ClientError as error:
            if _is_absent(error):
                return False
            raise self._failed("looking up", error) from error
        except BotoCoreError as error:
            raise self._failed("looking up", error) from error
        return True

    def check_bucket(self) -> None:
        """Raise MediaStorageUnavailable, saying why in a few words, unless the bucket
        answers (HeadBucket) to these credentials.
        """
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except ClientError as error:
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            reason = _BUCKET_REFUSALS.get(status or 0, _reason(error))
            raise MediaStorageUnavailable(reason) from error
        except NoCredentialsError as error:
            msg = "no credentials: set the access key or give the machine a role"
            raise MediaStorageUnavailable(msg) from error
        except BotoCoreError as error:
            raise MediaStorageUnavailable(f"no answer ({_reason(error)})") from error

    def _call(self, action: str, method: Callable[..., object], **kwargs: str) -> None:
        try:
            method(Bucket=self.bucket, **kwargs)
        except (BotoCoreError, ClientError) as error:
            raise self._failed(action, error) from error

    @staticmethod
    def _failed(action: str, error: Exception) -> MediaStorageUnavailable:
        return MediaStorageUnavailable(f"object storage: {action} failed: {_reason(error)}")
