"""`sagabank webhook add|list|deliveries`: where the bank sends the customer's events."""

from typing import Any
from uuid import UUID

import click

from contracts.notifications import WEBHOOK_ENDPOINTS_PATH, DeliveryStatus, EventType
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
from sagabank.banking.session import ITEMS_MAX_DEFAULT, BankSession


@click.group()
def webhook() -> None:
    """Your webhook endpoints and what was delivered to them."""


@webhook.command()
@click.option("--url", "endpoint_url", required=True, help="Where to POST events (https).")
@click.option(
    "--event",
    "event_types",
    multiple=True,
    type=click.Choice([event_type.value for event_type in EventType]),
    help="An event type to send; repeatable [default: every type].",
)
@click.option("--description", default=None, help="A note for you.")
@quiet_option
@profile_option
@json_option
@banking_command
def add(
    session: BankSession,
    as_json: bool,
    endpoint_url: str,
    event_types: tuple[str, ...],
    description: str | None,
    quiet: bool,
) -> None:
    """Register an endpoint; its signing secret is shown this once: keep it."""
    body = {
        "url": endpoint_url,
        "event_types": list(event_types or [event_type.value for event_type in EventType]),
        "description": description,
    }
    added = session.call("POST", "notifications", WEBHOOK_ENDPOINTS_PATH, json=body)
    emit(
        [added],
        as_json,
        lambda: fields(
            [
                ("endpoint", added["id"]),
                ("url", added["url"]),
                ("events", ", ".join(added["event_types"])),
                ("secret", f"{added['secret']}  (shown this once)"),
            ]
        ),
        quiet=quiet,
    )


@webhook.command("list")
@quiet_option
@profile_option
@json_option
@banking_command
def list_endpoints(session: BankSession, as_json: bool, quiet: bool) -> None:
    """Your endpoints, oldest first."""
    listed = list(session.pages("notifications", WEBHOOK_ENDPOINTS_PATH, {}, ITEMS_MAX_DEFAULT))
    rows = [
        (
            item["id"],
            "enabled" if item["enabled"] else f"disabled ({item['disabled_reason']})",
            item["url"],
            ", ".join(item["event_types"]),
        )
        for item in listed
    ]
    header = ("ENDPOINT", "STATE", "URL", "EVENTS")
    emit(
        listed,
        as_json,
        lambda: table(header, rows) if rows else ["no webhook endpoints"],
        quiet=quiet,
    )


@webhook.command()
@click.argument("endpoint_id", type=click.UUID)
@click.option("--status", type=click.Choice([status.value for status in DeliveryStatus]))
@items_max_option
@quiet_option
@profile_option
@json_option
@banking_command
def deliveries(
    session: BankSession,
    as_json: bool,
    endpoint_id: UUID,
    status: str | None,
    items_max: int,
    quiet: bool,
) -> None:
    """An endpoint's deliveries, newest first, with their attempts and last answer."""
    path = f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint_id}/deliveries"
    params = {"status": status} if status else {}
    listed: list[dict[str, Any]] = list(session.pages("notifications", path, params, items_max))
    rows = [
        (
            item["id"],
            item["event_type"],
            item["status"],
            str(item["attempts_made"]),
            str(item["last_status_code"] or ""),
            item["created_at"],
        )
        for item in listed
    ]
    header = ("DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "LAST ANSWER", "CREATED")
    emit(listed, as_json, lambda: table(header, rows) if rows else ["no deliveries"], quiet=quiet)
