"""The forms' filters, read from the query string into what the services' APIs take; what
a person mistyped becomes a message on the page, and no call is made."""

import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Final

from contracts.common import CURSOR_LENGTH_MAX
from contracts.transfers import TransferStatus

_IDENTIFIER: Final = re.compile(r"^[A-Za-z0-9_.:@-]{1,64}$")
_ACTION: Final = re.compile(r"^[a-z0-9_.:-]{1,64}$")


@dataclass
class Filters:
    """The filters as typed (shown back in the form) and as the API takes them."""

    values: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    def uuid(self, name: str, label: str, *, param: str | None = None) -> None:
        text = self._text(name)
        if text:
            try:
                self.params[param or name] = str(uuid.UUID(text))
            except ValueError:
                self.errors.append(f"{label} is not an id (a UUID).")

    def identifier(self, name: str, label: str, *, pattern: re.Pattern[str] = _IDENTIFIER) -> None:
        text = self._text(name)
        if text:
            if pattern.match(text):
                self.params[name] = text
            else:
                self.errors.append(f"{label} has characters an id never has.")

    def day(self, name: str, label: str, *, param: str, end_of_day: bool = False) -> None:
        """A date (YYYY-MM-DD, UTC) as an instant: its start, or the next day's start."""
        text = self._text(name)
        if text:
            try:
                day = date.fromisoformat(text)
            except ValueError:
                self.errors.append(f"{label} is not a date (YYYY-MM-DD).")
                return
            moment = datetime.combine(day, time(), tzinfo=UTC)
            self.params[param] = (moment + timedelta(days=1 if end_of_day else 0)).isoformat()

    def cursor(self, text: str) -> None:
        """The page to show; never among `values`, so a new search starts at the first."""
        if text and len(text) <= CURSOR_LENGTH_MAX:
            self.params["cursor"] = text

    def _text(self, name: str) -> str:
        text = self.values.get(name, "").strip()
        self.values[name] = text
        return text


def transfer_filters(query: Mapping[str, str]) -> Filters:
    """Status, account, customer and creation dates of GET /v1/transfers (the customer is
    looked up as their accounts: the transfers API filters by account)."""
    filters = Filters(values={name: query.get(name, "") for name in _TRANSFER_FIELDS})
    status = filters._text("status")
    if status:
        if status in TransferStatus.__members__.values():
            filters.params["status"] = status
        else:
            filters.errors.append("Status is not one a transfer can have.")
    filters.uuid("account_id", "Account")
    filters.identifier("customer_id", "Customer")
    filters.day("created_from", "From", param="created_after")
    filters.day("created_to", "To", param="created_before", end_of_day=True)
    filters.cursor(query.get("cursor", ""))
    return filters


_TRANSFER_FIELDS: Final = ("status", "account_id", "customer_id", "created_from", "created_to")


def audit_filters(query: Mapping[str, str]) -> Filters:
    """The filters every service's GET /v1/admin/audit-events takes."""
    filters = Filters(values={name: query.get(name, "") for name in _AUDIT_FIELDS})
    filters.uuid("transfer_id", "Transfer")
    filters.identifier("account_id", "Account")
    filters.identifier("actor_id", "Actor")
    filters.identifier("action", "Action", pattern=_ACTION)
    filters.day("since", "From", param="since")
    filters.day("until", "To", param="until", end_of_day=True)
    return filters


_AUDIT_FIELDS: Final = ("transfer_id", "account_id", "actor_id", "action", "since", "until")
