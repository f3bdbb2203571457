"""`sagabank ledger deposit`: the operator pays money into an account from outside the bank
(the accounts service's deposit, scope accounts:admin, the operator client's by default)."""

from typing import Any
from uuid import UUID

import click

from contracts.accounts import ACCOUNTS_PATH
from contracts.auth import Scope
from contracts.money import display_amount
from sagabank.bankclient import BankError, launcher_operator_token
from sagabank.banking.output import (
    amount_minor_of,
    chosen_idempotency_key,
    emit,
    fail,
    fields,
    idempotency_key_option,
    json_option,
    operator_token_option,
    profile_option,
    quiet_option,
)
from sagabank.banking.session import open_session


@click.command()
@click.argument("account_id", type=click.UUID)
@click.option("--amount", required=True, help="In the currency's units, e.g. 100.00.")
@click.option("--currency", required=True, help="The account's currency (ISO 4217).")
@click.option("--reference", default=None, help="Where the money came from.")
@idempotency_key_option
@operator_token_option(Scope.accounts_admin)
@quiet_option
@profile_option
@json_option
def deposit(profile: str, as_json: bool, account_id: UUID, **options: Any) -> None:
    """Credit an account with money from outside the bank (idempotent on the key).

    The bank is the profile's (see `sagabank login`), else the local one."""
    currency = str(options["currency"]).upper()
    body = {
        "amount_minor": amount_minor_of(options["amount"], currency),
        "currency": currency,
        "reference": options["reference"],
    }
    key = chosen_idempotency_key(options["idempotency_key"])
    try:
        session = open_session(profile, {})
        with session.http:
            access_token = options["access_token"] or launcher_operator_token(
                session.urls["accounts"]
            )
            request = session.http.build_request(
                "POST",
                session.url("accounts", f"{ACCOUNTS_PATH}/{account_id}/deposits"),
                json=body,
                headers={"Idempotency-Key": key, "Authorization": f"Bearer {access_token}"},
            )
            moved = session.send(request)
    except BankError as error:
        fail(error, as_json)
    emit(
        [moved],
        as_json,
        lambda: fields(
            [
                ("deposit", moved["id"]),
                ("account", str(account_id)),
                ("amount", display_amount(moved["amount_minor"], moved["currency"])),
            ]
        ),
        quiet=options["quiet"],
    )
