"""`sagabank up` lets each service's /docs obtain a token: the issuer registers the docs'
public client with each page's exact redirect URI, and answers the pages' origins (CORS)."""

import json
from pathlib import Path

import pytest

from accounts.config import Settings as AccountsSettings
from contracts.auth import CUSTOMER_SCOPES, DOCS_CLIENT_ID
from tests.launchers import idle_launcher


def test_the_issuer_registers_each_docs_pages_redirect(tmp_path: Path) -> None:
    launcher = idle_launcher(tmp_path, transactions_port=9102)
    clients = {client["client_id"]: client for client in json.loads(launcher.bootstrap_clients())}
    docs = clients[DOCS_CLIENT_ID]
    assert docs["kind"] == "public"
    assert "client_secret" not in docs
    assert set(docs["scopes"]) == set(CUSTOMER_SCOPES)
    assert docs["redirect_uris"] == [
        "http://127.0.0.1:8001/docs/oauth2-redirect",
        "http://127.0.0.1:9102/docs/oauth2-redirect",
        "http://127.0.0.1:8003/docs/oauth2-redirect",
        "http://127.0.0.1:8004/docs/oauth2-redirect",
    ]


def test_the_issuer_answers_the_other_docs_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    launcher = idle_launcher(tmp_path)
    environment = launcher._service_env("accounts", "postgresql://u@127.0.0.1/accounts")
    for name, value in environment.items():
        if name.startswith("ACCOUNTS_"):
            monkeypatch.setenv(name, value)
    settings = AccountsSettings()  # as `sagabank serve accounts` reads them
    assert settings.cors_allow_origins == [
        "http://127.0.0.1:8002",
        "http://127.0.0.1:8003",
        "http://127.0.0.1:8004",
    ]
    assert DOCS_CLIENT_ID in [client.client_id for client in settings.bootstrap_clients]
