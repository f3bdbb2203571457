"""`sagabank login`, `logout` and `customer register`: a customer's sign-in, kept per profile."""

import sys
from typing import Any

import click
from pydantic import SecretStr

from contracts.auth import CUSTOMERS_PATH
from sagabank.banking import profiles
from sagabank.banking.loopback import SIGN_IN_TIMEOUT_SECONDS_DEFAULT, browser_sign_in
from sagabank.banking.output import (
    banking_command,
    emit,
    fields,
    json_option,
    profile_option,
    quiet_option,
    url_option,
)
from sagabank.banking.session import BankSession

_PASSWORD_LENGTH_MAX = 1024


def read_password(*, from_stdin: bool, confirm: bool) -> SecretStr:
    """One line of stdin with --password-stdin, else asked for unechoed (twice if confirm):
    never a command-line argument, which shell history and `ps` would keep."""
    if from_stdin:
        # sys.stdin at call time: click's test runner swaps it for the input it is given.
        password = sys.stdin.readline(_PASSWORD_LENGTH_MAX).rstrip("\r\n")
    else:
        password = click.prompt("password", hide_input=True, confirmation_prompt=confirm, err=True)
    if not password:
        raise click.UsageError("the password is empty")
    return SecretStr(password)


_password_stdin = click.option(
    "--password-stdin", is_flag=True, help="Read the password from one line of stdin."
)


@click.command()
@click.option(
    "--email", default=None, help="With --password-stdin: the customer's email (sign-in name)."
)
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Sign in with the password grant instead, the password on one line of stdin "
    "(a bank that serves it: `make run`).",
)
@click.option("--no-browser", is_flag=True, help="Only print the sign-in URL (on stderr).")
@click.option(
    "--timeout-seconds",
    type=click.FloatRange(min=1, max=3600),
    default=SIGN_IN_TIMEOUT_SECONDS_DEFAULT,
    show_default=True,
    help="How long to wait for the browser's sign-in.",
)
@url_option
@profile_option
@json_option
@banking_command
def login(
    session: BankSession,
    as_json: bool,
    email: str | None,
    password_stdin: bool,
    no_browser: bool,
    timeout_seconds: float,
) -> None:
    """Sign in as a customer and keep the tokens for the profile.

    In a browser on this machine: the bank's sign-in page (OAuth2 authorization code flow
    with PKCE), whose answer comes back to this command on 127.0.0.1; the URL is printed on
    stderr and opened unless --no-browser. With --email and --password-stdin: the password
    grant, where the bank serves it (`make run`; deployed banks do not).

    The tokens go to a file only you can read (mode 0600) under your config directory
    (SAGABANK_CONFIG_DIR overrides it); the profile remembers the bank's URLs. The access
    token is renewed with the refresh token when it expires.
    """
    if password_stdin != (email is not None):
        raise click.UsageError(
            "--email and --password-stdin go together (the password grant); "
            "without them the bank's sign-in page asks in the browser"
        )
    if email is not None:
        credentials = session.login(email, read_password(from_stdin=True, confirm=False))
    else:
        issued = browser_sign_in(
            session, open_browser=not no_browser, timeout_seconds=timeout_seconds
        )
        credentials = session.keep(issued)
    profiles.remember_urls(session.profile, session.urls)
    record = {
        "profile": session.profile,
        "email": credentials.email,
        "expires_at": credentials.expires_at.isoformat(),
        "urls": session.urls,
    }
    who = f" as {email}" if email else ""
    emit([record], as_json, lambda: [f"logged in{who} (profile {session.profile})"])


@click.command()
@profile_option
@json_option
@banking_command
def logout(session: BankSession, as_json: bool) -> None:
    """Revoke the profile's refresh token at the bank and delete its credentials file."""
    was_logged_in = session.logout()
    record = {"profile": session.profile, "logged_out": was_logged_in}
    message = "logged out" if was_logged_in else "not logged in"
    emit([record], as_json, lambda: [f"{message} (profile {session.profile})"])


@click.group()
def customer() -> None:
    """Customers of the bank."""


@customer.command()
@click.option("--email", required=True, help="The new customer's email (their sign-in name).")
@click.option("--display-name", default=None, help="How the bank names them.")
@_password_stdin
@quiet_option
@url_option
@profile_option
@json_option
@banking_command
def register(
    session: BankSession,
    as_json: bool,
    email: str,
    display_name: str | None,
    password_stdin: bool,
    quiet: bool,
) -> None:
    """Register a customer (no login needed); then `sagabank login`."""
    password = read_password(from_stdin=password_stdin, confirm=True)
    body: dict[str, Any] = {"email": email, "password": password.get_secret_value()}
    if display_name is not None:
        body["display_name"] = display_name
    created = session.call("POST", "accounts", CUSTOMERS_PATH, authenticated=False, json=body)
    emit(
        [created],
        as_json,
        lambda: fields(
            [
                ("customer", created["id"]),
                ("email", created["email"]),
                ("registered", created["created_at"]),
            ]
        ),
        quiet=quiet,
    )
