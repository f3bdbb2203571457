"""`sagabank up` gives the console the bank's URLs and registers the console's callback,
both following the console's port."""

import json
from pathlib import Path

import pytest

from console.config import Settings as ConsoleSettings
from sagabank.config import CONSOLE_CLIENT_ID
from tests.launchers import idle_launcher


def test_the_console_reads_the_banks_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    launcher = idle_launcher(tmp_path, console_port=9105, fraud_port=9103)
    environment = launcher.console_env()
    for name, value in environment.items():
        if name.startswith("CONSOLE_"):
            monkeypatch.setenv(name, value)
    settings = ConsoleSettings()  # as `sagabank serve console` reads them
    assert settings.public_url == "http://127.0.0.1:9105"
    assert settings.callback_uri == "http://127.0.0.1:9105/auth/callback"
    assert settings.fraud_url == "http://127.0.0.1:9103"
    assert settings.issuer_url == settings.issuer_public_url == "http://127.0.0.1:8001"
    assert settings.client_id == CONSOLE_CLIENT_ID
    assert settings.temporal_ui_url == "http://localhost:8233"
    assert settings.secure_cookies is False  # http on the loopback


def test_the_issuer_registers_the_consoles_exact_callback(tmp_path: Path) -> None:
    launcher = idle_launcher(tmp_path, console_port=9105)
    clients = {client["client_id"]: client for client in json.loads(launcher.bootstrap_clients())}
    console = clients[CONSOLE_CLIENT_ID]
    assert console["kind"] == "public"
    assert "client_secret" not in console
    assert console["redirect_uris"] == ["http://127.0.0.1:9105/auth/callback"]


def test_the_banner_lists_the_console(tmp_path: Path) -> None:
    launcher = idle_launcher(tmp_path, console_port=9105)
    assert launcher.urls()["console"] == "http://127.0.0.1:9105"
