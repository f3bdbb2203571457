"""What the token issuer's routes depend on beyond the request's session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from accounts.identity.service import Issuer
from kit.resources import ServiceResources, resources


@dataclass(frozen=True, kw_only=True)
class IdentityResources(ServiceResources):
    """The issuer's part of `accounts.resources.AccountsResources`, the one the app installs."""

    issuer: Issuer


Resources = Annotated[IdentityResources, Depends(resources(IdentityResources))]
