"""What the ledger's routes depend on beyond the request's session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from accounts.ledger.service import Ledger
from kit.resources import ServiceResources, resources


@dataclass(frozen=True, kw_only=True)
class LedgerResources(ServiceResources):
    """The ledger's part of `accounts.resources.AccountsResources`, the one the app installs."""

    # The write path's own asyncpg pool, opened by the lifespan.
    ledger: Ledger


Resources = Annotated[LedgerResources, Depends(resources(LedgerResources))]
