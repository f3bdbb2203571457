"""Small shapes every contract reuses: pages, health, limits on free text."""

import enum
from typing import Annotated, Any, Final, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from contracts.examples import EXAMPLE_CURSOR

ItemT = TypeVar("ItemT")

# When the caller stops waiting (RFC 3339 with an offset): a service that honours it commits
# nothing after it (kit.deadline). The saga's worker sends it on every call.
REQUEST_DEADLINE_HEADER: Final = "Request-Deadline"

LIMIT_MAX = 500
LIMIT_DEFAULT = 50
# An opaque pagination cursor (kit.pagination issues them) is never longer.
CURSOR_LENGTH_MAX: Final = 200

ShortText = Annotated[str, Field(max_length=140)]
Identifier = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:@-]+$")]


class StrictModel(BaseModel):
    """A request body: unknown fields are refused, so nothing can be mass-assigned."""

    model_config = ConfigDict(extra="forbid")


def _page_examples(schema: dict[str, Any], page_model: type[BaseModel]) -> None:
    """A page's example holds its item model's first example (no item when it has none)."""
    (item_model, *_) = page_model.__pydantic_generic_metadata__["args"] or (None,)
    extra = getattr(item_model, "model_config", {}).get("json_schema_extra")
    items = extra.get("examples", [])[:1] if isinstance(extra, dict) else []
    schema["examples"] = [{"items": items, "next_cursor": EXAMPLE_CURSOR}]


class Page(BaseModel, Generic[ItemT]):
    """One page of a cursor-paginated list; `next_cursor` is None on the last page."""

    model_config = ConfigDict(json_schema_extra=_page_examples)

    items: list[ItemT]
    next_cursor: str | None = Field(default=None, max_length=CURSOR_LENGTH_MAX)


class MigrationsCheck(enum.StrEnum):
    """The `migrations` check of `/readyz`: the database's schema against this release's."""

    ok = "ok"  # at this release's newest migration
    ahead = "ahead"  # migrated by a newer release (expand-only, see deploy/README.md): ready
    behind = "behind"  # an older migration, or none at all: not ready


class Health(BaseModel):
    """`/healthz` and `/readyz`: ready when `database` is "ok", `migrations` ok or ahead and
    `keys` (a service verifying tokens) loaded."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ok",
                    "service": "accounts",
                    "checks": {"database": "ok", "migrations": "ok", "keys": "ok"},
                }
            ]
        }
    )

    status: str = Field(max_length=20)
    service: str = Field(max_length=40)
    checks: dict[str, str] = Field(
        default_factory=dict,
        description='`database`: "ok" or "unreachable: <error>"; `migrations`: "ok", "ahead" '
        '(a newer release migrated the database: still ready) or "behind" (not ready); `keys`: '
        '"ok", "cached: issuer unreachable" (still ready) or "not loaded" (not ready)',
    )
