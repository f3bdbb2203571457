"""The everyday-banking commands (`sagabank login`, `customer`, `account`, `transfer`,
`webhook`) against the session's real bank, through its public HTTP API only: tables for
people and NDJSON with `--json`, the API's problems shown plainly, and the credentials
file (mode 0600, refreshed when expired, revoked on logout)."""

import json
import os
import pty
import re
import stat
import subprocess
import sys
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
import httpx
import pytest
from click.testing import CliRunner, Result

from sagabank.banking.output import amount_minor_of
from sagabank.banking.profiles import parse_urls
from sagabank.cli import main
from tests.bank import Bank

PASSWORD = "a customer passphrase"


@dataclass
class Cli:
    """`sagabank` run in-process against the bank, with its own config directory."""

    bank: Bank
    config_dir: Path

    def __call__(self, *arguments: str, stdin: str | None = None) -> Result:
        environment = {
            "SAGABANK_STATE_DIR": str(self.bank.state_dir),
            "SAGABANK_CONFIG_DIR": str(self.config_dir),
            "SAGABANK_PROFILE": None,
            "SAGABANK_TOKEN": None,
            **{
                name: self.bank.environment[name]
                for name in ("SAGABANK_OPERATOR_CLIENT_ID", "SAGABANK_OPERATOR_CLIENT_SECRET")
            },
        }
        return CliRunner().invoke(main, list(arguments), env=environment, input=stdin)

    def ok(self, *arguments: str, stdin: str | None = None) -> Result:
        result = self(*arguments, stdin=stdin)
        assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
        return result

    def records(self, *arguments: str) -> list[dict[str, Any]]:
        """The NDJSON a command prints with --json, one object per line."""
        lines = self.ok(*arguments, "--json").stdout.splitlines()
        return [json.loads(line) for line in lines]

    def register_and_login(self, name: str, profile: str = "default") -> str:
        email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
        self.ok(
            "customer", "register", f"--email={email}", f"--display-name={name}",
            "--password-stdin", stdin=f"{PASSWORD}\n",
        )  # fmt: skip
        self.ok("login", f"--email={email}", "--password-stdin", f"--profile={profile}",
                stdin=f"{PASSWORD}\n")  # fmt: skip
        return email

    def credentials_path(self, profile: str = "default") -> Path:
        return self.config_dir / "credentials" / f"{profile}.json"


@pytest.fixture
def cli(bank: Bank, tmp_path: Path) -> Cli:
    return Cli(bank, tmp_path / "config")


def open_account(cli: Cli, profile: str = "default") -> str:
    [account] = cli.records("account", "open", "--currency=EUR", f"--profile={profile}")
    account_id: str = account["id"]
    return account_id


class TestLogin:
    def test_stores_tokens_in_a_private_file_and_logout_revokes_them(self, cli: Cli) -> None:
        email = cli.register_and_login("ann")
        path = cli.credentials_path()
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        stored = json.loads(path.read_text())
        assert stored["email"] == email
        assert stored["refresh_token"]
        assert PASSWORD not in path.read_text()
        refresh_token = stored["refresh_token"]

        cli.ok("logout")
        assert not path.exists()
        accounts_url = cli.bank.url("accounts")
        renewal = httpx.post(
            f"{accounts_url}/v1/oauth/token",
            data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        )
        assert renewal.status_code == 400, renewal.text

    def test_wrong_password_is_refused_and_stores_nothing(self, cli: Cli) -> None:
        email = cli.register_and_login("bea")
        cli.ok("logout")
        result = cli("login", f"--email={email}", "--password-stdin", stdin="not it\n")
        assert result.exit_code == 1
        assert result.stderr == "error: Invalid grant: the username or the password is wrong\n"
        as_json = cli("login", f"--email={email}", "--password-stdin", "--json", stdin="no\n")
        assert as_json.exit_code == 1
        assert json.loads(as_json.stderr)["error"] == "invalid_grant"
        assert not cli.credentials_path().exists()

    def test_not_logged_in(self, cli: Cli) -> None:
        result = cli("account", "list")
        assert result.exit_code == 1
        assert "not logged in" in result.stderr
        assert "sagabank login" in result.stderr

    def test_an_expired_token_is_refreshed(self, cli: Cli) -> None:
        cli.register_and_login("cid")
        path = cli.credentials_path()
        stored = json.loads(path.read_text())
        old_refresh_token = stored["refresh_token"]
        stored["access_token"] = "expired-and-not-a-token"
        stored["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        path.write_text(json.dumps(stored))
        assert cli.records("account", "list") == []
        renewed = json.loads(path.read_text())
        assert renewed["access_token"] != "expired-and-not-a-token"
        assert renewed["refresh_token"] != old_refresh_token
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600

    def test_profiles_remember_their_urls(self, cli: Cli, tmp_path: Path) -> None:
        accounts_url = cli.bank.url("accounts")
        urls = [f"--url={name}={cli.bank.url(name)}" for name in
                ("accounts", "transactions", "notifications")]  # fmt: skip
        email = f"dee-{uuid.uuid4().hex[:10]}@example.com"
        cli.ok("customer", "register", f"--email={email}", "--password-stdin", *urls,
               stdin=PASSWORD)  # fmt: skip
        # A state directory with no bank in it: only the profile knows where the bank is.
        elsewhere = Cli(cli.bank, cli.config_dir)
        elsewhere.bank = Bank(**{**cli.bank.__dict__, "state_dir": tmp_path / "no-bank"})
        elsewhere.ok("login", f"--email={email}", "--password-stdin", "--profile=remote",
                     *urls, stdin=PASSWORD)  # fmt: skip
        profile = json.loads((cli.config_dir / "profiles" / "remote.json").read_text())
        assert profile["urls"]["accounts"] == accounts_url
        assert elsewhere.records("account", "list", "--profile=remote") == []

    def test_a_bare_url_names_the_host_and_default_ports(self, cli: Cli) -> None:
        result = cli("customer", "register", "--email=x@example.com", "--password-stdin",
                     "--url=http://127.0.0.1:1", stdin=PASSWORD)  # fmt: skip
        assert result.exit_code == 2
        assert "SERVICE=URL" in result.stderr
        unreachable = cli("customer", "register", "--email=x@example.com", "--password-stdin",
                          "--url=http://127.0.0.9", stdin=PASSWORD)  # fmt: skip
        assert unreachable.exit_code == 2
        assert "http://127.0.0.9:8001" in unreachable.stderr


class TestAccounts:
    def test_open_show_list_statement_deposit(self, cli: Cli) -> None:
        cli.register_and_login("eve")
        account_id = open_account(cli)
        key = str(uuid.uuid4())
        [deposited] = cli.records("ledger", "deposit", account_id, "--amount=100.00",
                                  "--currency=EUR", f"--idempotency-key={key}")  # fmt: skip
        assert deposited["amount_minor"] == 10_000
        again = cli.ok("ledger", "deposit", account_id, "--amount=100.00", "--currency=EUR",
                       f"--idempotency-key={key}")  # fmt: skip
        assert "100.00 EUR" in again.stdout
        cli.ok("ledger", "deposit", account_id, "--amount=23.45", "--currency=EUR")

        [shown] = cli.records("account", "show", account_id)
        assert shown["balances"]["posted_minor"] == 12_345
        table = cli.ok("account", "show", account_id).stdout
        assert "123.45 EUR" in table
        assert [item["id"] for item in cli.records("account", "list")] == [account_id]
        assert account_id in cli.ok("account", "list").stdout
        entries = cli.records("account", "statement", account_id)
        assert [entry["amount_minor"] for entry in entries] == [10_000, 2_345]
        assert entries[-1]["posted_balance_after_minor"] == 12_345
        assert "123.45 EUR" in cli.ok("account", "statement", account_id).stdout

    def test_unknown_account_is_a_404_problem(self, cli: Cli) -> None:
        cli.register_and_login("fay")
        unknown = str(uuid.uuid4())
        plain = cli("account", "show", unknown)
        assert plain.exit_code == 1
        assert plain.stdout == ""
        assert "Account not found" in plain.stderr
        as_json = cli("account", "show", unknown, "--json")
        assert as_json.exit_code == 1
        problem = json.loads(as_json.stderr)
        assert problem["status"] == 404
        assert problem["type"].endswith("account-not-found")


class TestTransfers:
    async def test_send_show_list_watch(self, cli: Cli, http: httpx.AsyncClient) -> None:
        cli.register_and_login("gus", profile="payee")
        payee_account = open_account(cli, profile="payee")
        cli.register_and_login("hal")
        payer_account = open_account(cli)
        await cli.bank.deposit(http, payer_account, 10_000)

        key = str(uuid.uuid4())
        send = ["transfer", "send", f"--from={payer_account}", f"--to={payee_account}",
                "--amount=25.50", "--currency=EUR", "--description=rent", "--wait=30",
                f"--idempotency-key={key}"]  # fmt: skip
        [sent] = cli.records(*send)
        assert sent["status"] == "completed", sent
        assert sent["amount_minor"] == 2550
        [again] = cli.records(*send)
        assert again["id"] == sent["id"]
        generated = cli.ok(*send[:-1])
        assert "idempotency key:" in generated.stderr
        assert "25.50 EUR" in generated.stdout

        [shown] = cli.records("transfer", "show", sent["id"])
        assert [step["name"] for step in shown["steps"]][:1] == ["validate"]
        assert "25.50 EUR" in cli.ok("transfer", "show", sent["id"]).stdout
        listed = cli.records("transfer", "list", f"--account={payer_account}")
        assert sent["id"] in [item["id"] for item in listed]
        assert len(listed) == 2

        watched = cli.ok("transfer", "watch", sent["id"])
        lines = watched.stdout.splitlines()
        assert lines[0].startswith("validate")
        assert lines[-1].endswith("completed")
        events = cli.records("transfer", "watch", sent["id"])
        assert events[-1]["status"] == "completed"
        [second] = [item for item in listed if item["id"] != sent["id"]]
        assert cli.records("transfer", "watch", second["id"])[-1]["status"] == "completed"
        [account] = cli.records("account", "show", payer_account)
        assert account["balances"]["posted_minor"] == 10_000 - 2 * 2550

        refund = ["transfer", "reverse", sent["id"], "--profile=payee"]
        [partial] = cli.records(*refund, "--amount=10.00", "--currency=EUR",
                                   "--reason=one item returned")  # fmt: skip
        assert (partial["original_transfer_id"], partial["amount_minor"]) == (sent["id"], 1000)
        rest = cli.ok(*refund, "--reason=the rest")
        assert "15.50 EUR" in rest.stdout
        assert "idempotency key:" in rest.stderr
        third = cli(*refund, "--reason=again")
        assert third.exit_code == 1
        assert "reversal" in third.stderr.lower()
        [original] = cli.records("transfer", "show", sent["id"])
        assert original["reversed_minor"] == 2550

    async def test_a_dated_transfer_cancelled(self, cli: Cli, http: httpx.AsyncClient) -> None:
        cli.register_and_login("lou")
        source = open_account(cli)
        target = open_account(cli)
        await cli.bank.deposit(http, source, 1_000)
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
        send = ["transfer", "send", f"--from={source}", f"--to={target}", "--amount=1"]
        [dated] = cli.records(*send, "--currency=EUR", f"--execute-at={tomorrow}")
        assert dated["status"] == "scheduled"
        cancelled = cli.ok("transfer", "cancel", dated["id"], "--reason=changed my mind")
        assert dated["id"] in cancelled.stdout
        watched = cli("transfer", "watch", dated["id"], "--timeout-seconds=30")
        assert watched.exit_code == 1, (watched.stdout, watched.stderr)
        assert watched.stdout.splitlines()[-1] == f"{dated['id']}  cancelled"

    async def test_insufficient_funds_and_cancel_after_the_end(
        self, cli: Cli, http: httpx.AsyncClient
    ) -> None:
        cli.register_and_login("ida")
        source = open_account(cli)
        target = open_account(cli)
        await cli.bank.deposit(http, source, 100)
        [refused] = cli.records("transfer", "send", f"--from={source}", f"--to={target}",
                                "--amount=5.00", "--currency=EUR", "--wait=30")  # fmt: skip
        assert refused["status"] == "rejected"
        assert "insufficient" in (refused["failure_reason"] or "").lower()
        watched = cli("transfer", "watch", refused["id"])
        assert watched.exit_code == 1
        assert watched.stdout.splitlines()[-1].endswith("rejected")
        cancel = cli("transfer", "cancel", refused["id"], "--json")
        assert cancel.exit_code == 1
        assert json.loads(cancel.stderr)["status"] == 409

    def test_an_amount_finer_than_the_currency_is_refused(self, cli: Cli) -> None:
        cli.register_and_login("jon")
        result = cli("transfer", "send", f"--from={uuid.uuid4()}", f"--to={uuid.uuid4()}",
                     "--amount=1.005", "--currency=EUR")  # fmt: skip
        assert result.exit_code == 2
        assert "2 decimal places" in result.stderr


class TestWebhooks:
    def test_add_list_deliveries(self, cli: Cli) -> None:
        cli.register_and_login("kim")
        [added] = cli.records("webhook", "add", "--url=http://127.0.0.1:9/hook",
                              "--event=transfer.completed")  # fmt: skip
        assert added["secret"].startswith("whsec_")
        events = ["--event=transfer.completed", "--event=transfer.rejected"]
        shown = cli.ok("webhook", "add", "--url=http://127.0.0.1:9/other", *events).stdout
        assert "whsec_" in shown
        listed = cli.records("webhook", "list")
        assert [item["url"] for item in listed] == [
            "http://127.0.0.1:9/hook", "http://127.0.0.1:9/other"
        ]  # fmt: skip
        assert "secret" not in listed[0]
        assert "http://127.0.0.1:9/hook" in cli.ok("webhook", "list").stdout
        assert cli.records("webhook", "deliveries", added["id"]) == []
        missing = cli("webhook", "deliveries", str(uuid.uuid4()))
        assert missing.exit_code == 1
        assert "not found" in missing.stderr.lower()


def readme_block(heading: str) -> str:
    """The first sh block of the README section under this heading."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme[readme.index(f"\n{heading}\n") :]
    start = section.index("```sh\n") + len("```sh\n")
    return section[start : section.index("```\n", start)]


class TestReadme:
    def test_the_walkthrough_moves_money_with_the_cli_alone(self, cli: Cli) -> None:
        walkthrough = readme_block("## One transfer, by hand")
        assert "curl" not in walkthrough
        standing_order = readme_block("## A standing order, by hand")
        # As written, but with this interpreter's `sagabank` (the repository's .venv in a
        # checkout, wherever CI installed it otherwise).
        command = str(Path(sys.executable).parent / "sagabank")
        script = (walkthrough + standing_order).replace(".venv/bin/sagabank", command)
        environment = {
            **cli.bank.environment,
            "SAGABANK_CONFIG_DIR": str(cli.config_dir),
            # The walkthrough's curl lines name the default ports; this bank has its own.
            "PATH": os.environ["PATH"],
        }
        script = script.replace("http://127.0.0.1:8002", cli.bank.url("transactions"))
        ran = subprocess.run(
            ["sh", "-e", "-c", script],
            env=environment,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        assert ran.returncode == 0, (ran.stdout[-4000:], ran.stderr[-4000:])
        output = ran.stdout
        assert "100.00 EUR" in output
        assert re.search(r"^[0-9a-f-]{36}  completed$", output, re.MULTILINE), output
        assert "exit status 1" in output
        assert "balance    74.50 EUR" in output
        assert "balance    25.50 EUR" in output
        assert "reversed     25.50 EUR" in output
        assert "Account not found" in ran.stderr
        assert "reversal" in ran.stderr.lower()
        assert "cancelled" in output


class TestLongOperations:
    def test_audit_export_writes_every_service_and_no_progress_off_a_terminal(
        self, cli: Cli, tmp_path: Path
    ) -> None:
        cli.register_and_login("max")
        open_account(cli)
        path = tmp_path / "audit.ndjson"
        since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
        ran = cli.bank.sagabank("audit", "--export", str(path), "--since", since)
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout == ""
        events = [json.loads(line) for line in path.read_text().splitlines()]
        assert "account.created" in {event["action"] for event in events}
        [summary] = ran.stderr.splitlines()
        assert summary.startswith(f"exported {len(events):,} events (accounts ")
        assert all(f"{name} " in summary for name in ("transactions", "fraud", "notifications"))
        assert "\r" not in ran.stderr

    def test_ledger_check_prints_only_its_report_off_a_terminal(self, cli: Cli) -> None:
        ran = cli.bank.sagabank("ledger", "check", "--accounts-url", cli.bank.url("accounts"))
        assert ran.returncode == 0, ran.stderr
        assert ran.stdout.startswith("Ledger invariants at ")
        assert ran.stderr == ""


def run_on_a_terminal(cli: Cli, *arguments: str) -> tuple[int, str, str]:
    """`sagabank` with its stdout on a pseudo-terminal (as a person sees it), stderr piped."""
    controller, terminal = pty.openpty()
    environment = {
        **cli.bank.environment,
        "SAGABANK_CONFIG_DIR": str(cli.config_dir),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "sagabank", *arguments],
        env=environment,
        stdout=terminal,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    ) as process:
        os.close(terminal)
        shown = b""
        while True:
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # EIO: the terminal's last writer has gone
                break
            if not chunk:
                break
            shown += chunk
        _, errors = process.communicate(timeout=60)
    os.close(controller)
    return process.returncode, shown.decode(), errors.decode()


class TestWatchOnATerminal:
    async def test_a_live_line_then_the_end(self, cli: Cli, http: httpx.AsyncClient) -> None:
        cli.register_and_login("ned")
        source = open_account(cli)
        target = open_account(cli)
        await cli.bank.deposit(http, source, 1_000)
        tomorrow = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
        send = ["transfer", "send", f"--from={source}", f"--to={target}", "--amount=1"]
        [dated] = cli.records(*send, "--currency=EUR", f"--execute-at={tomorrow}")
        exit_code, shown, errors = run_on_a_terminal(
            cli, "transfer", "watch", dated["id"], "--timeout-seconds=1"
        )
        assert exit_code == 2
        assert "\r\x1b[Kscheduled  " in shown
        assert "is still scheduled after" in errors


class TestSessionEnds:
    def test_a_revoked_refresh_token_asks_for_a_new_login(self, cli: Cli) -> None:
        cli.register_and_login("oli")
        copy = cli.credentials_path("copy")
        stored = json.loads(cli.credentials_path().read_text())
        stored["expires_at"] = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
        copy.write_text(json.dumps(stored))
        cli.ok("logout")  # revokes the refresh token's whole family, the copy's too
        result = cli("account", "list", "--profile=copy")
        assert result.exit_code == 1
        assert "the session has ended" in result.stderr
        assert "sagabank login" in result.stderr
        assert cli.ok("logout").stdout == "not logged in (profile default)\n"


class TestWithoutABank:
    @pytest.mark.parametrize(
        ("amount", "currency", "amount_minor"),
        [("25.50", "EUR", 2550), ("25.5", "EUR", 2550), ("7", "EUR", 700), ("1000", "JPY", 1000)],
    )
    def test_amounts_become_minor_units(
        self, amount: str, currency: str, amount_minor: int
    ) -> None:
        assert amount_minor_of(amount, currency) == amount_minor

    @pytest.mark.parametrize(
        ("amount", "currency"),
        [("0", "EUR"), ("-1", "EUR"), ("1.5", "JPY"), ("1e400", "EUR"), ("NaN", "EUR"),
         ("ten", "EUR"), ("1", "XYZ")],
    )  # fmt: skip
    def test_bad_amounts_are_refused(self, amount: str, currency: str) -> None:
        with pytest.raises(click.BadParameter):
            amount_minor_of(amount, currency)

    def test_urls_a_host_or_one_service(self) -> None:
        assert parse_urls(("https://bank.example",)) == {
            "accounts": "https://bank.example:8001",
            "transactions": "https://bank.example:8002",
            "notifications": "https://bank.example:8004",
        }
        given = ("accounts=https://id.example/", "https://bank.example")
        assert parse_urls(given)["accounts"] == "https://id.example"
        for bad in ("ftp://bank.example", "https://bank.example/api", "fraud=http://f.example"):
            with pytest.raises(click.UsageError):
                parse_urls((bad,))
