"""`sagabank audit`: one timeline from the audit trails of the four services.

Each service keeps its own hash-chained trail and answers the same admin queries
(`contracts.audit`). This module gathers the events matching one question from each,
merges them into one timeline, and formats it as a table or NDJSON; it also asks each
service to verify its chain. The merge and the formats are pure, tested without a bank.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any, NoReturn
from uuid import UUID

import httpx
from pydantic import ValidationError

from contracts.audit import (
    AUDIT_EVENTS_PATH,
    AUDIT_EXPORT_PATH,
    AUDIT_LIMIT_MAX,
    AUDIT_VERIFY_PATH,
    AuditEvent,
    AuditVerification,
)
from contracts.common import Page
from sagabank.bankclient import BankError
from sagabank.progress import Progress

# One question gathers at most this many events per service (20 pages of 500): beyond it
# the answer is cut short, and the command says so rather than run on without end.
EVENTS_PER_SERVICE_MAX = 10_000
HTTP_TIMEOUT_SECONDS = 30.0
TABLE_COLUMNS = ("time", "service", "actor", "action", "subject", "outcome", "workflow id")


@dataclass(frozen=True)
class Question:
    """What to look for; every filter given must match (as the services' query does)."""

    transfer_id: UUID | None = None
    account_id: str | None = None
    actor_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def params(self) -> dict[str, str]:
        values: dict[str, Any] = {
            "transfer_id": self.transfer_id,
            "account_id": self.account_id,
            "actor_id": self.actor_id,
            "action": self.action,
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
        }
        return {name: str(value) for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class Gathered:
    """One service's events for a question; `truncated` when EVENTS_PER_SERVICE_MAX cut it."""

    service: str
    events: list[AuditEvent]
    truncated: bool


def _get(http: httpx.Client, url: str, params: Mapping[str, str], service: str) -> bytes:
    try:
        response = http.get(url, params=params)
    except httpx.HTTPError as error:
        raise BankError(f"cannot reach {service} at {url}: {type(error).__name__}") from None
    if response.status_code != 200:
        _get_refusal(response, service)
    return response.content


def _get_refusal(response: httpx.Response, service: str) -> NoReturn:
    if response.status_code in (401, 403):
        raise BankError(
            f"{service} refused the audit query ({response.status_code}): the token needs "
            "the audit:read scope",
            exit_code=1,
        )
    raise BankError(f"{service} answered {response.status_code}: {response.text[:300]}")


def gather(
    http: httpx.Client,
    service: str,
    base_url: str,
    question: Question,
    *,
    events_max: int = EVENTS_PER_SERVICE_MAX,
) -> Gathered:
    """Every event of `service` matching `question`, following cursors, at most `events_max`."""
    assert events_max > 0
    url = f"{base_url.rstrip('/')}{AUDIT_EVENTS_PATH}"
    events: list[AuditEvent] = []
    cursor: str | None = None
    while len(events) < events_max:
        params = {**question.params(), "limit": str(min(AUDIT_LIMIT_MAX, events_max - len(events)))}
        if cursor is not None:
            params["cursor"] = cursor
        content = _get(http, url, params, service)
        try:
            page = Page[AuditEvent].model_validate_json(content)
        except ValidationError:
            raise BankError(f"{service} answered something else than audit events") from None
        events.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return Gathered(service, events, truncated=False)
    return Gathered(service, events, truncated=True)


def export(
    http: httpx.Client,
    service: str,
    base_url: str,
    question: Question,
    sink: IO[str],
    progress: Progress,
) -> int:
    """Stream `service`'s events of [since, until) into `sink` as NDJSON, oldest first, as
    the service sends them (never all in memory); how many there were."""
    url = f"{base_url.rstrip('/')}{AUDIT_EXPORT_PATH}"
    exported = 0
    try:
        with http.stream("GET", url, params=question.params()) as response:
            if response.status_code != 200:
                response.read()
                _get_refusal(response, service)
            for line in response.iter_lines():
                if line:
                    sink.write(f"{line}\n")
                    exported += 1
                    progress.note(f"{service} {exported:,} events")
    except httpx.HTTPError as error:
        raise BankError(f"cannot export from {service} at {url}: {type(error).__name__}") from None
    return exported


def verify(http: httpx.Client, service: str, base_url: str) -> AuditVerification:
    content = _get(http, f"{base_url.rstrip('/')}{AUDIT_VERIFY_PATH}", {}, service)
    try:
        return AuditVerification.model_validate_json(content)
    except ValidationError:
        raise BankError(f"{service} answered something else than a verification") from None


def client(token: str, *, transport: httpx.BaseTransport | None = None) -> httpx.Client:
    return httpx.Client(
        timeout=HTTP_TIMEOUT_SECONDS,
        follow_redirects=False,
        headers={"Authorization": f"Bearer {token}"},
        transport=transport,
    )


# -- the timeline (pure) ----------------------------------------------------------------


def merge(gathered: Iterable[Gathered]) -> list[AuditEvent]:
    """One timeline: by time; at the same instant by service, then in each chain's order."""
    events = [event for answer in gathered for event in answer.events]
    return sorted(events, key=lambda event: (event.occurred_at, event.service, event.sequence))


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def row_of(event: AuditEvent) -> tuple[str, ...]:
    return (
        _time(event.occurred_at),
        event.service,
        f"{event.actor_type.value}:{event.actor_id}",
        event.action,
        f"{event.subject_type}:{event.subject_id}",
        event.outcome,
        event.workflow_id or "-",
    )


def table(events: Sequence[AuditEvent]) -> list[str]:
    """Aligned columns with a header; every value whole (ids are what one copies from it)."""
    rows = [TABLE_COLUMNS, *(row_of(event) for event in events)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(TABLE_COLUMNS))]
    return [
        "  ".join(value.ljust(width) for value, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]


def ndjson(events: Sequence[AuditEvent]) -> list[str]:
    """One JSON object per event, exactly as the services answer it (hashes included)."""
    return [event.model_dump_json() for event in events]


def verification_lines(verifications: Sequence[AuditVerification]) -> list[str]:
    lines = []
    width = max((len(item.service) for item in verifications), default=0)
    for item in verifications:
        if item.ok:
            pinned = (
                ", no checkpoint yet"
                if item.checkpoint_sequence is None
                else f", checkpoint at sequence {item.checkpoint_sequence:,}"
            )
            lines.append(
                f"{item.service:<{width}}  ok      {item.events_checked:,} events checked{pinned}"
            )
        elif item.first_broken_event_id is None:  # a cut-off tail, or a checkpoint refused
            lines.append(
                f"{item.service:<{width}}  BROKEN  {item.reason} "
                f"({item.events_checked:,} events before them hold)"
            )
        else:
            lines.append(
                f"{item.service:<{width}}  BROKEN  at sequence {item.first_broken_sequence}, "
                f"event {item.first_broken_event_id}: {item.reason} "
                f"({item.events_checked:,} events before it hold)"
            )
    return lines
