"""Settings (R21): production refuses unsafe configuration; development makes its own secrets."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path

import pytest

from plexus.config import (
    PLACEHOLDER_MARKERS,
    SECRET_FIELDS,
    ConfigError,
    Environment,
    load_settings,
)

from conftest import ROOT, run_cli

STRONG_KEY = "s3cure-" + "Q" * 40
SHORT_KEY = "only-twenty-bytes-xx"


def _production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    cert = tmp_path / "cert.pem"
    key = tmp_path / "key.pem"
    cert.write_text("unused by the settings check")
    key.write_text("unused by the settings check")
    env = {
        "PLEXUS_ENV": "production",
        "PLEXUS_DATA_DIR": str(tmp_path / "var"),
        "PLEXUS_AUDIT_KEY": STRONG_KEY,
        "PLEXUS_PASSWORD_PEPPER": "pepper-" + STRONG_KEY,
        "PLEXUS_TOKEN_KEY": "token-" + STRONG_KEY,
        "PLEXUS_INDEX_KEY": "index-" + STRONG_KEY,
        "PLEXUS_MASTER_KEY": "prodMasterKey" + "Q" * 30 + "=",
        "PLEXUS_TLS_CERT_FILE": str(cert),
        "PLEXUS_TLS_KEY_FILE": str(key),
    }
    env.update(extra)
    return env


def _run_serve(env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return run_cli(["serve", "--port", "9"], env, cwd)


BAD_AUDIT_KEYS = {
    "missing": None,
    "placeholder": "change-me-to-a-long-random-value-from-a-password-manager",
    "short": SHORT_KEY,
}


@pytest.mark.parametrize("case", sorted(BAD_AUDIT_KEYS))
def test_production_start_refuses_bad_secret(case: str, tmp_path: Path) -> None:
    """V13.3.1, V13.2.3: a missing, placeholder or short secret stops startup with exit 2,
    names the variable and never prints the value."""
    env = _production_env(tmp_path)
    value = BAD_AUDIT_KEYS[case]
    if value is None:
        del env["PLEXUS_AUDIT_KEY"]
    else:
        env["PLEXUS_AUDIT_KEY"] = value
    result = _run_serve(env, tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "PLEXUS_AUDIT_KEY" in result.stderr
    if value is not None:
        assert value not in output
    assert "Traceback" not in output


def test_production_start_refuses_secret_file_pointing_nowhere(tmp_path: Path) -> None:
    """A ``_FILE`` variable naming a missing file is a startup error, like a missing secret."""
    env = _production_env(tmp_path)
    del env["PLEXUS_AUDIT_KEY"]
    env["PLEXUS_AUDIT_KEY_FILE"] = str(tmp_path / "no-such-secret")
    result = _run_serve(env, tmp_path)
    assert result.returncode == 2
    assert "PLEXUS_AUDIT_KEY_FILE" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_production_start_refuses_plain_http(tmp_path: Path) -> None:
    """V12.2.1: production without TLS and without a trusted proxy refuses to start."""
    env = _production_env(tmp_path)
    del env["PLEXUS_TLS_CERT_FILE"], env["PLEXUS_TLS_KEY_FILE"]
    result = _run_serve(env, tmp_path)
    assert result.returncode == 2
    assert "plain HTTP" in result.stderr
    assert STRONG_KEY not in result.stdout + result.stderr


def test_every_problem_is_reported_on_its_own_line(tmp_path: Path) -> None:
    env = _production_env(tmp_path, PLEXUS_AUDIT_KEY=SHORT_KEY)
    del env["PLEXUS_TLS_CERT_FILE"], env["PLEXUS_TLS_KEY_FILE"]
    result = _run_serve(env, tmp_path)
    lines = [line for line in result.stderr.splitlines() if "configuration error" in line]
    assert len(lines) == 2, result.stderr
    assert any("PLEXUS_AUDIT_KEY" in line for line in lines)
    assert any("plain HTTP" in line for line in lines)


def test_secret_is_read_from_file(tmp_path: Path) -> None:
    secret_file = tmp_path / "audit_key"
    secret_file.write_text(STRONG_KEY + "\n")
    env = _production_env(tmp_path)
    del env["PLEXUS_AUDIT_KEY"]
    env["PLEXUS_AUDIT_KEY_FILE"] = str(secret_file)
    settings = load_settings(environ=env)
    assert settings.secret("audit_key") == STRONG_KEY


def test_secret_and_its_file_together_are_refused(tmp_path: Path) -> None:
    secret_file = tmp_path / "audit_key"
    secret_file.write_text(STRONG_KEY)
    env = _production_env(tmp_path, PLEXUS_AUDIT_KEY_FILE=str(secret_file))
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert any("both set" in p for p in caught.value.problems)


def test_malformed_setting_is_named_without_its_value(tmp_path: Path) -> None:
    env = _production_env(tmp_path, PLEXUS_PORT="not-a-port-xyz")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    joined = "\n".join(caught.value.problems)
    assert "PLEXUS_PORT" in joined
    assert "not-a-port-xyz" not in joined


def test_wildcard_cors_origin_is_refused(tmp_path: Path) -> None:
    """V3.4.2: the CORS allow-list takes explicit origins only."""
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=_production_env(tmp_path, PLEXUS_CORS_ORIGINS="*"))
    assert any("PLEXUS_CORS_ORIGINS" in p for p in caught.value.problems)


def test_trusted_proxy_list_allows_plain_http_behind_a_proxy(tmp_path: Path) -> None:
    env = _production_env(tmp_path, PLEXUS_TRUSTED_PROXIES="10.0.0.0/8, 127.0.0.1/32")
    del env["PLEXUS_TLS_CERT_FILE"], env["PLEXUS_TLS_KEY_FILE"]
    settings = load_settings(environ=env)
    assert settings.trusted_proxies == ["10.0.0.0/8", "127.0.0.1/32"]


def test_env_example_lists_every_setting_with_placeholders_only() -> None:
    """V13.3.1: ``.env.example`` documents every variable, and none of its secrets would pass."""
    example = (ROOT / ".env.example").read_text()
    names = set()
    lines = example.splitlines()
    for index, line in enumerate(lines):
        stripped = line.lstrip("# ").strip()
        if "=" in stripped and stripped.split("=", 1)[0].startswith("PLEXUS_"):
            name, value = stripped.split("=", 1)
            names.add(name)
            assert index > 0, f"{name} has no comment"
            assert lines[index - 1].startswith("#"), f"{name} has no comment"
            if name.removeprefix("PLEXUS_").lower().removesuffix("_file") in SECRET_FIELDS:
                assert any(m in value.lower() for m in PLACEHOLDER_MARKERS), name
    from plexus.config import Settings

    # provider_config is gathered from PLEXUS_PROVIDER_<NAME>_<KEY>, one variable per key.
    fields = set(Settings.model_fields) - {"provider_config"}
    expected = {f"PLEXUS_{field.upper()}" for field in fields}
    assert expected <= names, f"missing from .env.example: {sorted(expected - names)}"


def test_provider_settings_are_read_per_provider_and_secrets_are_known(tmp_path: Path) -> None:
    """PLEXUS_PROVIDER_<NAME>_<KEY> (or its _FILE) reaches that provider only; secret keys
    join the values the log redactor hides."""
    secret_file = tmp_path / "secret"
    secret_file.write_text("airtable-secret-from-a-file-0123456789\n")
    settings = load_settings(
        environ={
            "PLEXUS_ENV": "test",
            "PLEXUS_DATA_DIR": str(tmp_path),
            "PLEXUS_PROVIDER_AIRTABLE_CLIENT_ID": "airtable-client",
            "PLEXUS_PROVIDER_AIRTABLE_CLIENT_SECRET_FILE": str(secret_file),
            "PLEXUS_PROVIDER_IMGUR_CLIENT_ID": "imgur-client",
        }
    )
    assert settings.provider_values("airtable") == {
        "client_id": "airtable-client",
        "client_secret": "airtable-secret-from-a-file-0123456789",
    }
    assert settings.provider_values("imgur") == {"client_id": "imgur-client"}
    assert settings.provider_values("mastodon") == {}
    assert "airtable-secret-from-a-file-0123456789" in settings.secret_values()
    assert "airtable-client" not in settings.secret_values()
    with pytest.raises(ConfigError) as caught:
        load_settings(
            environ={
                "PLEXUS_ENV": "test",
                "PLEXUS_PROVIDER_IMGUR_CLIENT_SECRET_FILE": str(tmp_path / "missing"),
            }
        )
    assert caught.value.problems == [
        "PLEXUS_PROVIDER_IMGUR_CLIENT_SECRET_FILE names a file that cannot be read"
    ]


def test_env_example_values_are_refused_in_production(tmp_path: Path) -> None:
    """Copying ``.env.example`` into production fails fast (V13.2.3: no default credentials)."""
    env = _production_env(tmp_path)
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.startswith("PLEXUS_AUDIT_KEY="):
            env["PLEXUS_AUDIT_KEY"] = line.split("=", 1)[1]
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert any("placeholder" in p for p in caught.value.problems)


def test_development_generates_secrets_once_with_private_permissions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    env = {"PLEXUS_DATA_DIR": str(tmp_path / "var")}
    first = load_settings(environ=env)
    secrets_file = tmp_path / "var" / "dev-secrets.env"
    assert first.env is Environment.DEVELOPMENT
    assert stat.S_IMODE(secrets_file.stat().st_mode) == 0o600
    content = secrets_file.read_text()
    second = load_settings(environ=env)
    assert secrets_file.read_text() == content
    assert first.secret("audit_key") == second.secret("audit_key")
    assert len(first.secret("audit_key")) >= 32


def test_dotenv_is_read_in_development_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """R21: ``.env`` is a development convenience and is ignored everywhere else."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("PLEXUS_PORT=8123\n")
    dev = load_settings(environ={"PLEXUS_DATA_DIR": str(tmp_path / "var")})
    assert dev.port == 8123
    test_env = load_settings(environ={"PLEXUS_ENV": "test"})
    assert test_env.port == 8000
    prod = load_settings(environ=_production_env(tmp_path))
    assert prod.port == 8000


def test_malformed_rate_limits_stop_startup(tmp_path: Path) -> None:
    """R15: a rate-limit override that cannot be parsed is a configuration error at start."""
    env = _production_env(tmp_path, PLEXUS_RATE_LIMITS="login=lots")
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert any("PLEXUS_RATE_LIMITS" in p for p in caught.value.problems)
