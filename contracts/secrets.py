"""Re-sealing secrets at rest: the same admin route on every service that keeps them."""

from typing import Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from contracts.examples import EXAMPLE_WEBHOOK_ENDPOINT_ID

SECRETS_RESEAL_PATH: Final = "/v1/admin/secrets/reseal"
RESEAL_LIMIT_MAX: Final = 500
# A batch names at most this many rows it could not open (the rest are counted).
UNREADABLE_IDS_SHOWN_MAX: Final = 50


class ResealRequest(BaseModel):
    """One batch: the rows after `after` (by id), at most `limit` of them."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"after": None, "limit": 100}]}
    )

    after: UUID | None = None
    limit: int = Field(default=100, ge=1, le=RESEAL_LIMIT_MAX)


class ResealBatch(BaseModel):
    """What one batch did. `next_after` is None once every row has been examined."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "service": "notifications",
                    "key_id": "2026-12",
                    "examined": 100,
                    "resealed": 37,
                    "unreadable_count": 0,
                    "unreadable_ids": [],
                    "next_after": EXAMPLE_WEBHOOK_ENDPOINT_ID,
                }
            ]
        }
    )

    service: str = Field(max_length=32)
    key_id: str = Field(max_length=32)
    examined: int = Field(ge=0)
    resealed: int = Field(ge=0)
    unreadable_count: int = Field(ge=0)
    unreadable_ids: list[UUID] = Field(max_length=UNREADABLE_IDS_SHOWN_MAX)
    next_after: UUID | None
