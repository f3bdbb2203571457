"""The local stack's key rings: generated once into the state directory, handed to the
services that seal secrets, and the same key transactions' single-key setting used."""

import base64
import io
import json
from pathlib import Path

import pytest

from accounts.config import BootstrapClient
from kit.sealing import parse_key_ring
from sagabank.config import LauncherSettings
from sagabank.launcher import Launcher
from sagabank.localstack.secrets import dev_secret


def _launcher(state_dir: Path) -> Launcher:
    return Launcher(LauncherSettings(state_dir=state_dir), out=io.StringIO())


def test_the_services_get_dev_key_rings_that_outlive_a_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("TRANSACTIONS_SECRETS_KEYS", "TRANSACTIONS_CALLBACK_SECRETS_KEY"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("NOTIFICATIONS_SECRETS_KEYS", raising=False)
    first = _launcher(tmp_path)._service_env("notifications", "postgresql://x@h/db")
    again = _launcher(tmp_path)._service_env("notifications", "postgresql://x@h/db")
    assert first["NOTIFICATIONS_SECRETS_KEYS"] == again["NOTIFICATIONS_SECRETS_KEYS"]
    assert parse_key_ring(first["NOTIFICATIONS_SECRETS_KEYS"]).newest_key_id == "dev"
    transactions = _launcher(tmp_path)._service_env("transactions", "postgresql://x@h/db")
    [key] = parse_key_ring(transactions["TRANSACTIONS_SECRETS_KEYS"]).keys
    # The key the single-key setting had: callback secrets sealed before still open.
    assert key.key == base64.b64decode(dev_secret(tmp_path, "callback-secrets-key"))


def test_a_ring_from_the_environment_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ring = f"prod:{base64.b64encode(bytes(range(32))).decode()}"
    monkeypatch.setenv("NOTIFICATIONS_SECRETS_KEYS", ring)
    monkeypatch.setenv("TRANSACTIONS_CALLBACK_SECRETS_KEY", base64.b64encode(bytes(32)).decode())
    monkeypatch.delenv("TRANSACTIONS_SECRETS_KEYS", raising=False)
    launcher = _launcher(tmp_path)
    assert (
        launcher._service_env("notifications", "postgresql://x@h/db")["NOTIFICATIONS_SECRETS_KEYS"]
        == ring
    )
    transactions = launcher._service_env("transactions", "postgresql://x@h/db")
    assert "TRANSACTIONS_SECRETS_KEYS" not in transactions


def test_the_console_is_registered_as_a_public_client(tmp_path: Path) -> None:
    clients = json.loads(_launcher(tmp_path).bootstrap_clients())
    (console,) = [client for client in clients if client["client_id"] == "sagabank-console"]
    assert console["kind"] == "public"
    assert "client_secret" not in console
    assert console["redirect_uris"] == ["http://127.0.0.1:8005/auth/callback"]
    # What the launcher writes is what the issuer accepts: a client that signs staff in.
    registered = BootstrapClient.model_validate(console)
    assert registered.scopes
    assert registered.signs_in == "staff"


def test_accounts_gets_a_dev_ring_for_staff_secrets_unless_given_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ACCOUNTS_SECRETS_KEYS", raising=False)
    first = _launcher(tmp_path)._service_env("accounts", "postgresql://x@h/db")
    again = _launcher(tmp_path)._service_env("accounts", "postgresql://x@h/db")
    assert first["ACCOUNTS_SECRETS_KEYS"] == again["ACCOUNTS_SECRETS_KEYS"]
    assert parse_key_ring(first["ACCOUNTS_SECRETS_KEYS"]).newest_key_id == "dev"
    ring = f"prod:{base64.b64encode(bytes(range(32))).decode()}"
    monkeypatch.setenv("ACCOUNTS_SECRETS_KEYS", ring)
    given = _launcher(tmp_path)._service_env("accounts", "postgresql://x@h/db")
    assert given["ACCOUNTS_SECRETS_KEYS"] == ring
