"""`sagabank transfer send|show|list|cancel|watch`: moving the customer's money."""

import sys
import time
from datetime import datetime
from typing import Any
from uuid import UUID

import click

from contracts.money import display_amount
from contracts.reversals import TRANSFER_REVERSALS_PATH
from contracts.transfers import PREFER_WAIT_SECONDS_MAX, TRANSFERS_PATH, TransferStatus
from sagabank.bankclient import BankError
from sagabank.banking.output import (
    amount_minor_of,
    banking_command,
    chosen_idempotency_key,
    emit,
    fields,
    idempotency_key_option,
    items_max_option,
    json_option,
    profile_option,
    quiet_option,
    table,
)
from sagabank.banking.session import BankSession, ndjson

# How often `watch` asks for the transfer: a step takes tens of milliseconds to seconds.
WATCH_POLL_INTERVAL_SECONDS = 0.5
_CLEAR_LINE = "\r\x1b[K"


@click.group()
def transfer() -> None:
    """Your transfers: send money, follow it, list, cancel."""


def transfer_lines(record: dict[str, Any]) -> list[str]:
    kind = "reversal" if record.get("original_transfer_id") else "transfer"
    pairs = [
        (kind, record["id"]),
        ("status", record["status"]),
        ("amount", display_amount(record["amount_minor"], record["currency"])),
        ("from", record["source_account_id"]),
        ("to", record["target_account_id"]),
        ("description", record.get("description") or record.get("reason") or ""),
        ("steps", ", ".join(f"{step['name']} {step['outcome']}" for step in record["steps"])),
        ("created", record["created_at"]),
    ]
    if record["failure_reason"]:
        pairs.append(("failure", record["failure_reason"]))
    if record.get("original_transfer_id"):
        pairs.append(("reverses", record["original_transfer_id"]))
    if record.get("reversed_minor"):
        pairs.append(("reversed", display_amount(record["reversed_minor"], record["currency"])))
    return fields(pairs)


@transfer.command()
@click.option("--from", "source_account_id", type=click.UUID, required=True, help="Your account.")
@click.option("--to", "target_account_id", type=click.UUID, required=True, help="The payee's.")
@click.option("--amount", required=True, help="In the currency's units, e.g. 25.50.")
@click.option("--currency", required=True, help="ISO 4217 code, e.g. EUR.")
@click.option("--description", default=None, help="What it is for (the payee sees it).")
@idempotency_key_option
@click.option(
    "--wait",
    "wait_seconds",
    type=click.IntRange(min=0, max=PREFER_WAIT_SECONDS_MAX),
    default=10,
    show_default=True,
    help="Seconds to wait for the outcome (Prefer: wait); 0 answers at once.",
)
@click.option("--execute-at", type=click.DateTime(), default=None, help="Date it ahead (UTC).")
@quiet_option
@profile_option
@json_option
@banking_command
def send(session: BankSession, as_json: bool, **options: Any) -> None:
    """Send money from your account; the answer is the transfer as it stands after --wait."""
    currency = str(options["currency"]).upper()
    body: dict[str, Any] = {
        "source_account_id": str(options["source_account_id"]),
        "target_account_id": str(options["target_account_id"]),
        "amount_minor": amount_minor_of(options["amount"], currency),
        "currency": currency,
        "description": options["description"],
    }
    execute_at: datetime | None = options["execute_at"]
    if execute_at is not None:
        body["execute_at"] = execute_at.strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"Idempotency-Key": chosen_idempotency_key(options["idempotency_key"])}
    wait_seconds: int = options["wait_seconds"]
    if wait_seconds:
        headers["Prefer"] = f"wait={wait_seconds}"
    sent = session.call(
        "POST", "transactions", TRANSFERS_PATH, json=body, headers=headers,
        timeout=wait_seconds + 10.0,
    )  # fmt: skip
    emit([sent], as_json, lambda: transfer_lines(sent), quiet=options["quiet"])


@transfer.command()
@click.argument("transfer_id", type=click.UUID)
@profile_option
@json_option
@banking_command
def show(session: BankSession, as_json: bool, transfer_id: UUID) -> None:
    """One transfer with its steps."""
    shown = session.call("GET", "transactions", f"{TRANSFERS_PATH}/{transfer_id}")
    emit([shown], as_json, lambda: transfer_lines(shown))


@transfer.command("list")
@click.option("--account", "account_id", type=click.UUID, default=None, help="In or out of it.")
@click.option("--status", type=click.Choice([status.value for status in TransferStatus]))
@items_max_option
@quiet_option
@profile_option
@json_option
@banking_command
def list_transfers(
    session: BankSession,
    as_json: bool,
    account_id: UUID | None,
    status: str | None,
    items_max: int,
    quiet: bool,
) -> None:
    """Your transfers, newest first."""
    params = {"account_id": str(account_id)} if account_id else {}
    if status:
        params["status"] = status
    listed = list(session.pages("transactions", TRANSFERS_PATH, params, items_max))
    rows = [
        (
            item["id"],
            item["status"],
            display_amount(item["amount_minor"], item["currency"]),
            item["source_account_id"],
            item["target_account_id"],
            item["created_at"],
        )
        for item in listed
    ]
    header = ("TRANSFER", "STATUS", "AMOUNT", "FROM", "TO", "CREATED")
    emit(listed, as_json, lambda: table(header, rows) if rows else ["no transfers"], quiet=quiet)


@transfer.command()
@click.argument("transfer_id", type=click.UUID)
@click.option("--amount", default=None, help="How much to send back [default: what remains].")
@click.option("--currency", default=None, help="The transfer's currency, with --amount.")
@click.option("--reason", required=True, help="Why (the payer sees it).")
@idempotency_key_option
@quiet_option
@profile_option
@json_option
@banking_command
def reverse(
    session: BankSession,
    as_json: bool,
    transfer_id: UUID,
    amount: str | None,
    currency: str | None,
    reason: str,
    idempotency_key: str | None,
    quiet: bool,
) -> None:
    """As the payee, send a completed transfer's money back, in full or in part; the
    reversal is a saga of its own (see `transfer show` of the original for what it moved)."""
    body: dict[str, Any] = {"reason": reason}
    if (amount is None) != (currency is None):
        # The payee cannot read the payer's transfer, so the currency is theirs to name.
        raise click.UsageError("--amount and --currency go together")
    if amount is not None and currency is not None:
        body["amount_minor"] = amount_minor_of(amount, currency.upper())
    path = TRANSFER_REVERSALS_PATH.format(transfer_id=transfer_id)
    headers = {"Idempotency-Key": chosen_idempotency_key(idempotency_key)}
    reversal = session.call("POST", "transactions", path, json=body, headers=headers)
    emit([reversal], as_json, lambda: transfer_lines(reversal), quiet=quiet)


@transfer.command()
@click.argument("transfer_id", type=click.UUID)
@click.option("--reason", default=None, help="Why (kept with the transfer).")
@profile_option
@json_option
@banking_command
def cancel(session: BankSession, as_json: bool, transfer_id: UUID, reason: str | None) -> None:
    """Cancel a transfer; the bank honours it only before the money is posted."""
    body = {"reason": reason} if reason else {}
    path = f"{TRANSFERS_PATH}/{transfer_id}/cancel"
    cancelled = session.call("POST", "transactions", path, json=body)
    emit([cancelled], as_json, lambda: transfer_lines(cancelled))


@transfer.command()
@click.argument("transfer_id", type=click.UUID)
@click.option(
    "--timeout-seconds",
    type=click.FloatRange(min=1, max=86_400),
    default=300.0,
    show_default=True,
    help="Give up (exit status 2) if it has not ended by then.",
)
@profile_option
@json_option
@banking_command
def watch(session: BankSession, as_json: bool, transfer_id: UUID, timeout_seconds: float) -> None:
    """Follow a transfer step by step until it ends: a line per step, then its status.

    On a terminal a live line shows the status meanwhile. With --json: an NDJSON object
    per step, then the transfer. Exit status 0 when it completed, 1 when it ended
    otherwise (rejected, declined, expired, cancelled), 2 when it had not ended in time.
    """
    live = sys.stdout.isatty() and not as_json
    final = _follow(session, transfer_id, timeout_seconds, as_json=as_json, live=live)
    if live:
        click.echo(_CLEAR_LINE, nl=False)
    if as_json:
        click.echo(ndjson(final))
    else:
        click.echo(f"{final['id']}  {final['status']}")
    sys.exit(0 if final["status"] == TransferStatus.completed else 1)


def _follow(
    session: BankSession, transfer_id: UUID, timeout_seconds: float, *, as_json: bool, live: bool
) -> dict[str, Any]:
    """Print each new step as it appears; the transfer once it has ended."""
    path = f"{TRANSFERS_PATH}/{transfer_id}"
    started = time.monotonic()
    shown_steps = 0
    while True:
        current: dict[str, Any] = session.call("GET", "transactions", path)
        steps = current["steps"][shown_steps:]
        if live and steps:
            click.echo(_CLEAR_LINE, nl=False)
        for step in steps:
            click.echo(ndjson(step) if as_json else _step_line(step))
        shown_steps += len(steps)
        if TransferStatus(current["status"]).is_terminal:
            return current
        elapsed_seconds = time.monotonic() - started
        if elapsed_seconds > timeout_seconds:
            raise BankError(
                f"{transfer_id} is still {current['status']} after {elapsed_seconds:.0f} s"
            )
        if live:
            click.echo(f"{_CLEAR_LINE}{current['status']}  {elapsed_seconds:.1f} s", nl=False)
        time.sleep(WATCH_POLL_INTERVAL_SECONDS)


def _step_line(step: dict[str, Any]) -> str:
    detail = f"  {step['detail']}" if step.get("detail") else ""
    return f"{step['name']:<10} {step['outcome']:<12} {step['occurred_at']}{detail}"
