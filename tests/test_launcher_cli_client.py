"""`sagabank up` registers the CLI's public client: `sagabank login` signs customers in
through the browser, back to a loopback port of its own (RFC 8252 7.3)."""

import json
from pathlib import Path

from accounts.config import BootstrapClient
from contracts.auth import CLI_CLIENT_ID, CLI_REDIRECT_URI, CUSTOMER_SCOPES
from tests.launchers import idle_launcher


def test_the_issuer_registers_the_cli_with_a_port_less_loopback_redirect(
    tmp_path: Path,
) -> None:
    launcher = idle_launcher(tmp_path)
    clients = {client["client_id"]: client for client in json.loads(launcher.bootstrap_clients())}

    assert CLI_CLIENT_ID == "sagabank-cli"
    assert CLI_REDIRECT_URI == "http://127.0.0.1/callback"
    assert clients[CLI_CLIENT_ID] == {
        "client_id": "sagabank-cli",
        "kind": "public",
        "scopes": sorted(CUSTOMER_SCOPES),
        "redirect_uris": ["http://127.0.0.1/callback"],
        "signs_in": "customers",
    }
    # As the issuer reads it: no secret, customers signed in.
    registered = BootstrapClient.model_validate(clients[CLI_CLIENT_ID])
    assert registered.client_secret is None
