"""`sagabank login`, `logout` and `customer register`: a customer's sign-in, kept per profile."""

import sys
from typing import Any

import click
from pydantic import SecretStr

from contracts.auth import CUSTOMERS_PATH
from sagabank.banking import profiles
from sagabank.banking.output import (
    banking_command,
    emit,
    fields,
    json_option,
    profile_option,
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
@click.option("--email", required=True, help="The customer's email: their sign-in name.")
@_password_stdin
@url_option
@profile_option
@json_option
@banking_command
def login(session: BankSession, as_json: bool, email: str, password_stdin: bool) -> None:
    """Sign in as a customer (OAuth2 password grant) and keep the tokens for the profile.

    The tokens go to a file only you can read (mode 0600) under your config directory
    (SAGABANK_CONFIG_DIR overrides it); the profile remembers the bank's URLs. The access
    token is renewed with the refresh token when it expires.
    """
    password = read_password(from_stdin=password_stdin, confirm=False)
    credentials = session.login(email, password)
    profiles.remember_urls(session.profile, session.urls)
    record = {
        "profile": session.profile,
        "email": credentials.email,
        "expires_at": credentials.expires_at.isoformat(),
        "urls": session.urls,
    }
    emit([record], as_json, lambda: [f"logged in as {email} (profile {session.profile})"])


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
) -> None:
    """Register a customer (no login needed); then `sagabank login --email ...`."""
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
    )
