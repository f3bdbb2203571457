"""Who may call what on the transactions service: one typed dependency per kind of caller.

Scopes gate functions here; ownership of a transfer (a customer sees only their own) is
checked in the service, where a foreign transfer answers exactly as a missing one.
"""

from typing import Annotated, Final

from fastapi import Depends

from contracts.auth import Scope
from kit.auth import Principal, require_any_scope, require_scopes
from kit.ratelimit import MONEY_BUCKET, rate_limited

# Counts one request against the caller's money rate (429 with Retry-After once over it).
count_money_request: Final = rate_limited(MONEY_BUCKET)


async def _money_mover(
    principal: Annotated[Principal, Depends(require_scopes(Scope.transfers_write))],
    _counted: Annotated[Principal, Depends(count_money_request)],
) -> Principal:
    # The scope is checked first: a caller refused with 403 spends none of its rate.
    return principal


# Customers moving money: transfers:write, counted against the money rate.
MoneyMover = Annotated[Principal, Depends(_money_mover)]
# A batch counts each of its items instead (see `service.create_transfers_batch`).
TransfersWrite = Annotated[Principal, Depends(require_scopes(Scope.transfers_write))]
TransfersRead = Annotated[Principal, Depends(require_scopes(Scope.transfers_read))]
# The saga's worker reporting steps.
TransfersInternal = Annotated[Principal, Depends(require_scopes(Scope.transfers_internal))]
# Operators.
Reviewer = Annotated[Principal, Depends(require_scopes(Scope.reviews_write))]
AccountsAdmin = Annotated[Principal, Depends(require_scopes(Scope.accounts_admin))]


async def _reverser(
    principal: Annotated[
        Principal, Depends(require_any_scope(Scope.transfers_write, Scope.transfers_reverse))
    ],
    _counted: Annotated[Principal, Depends(count_money_request)],
) -> Principal:
    return principal


# Reversals: a payee refunding (transfers:write) or an operator (transfers:reverse), counted
# against the money rate; which transfers each may reverse is the service's rule.
Reverser = Annotated[Principal, Depends(_reverser)]
