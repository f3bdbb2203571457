"""`sagabank ledger check` against a real accounts service: a readable summary, and an exit
status a cron job or a deploy script can act on."""

import json
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from accounts.main import MIGRATIONS_PATH
from accounts.tests.helpers import accounts_server, raw_connection
from contracts.auth import OPERATOR_SCOPES, TOKEN_PATH
from sagabank.cli import main
from sagabank.localstack.postgres import free_port
from sagabank.localstack.secrets import dev_signing_keys_dir

DatabaseFactory = Callable[[Path], Awaitable[str]]
OPERATOR_ID = "ledger-cli-operator"
OPERATOR_SECRET = "ledger-cli-operator-secret"
# `sagabank ledger check` fetches its operator token with these, as on an operator's shell.
CLI_ENVIRONMENT = {
    "SAGABANK_OPERATOR_CLIENT_ID": OPERATOR_ID,
    "SAGABANK_OPERATOR_CLIENT_SECRET": OPERATOR_SECRET,
    "SAGABANK_TOKEN": None,
}


@pytest.fixture
async def accounts_database(database_factory: DatabaseFactory) -> str:
    return await database_factory(MIGRATIONS_PATH)


@pytest.fixture
def accounts_url(accounts_database: str, tmp_path: Path) -> Iterator[str]:
    operator = {
        "client_id": OPERATOR_ID,
        "client_secret": OPERATOR_SECRET,
        "kind": "operator",
        "scopes": sorted(OPERATOR_SCOPES),
    }
    environment = {
        "ACCOUNTS_HOLD_SWEEP_ENABLED": "false",
        "ACCOUNTS_LOG_LEVEL": "warning",
        "ACCOUNTS_SIGNING_KEYS_DIR": str(dev_signing_keys_dir(tmp_path)),
        "ACCOUNTS_BOOTSTRAP_CLIENTS": json.dumps([operator]),
    }
    with accounts_server(
        accounts_database, free_port(), log_path=tmp_path / "accounts.log", environment=environment
    ) as url:
        yield url


async def funded_account(accounts_url: str, amount_minor: int, currency: str) -> str:
    """An account of a new customer, opened and funded by the operator."""
    async with httpx.AsyncClient(base_url=accounts_url, timeout=10.0) as http:
        granted = await http.post(
            TOKEN_PATH,
            data={"grant_type": "client_credentials"},
            auth=(OPERATOR_ID, OPERATOR_SECRET),
        )
        assert granted.status_code == 200, granted.text
        operator = {"Authorization": f"Bearer {granted.json()['access_token']}"}
        registered = await http.post(
            "/v1/customers",
            json={"email": f"cli-{uuid.uuid4().hex[:8]}@example.com", "password": uuid.uuid4().hex},
        )
        assert registered.status_code == 201, registered.text
        opened = await http.post(
            "/v1/accounts",
            json={"customer_id": registered.json()["id"], "currency": currency},
            headers=operator,
        )
        assert opened.status_code == 201, opened.text
        account_id: str = opened.json()["id"]
        deposit = await http.post(
            f"/v1/accounts/{account_id}/deposits",
            json={"amount_minor": amount_minor, "currency": currency},
            headers={**operator, "Idempotency-Key": uuid.uuid4().hex},
        )
        assert deposit.status_code == 201, deposit.text
        return account_id


def check(accounts_url: str, *arguments: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, ["ledger", "check", "--accounts-url", accounts_url, *arguments], env=CLI_ENVIRONMENT
    )
    return result.exit_code, result.output


class TestLedgerCheck:
    async def test_sound_ledger(self, accounts_url: str) -> None:
        await funded_account(accounts_url, 123_450, "EUR")
        await funded_account(accounts_url, 5_000, "JPY")

        exit_code, output = check(accounts_url)

        assert exit_code == 0, output
        assert ": OK" in output.splitlines()[0]
        assert "EUR posted  debits 1,234.50 EUR = credits 1,234.50 EUR  ok" in output
        assert "JPY posted  debits 5,000 JPY = credits 5,000 JPY  ok" in output
        assert "accounts: 4 checked, 0 whose totals differ" in output
        assert "ledger transfers without entries: 0\n" in output

    async def test_refused_token(self, accounts_url: str) -> None:
        exit_code, output = check(accounts_url, "--token", "not-a-token")
        assert exit_code == 2
        assert "answered 401" in output

    async def test_broken_ledger(self, accounts_url: str, accounts_database: str) -> None:
        account_id = await funded_account(accounts_url, 1_000, "EUR")
        async with raw_connection(accounts_database) as connection:
            # Only a bypass of the service can do this.
            await connection.execute(
                "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1",
                uuid.UUID(account_id),
            )

        exit_code, output = check(accounts_url)

        assert exit_code == 1, output
        assert ": BROKEN" in output.splitlines()[0]
        assert "!= credits 10.01 EUR  UNBALANCED" in output
        assert f"mismatch: {account_id}" in output

    def test_service_unreachable(self) -> None:
        exit_code, output = check(f"http://127.0.0.1:{free_port()}", "--token", "a-token")
        assert exit_code == 2
        assert "cannot reach the accounts service" in output

    def test_issuer_unreachable(self) -> None:
        exit_code, output = check(f"http://127.0.0.1:{free_port()}")
        assert exit_code == 2
        assert "cannot get an operator token" in output
        assert OPERATOR_SECRET not in output

    def test_help(self) -> None:
        result = CliRunner().invoke(main, ["ledger", "check", "--help"])
        assert result.exit_code == 0
        assert "--accounts-url" in result.output
        assert "http://127.0.0.1:8001" in result.output
