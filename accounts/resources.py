"""The accounts service's resources: one object, installed once by the lifespan.

Each context's routes depend on its own part (`LedgerResources`, `IdentityResources`), so
that neither context imports the other (docs/decisions/0013); this class is both.
"""

from dataclasses import dataclass

from accounts.identity.resources import IdentityResources
from accounts.ledger.resources import LedgerResources


@dataclass(frozen=True, kw_only=True)
class AccountsResources(LedgerResources, IdentityResources):
    """The clock, the ledger's write path and the token issuer."""
