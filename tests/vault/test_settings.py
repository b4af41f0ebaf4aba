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
