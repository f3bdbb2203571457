"""The accounts service as the transfers front door needs it: may this caller move money
out of this account?

The caller's own token is forwarded, so the accounts service applies its own ownership
rule (a customer sees only their accounts; a foreign one answers 404 as if missing) and
this service never needs a token of its own for the check.
"""

import uuid
from typing import Final

import httpx
import structlog
from pydantic import BaseModel, Field, ValidationError

from contracts.accounts import ACCOUNTS_PATH
from kit.errors import Forbidden, Unauthorized
from transactions.errors import AccountNotFound, AccountsUnavailable

log = structlog.get_logger()

_RETRY_AFTER_SECONDS: Final = 2


class _AccountOwner(BaseModel):
    """The two fields of the accounts service's `Account` this check reads; the rest of
    the answer is that service's business and may grow freely."""

    id: uuid.UUID
    customer_id: str | None = Field(default=None, max_length=64)


def _unavailable(detail: str) -> AccountsUnavailable:
    return AccountsUnavailable(detail, retry_after_seconds=_RETRY_AFTER_SECONDS)


class SourceAccounts:
    """Asks the accounts service whether the caller owns an account (one shared client)."""

    def __init__(self, client: httpx.AsyncClient | None) -> None:
        self._client = client

    async def check_owned(
        self, *, account_id: uuid.UUID, authorization: str, customer_id: str | None
    ) -> None:
        """Return if the caller may debit `account_id`; else AccountNotFound (404),
        Forbidden/Unauthorized as the accounts service answered, or AccountsUnavailable (503)."""
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
            raise Forbidden(
                "The token needs accounts:read as well, so that the source account's "
                "ownership can be checked."
            )
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
