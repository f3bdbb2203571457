"""What the token issuer's routes depend on beyond the request's session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from accounts.identity.service import Issuer
from kit.resources import ServiceResources, resources
from kit.sealing import KeyRing


@dataclass(frozen=True, kw_only=True)
class IdentityResources(ServiceResources):
    """The issuer's part of `accounts.resources.AccountsResources`, the one the app installs."""

    issuer: Issuer
    # Seals the staff's TOTP secrets; None when ACCOUNTS_SECRETS_KEYS is unset.
    staff_key_ring: KeyRing | None = None


Resources = Annotated[IdentityResources, Depends(resources(IdentityResources))]
