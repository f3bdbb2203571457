"""The everyday-banking commands (`sagabank login`, `customer`, `account`, `transfer`,
`webhook`) against the session's real bank, through its public HTTP API only: tables for
people and NDJSON with `--json`, the API's problems shown plainly, and the credentials
file (mode 0600, refreshed when expired, revoked on logout)."""

import asyncio
import json
import os
import pty
import queue
import re
import stat
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import click
import httpx
import pytest
from click.testing import CliRunner, Result
from playwright.async_api import BrowserContext, expect
from pydantic import SecretStr

from contracts.auth import AUTHORIZE_PATH, CLI_CLIENT_ID
from sagabank.banking.loopback import SignInFailed, code_of_answer
from sagabank.banking.output import amount_minor_of
from sagabank.banking.profiles import parse_urls
from sagabank.banking.session import ApiProblem, BankSession
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


CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
# The slowest of the login process's own start and its answer to a request.
LOGIN_PROCESS_TIMEOUT_SECONDS = 30.0


class BrowserLogin:
    """`sagabank login --no-browser` in a process of its own, waiting for the browser: the
    sign-in URL it printed on stderr, and its exit status and output once it has ended."""

    def __init__(self, cli: Cli, *arguments: str) -> None:
        environment = {**cli.bank.environment, "SAGABANK_CONFIG_DIR": str(cli.config_dir)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sagabank", "login", "--no-browser", *arguments],
            env=environment,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        self.stderr = ""

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def sign_in_url(self, accounts_url: str) -> str:
        """The authorization URL it printed (it starts with the issuer's)."""
        deadline = time.monotonic() + LOGIN_PROCESS_TIMEOUT_SECONDS
        while (remaining_seconds := deadline - time.monotonic()) > 0:
            line = self._lines.get(timeout=remaining_seconds)
            assert line is not None, f"the login ended first: {self.stderr}"
            self.stderr += line
            if line.startswith(f"{accounts_url}{AUTHORIZE_PATH}?"):
                return line.strip()
        raise AssertionError(f"no sign-in URL printed: {self.stderr}")

    def ended(self) -> tuple[int, str]:
        """Its exit status and stdout; all of its stderr is in `stderr` then."""
        exit_code = self.process.wait(timeout=LOGIN_PROCESS_TIMEOUT_SECONDS)
        assert self.process.stdout is not None
        stdout = self.process.stdout.read()
        self._reader.join(timeout=LOGIN_PROCESS_TIMEOUT_SECONDS)
        while (line := self._lines.get_nowait()) is not None:
            self.stderr += line
        return exit_code, stdout


def sign_in_as_a_browser(url: str, email: str, password: str) -> httpx.Response:
    """What a person does in the browser: the issuer's page, its form filled in and sent,
    and the redirect followed to the CLI's listener; the listener's answer."""
    with httpx.Client(timeout=10.0) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        [csrf_token] = CSRF_FIELD.findall(page.text)
        form = dict(parse_qsl(urlsplit(url).query)) | {"csrf_token": csrf_token}
        posted = browser.post(
            url.partition("?")[0], data=form | {"email": email, "password": password}
        )
        assert posted.status_code == 303, posted.text
        return browser.get(posted.headers["location"])


def register(cli: Cli, name: str) -> str:
    email = f"{name}-{uuid.uuid4().hex[:10]}@example.com"
    cli.ok("customer", "register", f"--email={email}", "--password-stdin",
           stdin=f"{PASSWORD}\n")  # fmt: skip
    return email


class TestBrowserLogin:
    """`sagabank login`: the authorization code flow with PKCE, back to a loopback port."""

    def test_signs_in_on_the_issuers_page_and_the_profile_works(self, cli: Cli) -> None:
        email = register(cli, "pia")
        login = BrowserLogin(cli, "--profile=browser", "--json")
        url = login.sign_in_url(cli.bank.url("accounts"))
        query = dict(parse_qsl(urlsplit(url).query))
        assert query["client_id"] == CLI_CLIENT_ID
        assert query["code_challenge_method"] == "S256"
        listener = urlsplit(query["redirect_uri"])
        assert (listener.scheme, listener.hostname, listener.path) == (
            "http", "127.0.0.1", "/callback"
        )  # fmt: skip
        # Another request first (a browser's favicon): answered 404, the wait goes on.
        stray = httpx.get(f"http://127.0.0.1:{listener.port}/favicon.ico", timeout=10.0)
        assert stray.status_code == 404

        answered = sign_in_as_a_browser(url, email, PASSWORD)

        assert answered.status_code == 200, answered.text
        assert "You can close this tab." in answered.text
        assert answered.headers["referrer-policy"] == "no-referrer"
        exit_code, stdout = login.ended()
        assert exit_code == 0, login.stderr
        [record] = [json.loads(line) for line in stdout.splitlines()]
        assert (record["profile"], record["email"]) == ("browser", None)
        path = cli.credentials_path("browser")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert json.loads(path.read_text())["refresh_token"]
        assert cli.records("account", "list", "--profile=browser") == []
        assert cli.ok("logout", "--profile=browser").stdout == "logged out (profile browser)\n"

    async def test_in_chromium_the_sign_in_page_sends_the_code_to_the_listener(
        self, cli: Cli, context: BrowserContext
    ) -> None:
        # The sign-in page's CSP (form-action) must let the form's redirect reach the
        # listener's port, which only a real browser enforces.
        email = register(cli, "ria")
        login = BrowserLogin(cli, "--profile=chromium")
        url = login.sign_in_url(cli.bank.url("accounts"))
        page = await context.new_page()
        await page.goto(url)
        await page.get_by_label("Email").fill(email)
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in").click()

        await expect(page.get_by_text("You can close this tab.")).to_be_visible()
        assert page.url.startswith("http://127.0.0.1:")
        exit_code, stdout = login.ended()
        assert exit_code == 0, login.stderr
        assert stdout == "logged in (profile chromium)\n"
        assert cli.records("account", "list", "--profile=chromium") == []

    @pytest.mark.parametrize(
        ("answer", "message"),
        [
            ({"code": "a-code", "state": "not-this-logins"}, "is not this login's (its state)"),
            (
                {"error": "access_denied", "error_description": "the person said no"},
                "the bank did not sign you in (access_denied: the person said no)",
            ),
            ({}, "carries no code"),
        ],
        ids=["wrong-state", "access-denied", "no-code"],
    )
    def test_a_refused_or_forged_answer_stores_nothing(
        self, cli: Cli, answer: dict[str, str], message: str
    ) -> None:
        login = BrowserLogin(cli)
        query = dict(parse_qsl(urlsplit(login.sign_in_url(cli.bank.url("accounts"))).query))
        answered = httpx.get(
            f"{query['redirect_uri']}?{urlencode({'state': query['state']} | answer)}",
            timeout=10.0,
        )
        assert answered.status_code == 400
        assert "Not signed in" in answered.text
        exit_code, stdout = login.ended()
        assert exit_code == 1
        assert stdout == ""
        assert message in login.stderr
        assert "nothing was stored; run `sagabank login` again" in login.stderr
        assert not cli.credentials_path().exists()

    def test_no_answer_in_time_stores_nothing(self, cli: Cli) -> None:
        login = BrowserLogin(cli, "--timeout-seconds=1")
        login.sign_in_url(cli.bank.url("accounts"))
        exit_code, _ = login.ended()
        assert exit_code == 1
        assert "error: no answer from the browser within 1 s" in login.stderr
        assert not cli.credentials_path().exists()

    def test_email_and_password_stdin_go_together(self, cli: Cli) -> None:
        for arguments in (["--email=x@example.com"], ["--password-stdin"]):
            result = cli("login", *arguments, stdin="a password\n")
            assert result.exit_code == 2
            assert "--email and --password-stdin go together" in result.stderr
        assert not cli.credentials_path().exists()


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


UUID_LINE = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\n")
# How long a new endpoint may wait for its first delivery (the saga notifies as it ends).
DELIVERY_WAIT_SECONDS = 30.0


class TestQuiet:
    """`-q/--quiet`: what a command created or listed, as ids only, one per line."""

    async def test_create_and_list_commands_print_only_ids(
        self, cli: Cli, http: httpx.AsyncClient
    ) -> None:
        email = f"quinn-{uuid.uuid4().hex[:10]}@example.com"
        registered = cli.ok("customer", "register", f"--email={email}", "--password-stdin", "-q",
                            stdin=f"{PASSWORD}\n").stdout  # fmt: skip
        assert UUID_LINE.fullmatch(registered), registered
        cli.ok("login", f"--email={email}", "--password-stdin", stdin=f"{PASSWORD}\n")
        source = cli.ok("account", "open", "--currency=EUR", "-q").stdout
        target = cli.ok("account", "open", "--currency=EUR", "--quiet", "--json").stdout
        assert UUID_LINE.fullmatch(source), source
        assert UUID_LINE.fullmatch(target), target
        source_id, target_id = source.strip(), target.strip()
        assert cli.ok("account", "list", "-q").stdout == source + target
        deposited = cli.ok("ledger", "deposit", source_id, "--amount=5", "--currency=EUR", "-q")
        assert UUID_LINE.fullmatch(deposited.stdout), deposited.stdout
        [entry] = cli.records("account", "statement", source_id)
        assert cli.ok("account", "statement", source_id, "-q").stdout == f"{entry['id']}\n"

        # Before the transfer: its events are then delivered (or tried) to the endpoint.
        added = cli.ok("webhook", "add", "--url=http://127.0.0.1:9/hook", "-q").stdout
        assert UUID_LINE.fullmatch(added), added
        assert cli.ok("webhook", "list", "-q").stdout == added

        sent = cli.ok("transfer", "send", f"--from={source_id}", f"--to={target_id}",
                      "--amount=1", "--currency=EUR", "--wait=30", "-q")  # fmt: skip
        assert UUID_LINE.fullmatch(sent.stdout), sent.stdout
        assert "idempotency key:" in sent.stderr
        listed = cli.ok("transfer", "list", f"--account={source_id}", "-q").stdout
        assert listed == sent.stdout
        reversed_ = cli.ok("transfer", "reverse", sent.stdout.strip(), "--reason=back", "-q")
        assert UUID_LINE.fullmatch(reversed_.stdout), reversed_.stdout

        # The transfer's and the reversal's events keep arriving while this runs: what -q
        # prints are delivery ids, each one a later --json listing also has.
        deliveries = ("webhook", "deliveries", added.strip())
        deadline = time.monotonic() + DELIVERY_WAIT_SECONDS
        while not cli.records(*deliveries):
            assert time.monotonic() < deadline, "no delivery to the endpoint"
            await asyncio.sleep(0.2)
        printed = cli.ok(*deliveries, "-q").stdout.splitlines(keepends=True)
        assert printed, "no delivery id printed"
        assert all(UUID_LINE.fullmatch(line) for line in printed), printed
        assert {line.strip() for line in printed} <= {d["id"] for d in cli.records(*deliveries)}


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
        assert "python" not in walkthrough  # new ids come from `-q`
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
        "query",
        ["code=c", "state=s&state=s&code=c", "state=S&code=c", "state=s", "state=s&code="],
        ids=["no-state", "repeated-state", "other-state", "no-code", "empty-code"],
    )
    def test_only_this_logins_answer_with_a_code_counts(self, query: str) -> None:
        assert code_of_answer("state=s&code=c", state="s") == "c"
        with pytest.raises(SignInFailed):
            code_of_answer(query, state="s")

    def test_a_bank_without_the_password_grant_points_to_the_browser(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("SAGABANK_CONFIG_DIR", str(tmp_path))
        # The issuer's answer where the password grant is off (as
        # accounts/tests/test_password_grant_switch.py shows it).
        refusal = {
            "type": "https://sagabank.dev/problems/oauth-unsupported-grant-type",
            "title": "Unsupported grant type",
            "status": 400,
            "detail": "this issuer does not serve the password grant",
            "error": "unsupported_grant_type",
        }
        transport = httpx.MockTransport(lambda _: httpx.Response(400, json=refusal))
        urls = {"accounts": "https://id.bank.example"}
        session = BankSession("deployed", urls, httpx.Client(transport=transport))
        with pytest.raises(ApiProblem) as refused:
            session.login("x@example.com", SecretStr("a password"))
        assert str(refused.value) == (
            "Unsupported grant type: this issuer does not serve the password grant; sign in "
            "in the browser instead: `sagabank login` without --password-stdin"
        )
        assert refused.value.problem["error"] == "unsupported_grant_type"
        assert not (tmp_path / "credentials" / "deployed.json").exists()

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
