"""A service's typed resources: what its routes depend on beyond the request's session.

Each service declares one frozen dataclass deriving from `ServiceResources` (its clock,
clients, policies), builds it once in `create_app` or its lifespan, `install_resources`
it, and its routes take `Annotated[XResources, Depends(resources(XResources))]`; no route
reads `app.state` itself. The shell's own state (database, token verifier, rate limiter)
has its kit getters (kit.db, kit.auth, kit.ratelimit).
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import FastAPI, Request

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, kw_only=True)
class ServiceResources:
    """The resources every service has. `clock` is what `kit.params.Now` reads, so tests
    move time without sleeping."""

    clock: Clock = utc_now


ResourcesT = TypeVar("ResourcesT", bound=ServiceResources)


def install_resources(app: FastAPI, resources: ServiceResources) -> None:
    """Make `resources` the app's, replacing any before (tests swap a field this way)."""
    app.state.resources = resources


def resources_of(app: Any, kind: type[ResourcesT]) -> ResourcesT:
    """The app's resources, which must be a `kind` (an app serves one service)."""
    found = getattr(app.state, "resources", None)
    assert isinstance(found, kind), f"install the app's {kind.__name__} before it serves"
    return found


def resources(kind: type[ResourcesT]) -> Callable[[Request], Awaitable[ResourcesT]]:
    """The dependency giving a route its service's resources."""

    # async: FastAPI runs a plain `def` dependency in a worker thread.
    async def dependency(request: Request) -> ResourcesT:
        return resources_of(request.app, kind)

    return dependency
