"""``plexus doctor``: one readable line per check, exit 1 on any failure, never a traceback."""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import pytest

from plexus.cli.doctor import CERT_WARN_DAYS, certificate_findings

from conftest import run_cli
from tls_helpers import make_self_signed

if TYPE_CHECKING:
    from pathlib import Path

SUBJECTS = ("settings", "database", "vault", "queue", "redis", "tls")


def run_doctor(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["doctor"], env, cwd)


def report_lines(stdout: str) -> dict[str, tuple[str, str]]:
    """``{subject: (mark, message)}`` from the report's ``[mark] subject message`` lines."""
    lines: dict[str, tuple[str, str]] = {}
    for line in stdout.splitlines():
        match = re.fullmatch(r"\[(ok  |WARN|FAIL)\] (\S+)\s+(.*)", line)
        if match:
            mark, subject, message = match.groups()
            assert subject not in lines, f"{subject} reported twice:\n{stdout}"
            lines[subject] = (mark.strip(), message)
    return lines


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert 'File "' not in output, output


def test_doctor_reports_every_check_and_passes_on_test_settings(
    env_vars: dict[str, str], tmp_path: Path
):
    result = run_doctor(env_vars, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = report_lines(result.stdout)
    assert set(lines) == set(SUBJECTS), result.stdout
    assert lines["settings"] == ("ok", "valid for test")
    assert lines["database"][0] == "ok"
    assert "schema up to date" in lines["database"][1]
    assert lines["queue"][0] == "ok"
    assert lines["redis"] == ("ok", "not configured (single-machine mode)")
    assert lines["vault"][0] == "ok"
    # Outside production plain HTTP is a warning, not a failure.
    assert lines["tls"][0] == "WARN"
    assert re.search(r"^6 checks: 0 failed, 1 warnings$", result.stdout, re.MULTILINE)
    assert_no_traceback(result)


def _with_certificate(env_vars: dict[str, str], tmp_path: Path, **validity) -> dict[str, str]:
    tls = make_self_signed(tmp_path / "tls", **validity)
    return {
        **env_vars,
        "PLEXUS_ENV": "test",
        "PLEXUS_TLS_CERT_FILE": str(tls.cert),
        "PLEXUS_TLS_KEY_FILE": str(tls.key),
    }


def test_doctor_warns_about_a_certificate_expiring_soon(env_vars: dict[str, str], tmp_path: Path):
    """An operator is told before the certificate lapses (a warning, still exit 0)."""
    now = datetime.now(UTC)
    env = _with_certificate(
        env_vars,
        tmp_path,
        not_valid_before=now - timedelta(days=80),
        not_valid_after=now + timedelta(days=10),
    )
    result = run_doctor(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    mark, message = report_lines(result.stdout)["tls"]
    assert mark == "WARN"
    assert "expires in" in message
    assert re.search(r"\b(9|10) day", message), message
    assert_no_traceback(result)


def test_doctor_fails_on_an_expired_certificate(env_vars: dict[str, str], tmp_path: Path):
    now = datetime.now(UTC)
    env = _with_certificate(
        env_vars,
        tmp_path,
        not_valid_before=now - timedelta(days=400),
        not_valid_after=now - timedelta(days=1),
    )
    result = run_doctor(env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    mark, message = report_lines(result.stdout)["tls"]
    assert mark == "FAIL"
    assert "expired" in message
    assert (now - timedelta(days=1)).strftime("%Y-%m-%d") in message
    assert_no_traceback(result)


def test_doctor_passes_with_a_valid_certificate(env_vars: dict[str, str], tmp_path: Path):
    env = _with_certificate(env_vars, tmp_path)
    result = run_doctor(env, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    mark, message = report_lines(result.stdout)["tls"]
    assert mark == "ok"
    assert "valid until" in message


# --- certificate_findings, at its boundaries ------------------------------------------------


@pytest.fixture(scope="module")
def expiry() -> datetime:
    return datetime(2031, 6, 15, 12, 0, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory, expiry: datetime) -> Path:
    tls = make_self_signed(
        tmp_path_factory.mktemp("cert"),
        not_valid_before=expiry - timedelta(days=365),
        not_valid_after=expiry,
    )
    return tls.cert


@pytest.mark.parametrize(
    ("days_left", "level"),
    [
        (365, "ok"),
        (31, "ok"),
        (CERT_WARN_DAYS, "ok"),
        (29, "warn"),
        (1, "warn"),
    ],
)
def test_certificate_findings_warns_inside_the_window(
    certificate: Path, expiry: datetime, days_left: int, level: str
):
    findings = certificate_findings(certificate, now=expiry - timedelta(days=days_left))
    assert [(f.level, f.subject) for f in findings] == [(level, "tls")]
    if level == "warn":
        assert f"expires in {days_left} day(s), on 2031-06-15" in findings[0].message
    else:
        assert findings[0].message == "certificate valid until 2031-06-15"


def test_certificate_findings_just_before_expiry_warns(certificate: Path, expiry: datetime):
    findings = certificate_findings(certificate, now=expiry - timedelta(seconds=1))
    assert [f.level for f in findings] == ["warn"]
    assert "expires in 0 day(s)" in findings[0].message


@pytest.mark.parametrize("after", [timedelta(0), timedelta(seconds=1), timedelta(days=3)])
def test_certificate_findings_fails_once_expired(
    certificate: Path, expiry: datetime, after: timedelta
):
    findings = certificate_findings(certificate, now=expiry + after)
    assert [f.level for f in findings] == ["fail"]
    assert findings[0].message == "certificate expired on 2031-06-15"


def test_certificate_findings_fails_when_not_valid_yet(certificate: Path, expiry: datetime):
    findings = certificate_findings(certificate, now=expiry - timedelta(days=366))
    assert [f.level for f in findings] == ["fail"]
    assert "not valid yet" in findings[0].message


def test_certificate_findings_fails_on_unreadable_file(tmp_path: Path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    for path in (garbage, tmp_path / "missing.pem"):
        findings = certificate_findings(path)
        assert [f.level for f in findings] == ["fail"]
        assert "cannot read a PEM certificate" in findings[0].message


def test_certificate_findings_defaults_to_now(tmp_path: Path):
    now = datetime.now(UTC)
    soon = make_self_signed(tmp_path, not_valid_after=now + timedelta(days=5), name="soon")
    assert [f.level for f in certificate_findings(soon.cert)] == ["warn"]
    later = make_self_signed(tmp_path, not_valid_after=now + timedelta(days=90), name="later")
    assert [f.level for f in certificate_findings(later.cert)] == ["ok"]


# --- dependencies that do not answer --------------------------------------------------------


def test_doctor_fails_when_the_database_does_not_answer(env_vars: dict[str, str], tmp_path: Path):
    env = {**env_vars, "PLEXUS_DATABASE_URL": "postgresql+psycopg://postgres@127.0.0.1:1/x"}
    result = run_doctor(env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = report_lines(result.stdout)
    assert lines["database"] == ("FAIL", "postgresql database does not answer")
    # The other checks still run and are reported (the vault's needs the database).
    assert set(lines) == set(SUBJECTS) - {"vault"}
    assert lines["queue"][0] == "ok"
    assert_no_traceback(result)


def test_doctor_fails_when_redis_does_not_answer(env_vars: dict[str, str], tmp_path: Path):
    env = {**env_vars, "PLEXUS_REDIS_URL": "redis://127.0.0.1:1/0"}
    result = run_doctor(env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = report_lines(result.stdout)
    assert lines["redis"] == ("FAIL", "does not answer")
    assert lines["queue"] == ("FAIL", "redis queue storage does not answer")
    assert lines["database"][0] == "ok"
    assert re.search(r"^6 checks: 2 failed, 1 warnings$", result.stdout, re.MULTILINE)
    assert_no_traceback(result)


def test_doctor_does_not_print_connection_secrets(env_vars: dict[str, str], tmp_path: Path):
    """A failing check names the dependency, never the credential in its URL."""
    password = "s3cr3t-" + "p" * 24
    env = {
        **env_vars,
        "PLEXUS_DATABASE_URL": f"postgresql+psycopg://plexus:{password}@127.0.0.1:1/x",
        "PLEXUS_REDIS_URL": f"redis://:{password}@127.0.0.1:1/0",
    }
    result = run_doctor(env, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert password not in result.stdout + result.stderr
    assert_no_traceback(result)


def test_doctor_fails_when_the_master_key_does_not_open_the_secrets(
    env_vars: dict[str, str], tmp_path: Path
):
    """V13.3.1: a replaced master key is reported, never silently accepted."""
    from plexus.kit.keyproviders import generate_master_key

    from conftest import run_cli

    sealed = run_cli(["audit", "verify"], env_vars, cwd=tmp_path)  # a start seals the canary
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    wrong = generate_master_key()
    result = run_doctor({**env_vars, "PLEXUS_MASTER_KEY": wrong}, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = report_lines(result.stdout)
    assert lines["vault"][0] == "FAIL"
    assert "cannot decrypt this database's secrets" in lines["vault"][1]
    assert wrong not in result.stdout + result.stderr
    assert_no_traceback(result)


def test_doctor_fails_while_the_current_master_key_is_not_adopted(
    env_vars: dict[str, str], tmp_path: Path
):
    """A new key with the old one as previous: services refuse until `keys rotate`."""
    from plexus.kit.keyproviders import generate_master_key

    from conftest import run_cli

    sealed = run_cli(["audit", "verify"], env_vars, cwd=tmp_path)
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    rotated_env = {
        **env_vars,
        "PLEXUS_MASTER_KEY": generate_master_key(),
        "PLEXUS_MASTER_KEY_PREVIOUS": env_vars["PLEXUS_MASTER_KEY"],
    }
    before = report_lines(run_doctor(rotated_env, tmp_path).stdout)
    assert before["vault"][0] == "FAIL"
    assert "plexus keys rotate" in before["vault"][1]
    adopted = run_cli(["keys", "rotate"], rotated_env, cwd=tmp_path)
    assert adopted.returncode == 0, adopted.stdout + adopted.stderr
    after = run_doctor(rotated_env, tmp_path)
    assert after.returncode == 0, after.stdout + after.stderr
    assert report_lines(after.stdout)["vault"][0] == "ok"
