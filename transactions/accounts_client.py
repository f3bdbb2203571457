"""The accounts service as the transfers front door needs it: may this caller move money
out of this account?

The caller's own token is forwarded, so the accounts service applies its own ownership
rule (a customer sees only their accounts; a foreign one answers 404 as if missing) and
this service never needs a token of its own for the check.

A customer's confirmed ownership is remembered (bounded, per process): an account's owner
is set when it is opened and never changes (the accounts database refuses to change it,
see docs/decisions/0030), so a repeat payer is not asked about again. Refusals are never
remembered, and the token's accounts:read scope is checked on every request.
"""

import uuid
from typing import Final

import httpx
import structlog
from pydantic import BaseModel, Field, ValidationError

from contracts.accounts import ACCOUNTS_PATH
from contracts.auth import Scope
from kit.auth import Principal
from kit.errors import Forbidden, Unauthorized
from transactions.errors import AccountNotFound, AccountsUnavailable

log = structlog.get_logger()

_RETRY_AFTER_SECONDS: Final = 2
# (account, customer) pairs remembered per process: ~200 bytes each, so ~2 MB at most.
CONFIRMED_OWNERS_MAX: Final = 10_000


class _AccountOwner(BaseModel):
    """The two fields of the accounts service's `Account` this check reads; the rest of
    the answer is that service's business and may grow freely."""

    id: uuid.UUID
    customer_id: str | None = Field(default=None, max_length=64)


def _unavailable(detail: str) -> AccountsUnavailable:
    return AccountsUnavailable(detail, retry_after_seconds=_RETRY_AFTER_SECONDS)


def _cannot_read_accounts() -> Forbidden:
    return Forbidden(
        "The token needs accounts:read as well, so that the source account's "
        "ownership can be checked."
    )


class SourceAccounts:
    """Asks the accounts service whether the caller owns an account (one shared client),
    remembering the (account, customer) pairs it confirmed."""

    def __init__(
        self, client: httpx.AsyncClient | None, *, confirmed_max: int = CONFIRMED_OWNERS_MAX
    ) -> None:
        self._client = client
        self._confirmed_max = confirmed_max
        # Insertion-ordered: when full, the oldest confirmation is forgotten first.
        self._confirmed: dict[tuple[uuid.UUID, str], None] = {}

    async def check_owned(
        self, *, account_id: uuid.UUID, authorization: str, principal: Principal
    ) -> None:
        """Return if the caller may debit `account_id`; else AccountNotFound (404),
        Forbidden/Unauthorized as the accounts service answered, or AccountsUnavailable (503)."""
        customer_id = principal.customer_id
        if customer_id is not None and (account_id, customer_id) in self._confirmed:
            # The token was verified by this service against the same issuer's keys; the
            # one rule of the accounts service left to apply is its scope (403 without it).
            # The issuer names the accounts audience in every token with accounts:read.
            if not principal.has(Scope.accounts_read):
                raise _cannot_read_accounts()
            return
        await self._ask(account_id=account_id, authorization=authorization, customer_id=customer_id)
        if customer_id is not None:
            self._remember(account_id, customer_id)

    def _remember(self, account_id: uuid.UUID, customer_id: str) -> None:
        if len(self._confirmed) >= self._confirmed_max:
            del self._confirmed[next(iter(self._confirmed))]
        self._confirmed[(account_id, customer_id)] = None

    async def _ask(
        self, *, account_id: uuid.UUID, authorization: str, customer_id: str | None
    ) -> None:
        """The accounts service's answer about `account_id` for this token, as check_owned."""
        if self._client is None:
            raise _unavailable("this service does not know the accounts service (ACCOUNTS_URL)")
        try:
            response = await self._client.get(
                f"{ACCOUNTS_PATH}/{account_id}", headers={"Authorization": authorization}
            )
        except httpx.HTTPError as error:
            log.warning("accounts.unreachable", error=type(error).__name__)
            raise _unavailable("the accounts service did not answer; retry later") from None
        if response.status_code == httpx.codes.NOT_FOUND:
            raise AccountNotFound(f"no account {account_id}")
        if response.status_code == httpx.codes.UNAUTHORIZED:
            raise Unauthorized("The accounts service did not accept the bearer token.")
        if response.status_code == httpx.codes.FORBIDDEN:
            raise _cannot_read_accounts()
        if response.status_code != httpx.codes.OK:
            log.warning("accounts.unexpected_answer", status=response.status_code)
            raise _unavailable(f"the accounts service answered {response.status_code}")
        try:
            account = _AccountOwner.model_validate_json(response.content)
        except ValidationError:
            log.warning("accounts.unreadable_answer")
            raise _unavailable("the accounts service answered something unreadable") from None
        if account.id != account_id:
            log.warning("accounts.wrong_account_answered")
            raise _unavailable("the accounts service answered about another account")
        # The accounts service already hides foreign accounts from customers; checked again
        # here because a mistake there would otherwise let one customer spend another's money.
        if customer_id is not None and account.customer_id != customer_id:
            log.error("accounts.foreign_account_shown")
            raise AccountNotFound(f"no account {account_id}")
