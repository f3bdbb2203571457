"""What the console's routes depend on: the session store, the issuer, the services' APIs,
the templates, and the few settings pages need."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from fastapi.templating import Jinja2Templates

from console.bank_api import BankApi
from console.issuer import Issuer
from console.sessions import SessionStore
from kit.ratelimit import RateLimiter
from kit.resources import ServiceResources, resources


@dataclass(frozen=True, kw_only=True)
class ConsoleResources(ServiceResources):
    store: SessionStore
    # Counts sign-in starts per address (console.sign_in); in memory, as the sessions are.
    limiter: RateLimiter
    issuer: Issuer
    bank: BankApi
    templates: Jinja2Templates
    secure_cookies: bool
    # A transfer's workflow in the Temporal UI: `{ui}/namespaces/{namespace}/workflows/{id}`.
    temporal_ui_url: str
    temporal_namespace: str


Resources = Annotated[ConsoleResources, Depends(resources(ConsoleResources))]
