"""``plexus doctor``: a readable report of what this installation needs and has."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

import typer
from cryptography import x509

from plexus import schema
from plexus.cli.common import settings_or_exit
from plexus.db import unit_of_work
from plexus.health.service import check_database, check_queue, check_redis
from plexus.kit.vault import KeyServiceError
from plexus.runtime import init_runtime
from plexus.vault.service import MISMATCH_MESSAGE, canary_state, vault_status

if TYPE_CHECKING:
    from pathlib import Path

    from plexus.config import Settings
    from plexus.runtime import Runtime

CERT_WARN_DAYS: Final = 30


@dataclass(frozen=True, slots=True)
class Finding:
    level: str  # "ok", "warn" or "fail"
    subject: str
    message: str


def certificate_findings(cert_file: Path, now: datetime | None = None) -> list[Finding]:
    """Expiry of the first certificate in a PEM file: fail when expired, warn when near."""
    now = now or datetime.now(UTC)
    try:
        certificate = x509.load_pem_x509_certificates(cert_file.read_bytes())[0]
    except (OSError, ValueError):
        return [Finding("fail", "tls", f"cannot read a PEM certificate from {cert_file}")]
    expires = certificate.not_valid_after_utc
    if expires <= now:
        return [Finding("fail", "tls", f"certificate expired on {expires:%Y-%m-%d}")]
    if certificate.not_valid_before_utc > now:
        return [Finding("fail", "tls", "certificate is not valid yet")]
    left = expires - now
    if left < timedelta(days=CERT_WARN_DAYS):
        return [
            Finding(
                "warn", "tls", f"certificate expires in {left.days} day(s), on {expires:%Y-%m-%d}"
            )
        ]
    return [Finding("ok", "tls", f"certificate valid until {expires:%Y-%m-%d}")]


def _findings(settings: Settings) -> list[Finding]:
    findings = [Finding("ok", "settings", f"valid for {settings.env}")]
    rt = init_runtime(settings)
    try:
        database = check_database(rt)
        backend = rt.engine.dialect.name
        if not database.ok:
            findings.append(Finding("fail", "database", f"{backend} database does not answer"))
        elif schema.is_current(rt.engine):
            findings.append(Finding("ok", "database", f"{backend}, schema up to date"))
            findings.extend(_vault_findings(rt))
        else:
            findings.append(Finding("fail", "database", "schema out of date: run `plexus migrate`"))
        queue = check_queue()
        kind = "redis" if settings.redis_url else "sqlite"
        findings.append(
            Finding(
                "ok" if queue.ok else "fail",
                "queue",
                f"{kind} queue storage " + ("answers" if queue.ok else "does not answer"),
            )
        )
        redis_check = check_redis(rt)
        if redis_check is None:
            findings.append(Finding("ok", "redis", "not configured (single-machine mode)"))
        else:
            findings.append(
                Finding(
                    "ok" if redis_check.ok else "fail",
                    "redis",
                    "answers" if redis_check.ok else "does not answer",
                )
            )
    finally:
        rt.dispose()
    findings.extend(_storage_findings(settings))
    if settings.tls_cert_file is not None:
        findings.extend(certificate_findings(settings.tls_cert_file))
    elif settings.trusted_proxies:
        findings.append(Finding("ok", "tls", "terminated by a trusted proxy"))
    else:
        level = "fail" if settings.is_production else "warn"
        findings.append(Finding(level, "tls", "plain HTTP (no certificate, no trusted proxy)"))
    return findings


def _storage_findings(settings: Settings) -> list[Finding]:
    """Whether the S3 bucket answers, when media live in one (nothing to check otherwise)."""
    if settings.media_storage != "s3":
        return []
    from plexus.media.s3 import S3Storage  # boto3 loads only where S3 is configured
    from plexus.media.storage import MediaStorageUnavailable

    storage = S3Storage.for_settings(settings)
    try:
        storage.check_bucket()
    except MediaStorageUnavailable as exc:
        return [Finding("fail", "storage", f"s3 bucket {storage.bucket}: {exc}")]
    return [Finding("ok", "storage", f"s3 bucket {storage.bucket} answers")]


def _vault_findings(rt: Runtime) -> list[Finding]:
    """Whether the configured keys open this database's secrets, and whether a rotation is
    unfinished (values still under an old key).
    """
    try:
        with unit_of_work(rt.sessions) as session:
            state = canary_state(session, rt.secretbox)
            if state == "mismatch":
                return [Finding("fail", "vault", MISMATCH_MESSAGE)]
            if state == "not-current":
                return [
                    Finding(
                        "fail",
                        "vault",
                        "the current master key is not adopted yet (services refuse to start): "
                        "run `plexus keys rotate`",
                    )
                ]
            pending = vault_status(session, rt.secretbox).not_current
    except KeyServiceError as exc:
        return [Finding("fail", "vault", f"the key service failed: {exc}")]
    findings = [
        Finding(
            "ok",
            "vault",
            "the master key opens this database's secrets"
            if state == "verified"
            else "no canary yet (the next start seals one)",
        )
    ]
    if pending:
        findings.append(
            Finding(
                "warn",
                "vault",
                f"{pending} secret(s) not under the current key: run `plexus keys rotate`",
            )
        )
    return findings


def doctor() -> None:
    """Check settings, database, queue, Redis, the media bucket (when S3 is configured) and
    the TLS certificate; exit 1 on a failure.
    """
    settings = settings_or_exit()
    findings = _findings(settings)
    marks = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL"}
    for finding in findings:
        typer.echo(f"[{marks[finding.level]}] {finding.subject:<9} {finding.message}")
    failed = sum(f.level == "fail" for f in findings)
    warned = sum(f.level == "warn" for f in findings)
    typer.echo(f"{len(findings)} checks: {failed} failed, {warned} warnings")
    if failed:
        raise typer.Exit(1)
