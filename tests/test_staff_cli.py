"""`sagabank staff add|disable|list` against a real accounts service: flags for scripts,
the password from stdin, the enrolment URI and its QR code, and refusals that add nobody."""

import base64
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pyotp
import pytest
from click.testing import CliRunner

from accounts.main import MIGRATIONS_PATH
from accounts.tests.helpers import accounts_server
from contracts.auth import OPERATOR_SCOPES
from sagabank.cli import main
from sagabank.localstack.postgres import free_port
from sagabank.localstack.secrets import dev_signing_keys_dir

DatabaseFactory = Callable[[Path], Awaitable[str]]
OPERATOR_ID = "staff-cli-operator"
OPERATOR_SECRET = "staff-cli-operator-secret"
CLI_ENVIRONMENT = {
    "SAGABANK_OPERATOR_CLIENT_ID": OPERATOR_ID,
    "SAGABANK_OPERATOR_CLIENT_SECRET": OPERATOR_SECRET,
    "SAGABANK_TOKEN": None,
}
PASSWORD = "a long staff passphrase"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        "ACCOUNTS_INVARIANT_CHECK_ENABLED": "false",
        "ACCOUNTS_LOG_LEVEL": "warning",
        "ACCOUNTS_SIGNING_KEYS_DIR": str(dev_signing_keys_dir(tmp_path)),
        "ACCOUNTS_BOOTSTRAP_CLIENTS": json.dumps([operator]),
        "ACCOUNTS_SECRETS_KEYS": "cli:" + base64.b64encode(b"c" * 32).decode(),
    }
    with accounts_server(
        accounts_database, free_port(), log_path=tmp_path / "accounts.log", environment=environment
    ) as url:
        yield url


def staff(accounts_url: str, *arguments: str, stdin: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(
        main,
        ["staff", "--accounts-url", accounts_url, *arguments],
        env=CLI_ENVIRONMENT,
        input=stdin,
    )
    return result.exit_code, result.output


def listed(accounts_url: str) -> list[dict[str, object]]:
    exit_code, output = staff(accounts_url, "list", "--json")
    assert exit_code == 0, output
    members: list[dict[str, object]] = json.loads(output)["staff"]
    return members


class TestStaffCommands:
    def test_add_with_flags_prints_the_uri_and_writes_a_png(
        self, accounts_url: str, tmp_path: Path
    ) -> None:
        qr_path = tmp_path / "rita.png"
        exit_code, output = staff(
            accounts_url,
            "add",
            "--email=Rita@Bank.example",
            "--role=reviewer",
            "--display-name=Rita",
            f"--password={PASSWORD}",
            f"--qr={qr_path}",
        )
        assert exit_code == 0, output
        [uri] = [line for line in output.splitlines() if line.startswith("otpauth://")]
        secret = parse_qs(urlparse(uri).query)["secret"][0]
        assert pyotp.TOTP(secret).now().isdigit()
        assert qr_path.read_bytes().startswith(PNG_SIGNATURE)
        assert PASSWORD not in output
        [member] = listed(accounts_url)
        assert (member["email"], member["role"], member["disabled_at"]) == (
            "rita@bank.example",
            "reviewer",
            None,
        )

    def test_add_reads_the_password_from_stdin_and_writes_an_svg(
        self, accounts_url: str, tmp_path: Path
    ) -> None:
        qr_path = tmp_path / "audrey.svg"
        exit_code, output = staff(
            accounts_url,
            "add",
            "--email=audrey@bank.example",
            "--role=auditor",
            f"--qr={qr_path}",
            stdin=f"{PASSWORD}\n",
        )
        assert exit_code == 0, output
        assert "<svg" in qr_path.read_text()
        assert [member["role"] for member in listed(accounts_url)] == ["auditor"]

    def test_disable_then_list_shows_it_disabled(self, accounts_url: str) -> None:
        staff(accounts_url, "add", "--email=al@bank.example", "--role=admin", stdin=PASSWORD)
        exit_code, output = staff(accounts_url, "disable", "--email=al@bank.example")
        assert exit_code == 0, output
        exit_code, output = staff(accounts_url, "list")
        assert exit_code == 0, output
        assert output.splitlines() == ["al@bank.example\tadmin\tdisabled"]

    def test_refusals_exit_non_zero_and_add_nobody(self, accounts_url: str, tmp_path: Path) -> None:
        base = ["add", "--email=x@bank.example", "--role=reviewer"]
        short = staff(accounts_url, *base, "--password=short")
        bad_qr = staff(accounts_url, *base, f"--password={PASSWORD}", f"--qr={tmp_path / 'q.gif'}")
        bad_role = staff(accounts_url, "add", "--email=x@bank.example", "--role=root")
        assert [short[0], bad_qr[0], bad_role[0]] == [2, 2, 2]
        assert listed(accounts_url) == []
        assert staff(accounts_url, *base, f"--password={PASSWORD}")[0] == 0
        exit_code, output = staff(accounts_url, *base, f"--password={PASSWORD}")
        assert exit_code == 1
        assert "staff-exists" in output
        exit_code, output = staff(accounts_url, "disable", "--email=nobody@bank.example")
        assert exit_code == 1
        assert "staff-not-found" in output

    def test_a_token_without_staff_manage_is_refused(self, accounts_url: str) -> None:
        exit_code, output = staff(accounts_url, "--token", "not-a-token", "list")
        assert exit_code == 1
        assert "answered 401" in output

    def test_unreachable_bank(self) -> None:
        exit_code, output = staff(f"http://127.0.0.1:{free_port()}", "--token", "t", "list")
        assert exit_code == 2
        assert "cannot reach the accounts service" in output
