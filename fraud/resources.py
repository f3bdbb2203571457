"""What the fraud service's routes depend on beyond the request's session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from fraud.ruleset import Ruleset
from kit.resources import ServiceResources, resources


@dataclass(frozen=True, kw_only=True)
class FraudResources(ServiceResources):
    """Built by the lifespan, once the database is open."""

    ruleset: Ruleset
    # Scores beside the live ruleset without deciding anything; None: no shadow runs.
    shadow_ruleset: Ruleset | None
    # Sessions whose statements each commit on their own (fraud.db explains why).
    autocommit_sessions: async_sessionmaker[AsyncSession]


Resources = Annotated[FraudResources, Depends(resources(FraudResources))]
