"""Vault settings: development and test environments generate master keys of the right
form, and a development secrets file from before the vault keeps its old key as a previous
one, so what it sealed still opens."""

from __future__ import annotations

from pathlib import Path

import pytest

from plexus.config import ConfigError, load_settings
from plexus.kit.keyproviders import decode_master_key
from plexus.kit.secretbox import AesGcmSecretBox
from plexus.vault.service import build_vault

PRE_VAULT_KEY = "a-pre-vault-development-master-key-" + "z" * 20


def test_development_generates_a_valid_master_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={"PLEXUS_DATA_DIR": str(tmp_path / "var")})
    assert len(decode_master_key(settings.secret("master_key"))) == 32
    assert settings.previous_master_keys() == []


def test_test_environment_generates_a_valid_master_key(tmp_path: Path) -> None:
    settings = load_settings(environ={"PLEXUS_ENV": "test", "PLEXUS_DATA_DIR": str(tmp_path)})
    assert len(decode_master_key(settings.secret("master_key"))) == 32


def test_a_pre_vault_development_key_becomes_a_previous_key(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    (data_dir / "dev-secrets.env").write_text(f"PLEXUS_MASTER_KEY={PRE_VAULT_KEY}\n")
    sealed = AesGcmSecretBox(PRE_VAULT_KEY.encode()).seal(b"old totp seed", "users:1:totp_secret")

    settings = load_settings(environ={"PLEXUS_DATA_DIR": str(data_dir)})
    assert settings.previous_master_keys() == [PRE_VAULT_KEY]
    assert settings.secret("master_key") != PRE_VAULT_KEY
    assert build_vault(settings).open(sealed, "users:1:totp_secret") == b"old totp seed"
    content = (data_dir / "dev-secrets.env").read_text()
    assert f"PLEXUS_MASTER_KEY_PREVIOUS={PRE_VAULT_KEY}" in content
    again = load_settings(environ={"PLEXUS_DATA_DIR": str(data_dir)})
    assert again.secret("master_key") == settings.secret("master_key")
    assert (data_dir / "dev-secrets.env").read_text() == content


def test_production_with_transit_needs_an_https_vault_and_a_token(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    strong = "s3cure-" + "Q" * 40
    env = {
        "PLEXUS_ENV": "production",
        "PLEXUS_DATA_DIR": str(tmp_path),
        "PLEXUS_AUDIT_KEY": "audit-" + strong,
        "PLEXUS_PASSWORD_PEPPER": "pepper-" + strong,
        "PLEXUS_TOKEN_KEY": "token-" + strong,
        "PLEXUS_INDEX_KEY": "index-" + strong,
        "PLEXUS_TLS_CERT_FILE": str(cert),
        "PLEXUS_TLS_KEY_FILE": str(key),
        "PLEXUS_KEY_PROVIDER": "vault-transit",
        "PLEXUS_VAULT_ADDR": "http://vault.internal:8200",
    }
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    problems = "\n".join(caught.value.problems)
    assert "PLEXUS_VAULT_TOKEN" in problems
    assert "https://" in problems
    assert "PLEXUS_MASTER_KEY" not in problems  # the key service holds the KEK
    token_file = tmp_path / "vault-token"
    token_file.write_text("hvs.production-token-" + "p" * 20 + "\n")
    env |= {
        "PLEXUS_VAULT_ADDR": "https://vault.internal:8200",
        "PLEXUS_VAULT_TOKEN_FILE": str(token_file),
    }
    settings = load_settings(environ=env)
    assert settings.vault_token is not None
    assert settings.vault_token.get_secret_value() == "hvs.production-token-" + "p" * 20
    assert settings.vault_token.get_secret_value() in settings.secret_values()


# The blind index key ----------------------------------------------------------------------


def test_v11_the_index_key_is_its_own_secret_in_every_environment(tmp_path: Path, monkeypatch):
    test = load_settings(environ={"PLEXUS_ENV": "test", "PLEXUS_DATA_DIR": str(tmp_path)})
    assert len(test.secret("index_key")) >= 32
    assert test.secret("index_key") != test.secret("token_key")
    assert test.secret("index_key") in test.secret_values()  # redacted from logs

    monkeypatch.chdir(tmp_path)
    dev = load_settings(environ={"PLEXUS_DATA_DIR": str(tmp_path / "var")})
    stored = (tmp_path / "var" / "dev-secrets.env").read_text()
    assert f"PLEXUS_INDEX_KEY={dev.secret('index_key')}\n" in stored
    again = load_settings(environ={"PLEXUS_DATA_DIR": str(tmp_path / "var")})
    assert again.secret("index_key") == dev.secret("index_key")


def _production(tmp_path: Path, **extra: str) -> dict[str, str]:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.write_text("x")
    key.write_text("x")
    strong = "s3cure-" + "Q" * 40
    env = {
        "PLEXUS_ENV": "production",
        "PLEXUS_DATA_DIR": str(tmp_path),
        "PLEXUS_AUDIT_KEY": "audit-" + strong,
        "PLEXUS_PASSWORD_PEPPER": "pepper-" + strong,
        "PLEXUS_TOKEN_KEY": "token-" + strong,
        "PLEXUS_MASTER_KEY": "prodMasterKey" + "Q" * 30 + "=",
        "PLEXUS_TLS_CERT_FILE": str(cert),
        "PLEXUS_TLS_KEY_FILE": str(key),
    }
    return env | extra


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (None, "PLEXUS_INDEX_KEY is required in production (or PLEXUS_INDEX_KEY_FILE)"),
        ("short-index-key", "PLEXUS_INDEX_KEY is shorter than 32 bytes"),
        (
            "change-me-to-a-long-random-value-from-a-password-manager",
            "PLEXUS_INDEX_KEY is a placeholder value",
        ),
    ],
)
def test_v13_3_1_production_needs_a_strong_index_key(tmp_path: Path, value, problem) -> None:
    env = _production(tmp_path)
    if value is not None:
        env["PLEXUS_INDEX_KEY"] = value
    with pytest.raises(ConfigError) as caught:
        load_settings(environ=env)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
    index_file = tmp_path / "index-key"
    index_file.write_text("index-" + "k" * 40 + "\n")
    settings = load_settings(environ=_production(tmp_path, PLEXUS_INDEX_KEY_FILE=str(index_file)))
    assert settings.secret("index_key") == "index-" + "k" * 40


def test_changing_the_token_key_keeps_every_address_findable_and_unique(env_vars, runtime):
    """The token key is the lever that ends every session; it must not touch e-mail
    look-ups (a second account for one address)."""
    from sqlalchemy import select

    from plexus.accounts.service import EmailTaken, create_user, email_of
    from plexus.db import unit_of_work
    from plexus.models.identity import User
    from plexus.runtime import init_runtime

    from auth_helpers import PASSWORD

    with unit_of_work(runtime.sessions) as session:
        create_user(
            session, runtime, email="Alice@Example.com", display_name="A", password=PASSWORD
        )
    new_token_key = {**env_vars, "PLEXUS_TOKEN_KEY": "new-token-key-" + "z" * 40}
    rt = init_runtime(load_settings(environ=new_token_key))
    try:
        with unit_of_work(rt.sessions) as session, pytest.raises(EmailTaken):
            create_user(session, rt, email="alice@example.com", display_name="B", password=PASSWORD)
        with rt.sessions() as session:
            users = session.scalars(select(User)).all()
            assert [email_of(rt, u) for u in users] == ["alice@example.com"]
    finally:
        rt.dispose()
