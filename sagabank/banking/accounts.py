"""`sagabank account open|show|list|statement`: the logged-in customer's own accounts."""

from typing import Any
from uuid import UUID

import click

from contracts.accounts import ACCOUNTS_PATH
from contracts.money import display_amount
from sagabank.banking.output import (
    banking_command,
    emit,
    fields,
    items_max_option,
    json_option,
    profile_option,
    quiet_option,
    table,
)
from sagabank.banking.session import BankSession


@click.group()
def account() -> None:
    """Your accounts: open one, see its balances, list them, read a statement."""


def account_lines(record: dict[str, Any]) -> list[str]:
    currency = record["currency"]
    balances = record["balances"]
    return fields(
        [
            ("account", record["id"]),
            ("currency", currency),
            ("status", record["status"]),
            ("balance", display_amount(balances["posted_minor"], currency)),
            ("available", display_amount(balances["available_minor"], currency)),
            ("pending", display_amount(balances["pending_minor"], currency)),
            ("opened", record["created_at"]),
        ]
    )


@account.command("open")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. EUR.")
@quiet_option
@profile_option
@json_option
@banking_command
def open_account(session: BankSession, as_json: bool, currency: str, quiet: bool) -> None:
    """Open an account in this currency, owned by you."""
    opened = session.call("POST", "accounts", ACCOUNTS_PATH, json={"currency": currency.upper()})
    emit([opened], as_json, lambda: account_lines(opened), quiet=quiet)


@account.command()
@click.argument("account_id", type=click.UUID)
@profile_option
@json_option
@banking_command
def show(session: BankSession, as_json: bool, account_id: UUID) -> None:
    """One account with its balances (posted, available, pending)."""
    shown = session.call("GET", "accounts", f"{ACCOUNTS_PATH}/{account_id}")
    emit([shown], as_json, lambda: account_lines(shown))


@account.command("list")
@items_max_option
@quiet_option
@profile_option
@json_option
@banking_command
def list_accounts(session: BankSession, as_json: bool, items_max: int, quiet: bool) -> None:
    """Your accounts, oldest first."""
    listed = list(session.pages("accounts", ACCOUNTS_PATH, {}, items_max))
    rows = [
        (
            item["id"],
            item["currency"],
            item["status"],
            display_amount(item["balances"]["posted_minor"], item["currency"]),
            display_amount(item["balances"]["available_minor"], item["currency"]),
        )
        for item in listed
    ]
    header = ("ACCOUNT", "CURRENCY", "STATUS", "BALANCE", "AVAILABLE")
    emit(listed, as_json, lambda: table(header, rows) if rows else ["no accounts"], quiet=quiet)


@account.command()
@click.argument("account_id", type=click.UUID)
@items_max_option
@quiet_option
@profile_option
@json_option
@banking_command
def statement(
    session: BankSession, as_json: bool, account_id: UUID, items_max: int, quiet: bool
) -> None:
    """An account's journal entries, oldest first, each with the balance after it."""
    currency = session.call("GET", "accounts", f"{ACCOUNTS_PATH}/{account_id}")["currency"]
    path = f"{ACCOUNTS_PATH}/{account_id}/entries"
    entries = list(session.pages("accounts", path, {}, items_max))
    rows = [
        (
            entry["created_at"],
            entry["transfer_kind"],
            entry["total"],
            display_amount(entry["amount_minor"], currency),
            display_amount(entry["posted_balance_after_minor"], currency),
            entry["reference"] or "",
        )
        for entry in entries
    ]
    header = ("WHEN", "KIND", "TOTAL", "AMOUNT", "BALANCE AFTER", "REFERENCE")
    emit(entries, as_json, lambda: table(header, rows) if rows else ["no entries"], quiet=quiet)
