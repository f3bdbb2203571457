"""The values the OpenAPI examples of every model share, so one example's account is the
account another example's transfer moves money from (docs/decisions/0043)."""

import copy
from typing import Any, Final

from pydantic import BaseModel

EXAMPLE_CUSTOMER_ID: Final = "3f1c9a52-7d4e-4b8a-9c61-2e5d8f0a7b34"
EXAMPLE_PAYEE_CUSTOMER_ID: Final = "8a2e4c71-5b3d-4f9e-a1c0-6d7b9e2f4a18"
EXAMPLE_SOURCE_ACCOUNT_ID: Final = "5b6f0c3e-9a1d-4e27-8f4b-1c2d3e4f5a6b"
EXAMPLE_TARGET_ACCOUNT_ID: Final = "c7d8e9f0-1a2b-4c3d-9e4f-5a6b7c8d9e0f"
EXAMPLE_SYSTEM_ACCOUNT_ID: Final = "0e1f2a3b-4c5d-4e6f-8a7b-9c0d1e2f3a4b"
EXAMPLE_TRANSFER_ID: Final = "6e1f4c2a-8b3d-4a5e-9f70-b1c2d3e4f5a6"
EXAMPLE_LEDGER_TRANSFER_ID: Final = "9d8c7b6a-5f4e-4d3c-8b2a-1f0e9d8c7b6a"
EXAMPLE_EVENT_ID: Final = "2b3c4d5e-6f70-4819-a2b3-c4d5e6f7a8b9"
EXAMPLE_WEBHOOK_ENDPOINT_ID: Final = "4d5e6f70-8192-4a3b-b4c5-d6e7f8091a2b"
EXAMPLE_DELIVERY_ID: Final = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
EXAMPLE_STANDING_ORDER_ID: Final = "1c2d3e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
EXAMPLE_REVERSAL_ID: Final = "f0e1d2c3-b4a5-4968-8776-655443322110"
EXAMPLE_STAFF_ID: Final = "d4c3b2a1-0f9e-4d8c-b7a6-958473625140"
EXAMPLE_AUDIT_EVENT_ID: Final = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
EXAMPLE_SCORE_ID: Final = "b5c6d7e8-f9a0-4b1c-9d2e-3f4a5b6c7d8e"
# RFC 3339, UTC: the moment a request is made, and a moment shortly after.
EXAMPLE_TIME: Final = "2026-12-06T09:30:00Z"
EXAMPLE_LATER_TIME: Final = "2026-12-06T09:30:02Z"
EXAMPLE_CURSOR: Final = "eyJhZnRlciI6IjIwMjYtMTItMDZUMDk6MzA6MDBaIn0"
EXAMPLE_REQUEST_ID: Final = "4bf92f3577b34da6a3ce929d0e0e4736"
EXAMPLE_HASH: Final = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"


def example_of(model: type[BaseModel]) -> dict[str, Any]:
    """A copy of the first example `model` declares, for the example of a model that holds
    one (a batch's results, an event's delivery): each example is written once."""
    extra = model.model_config.get("json_schema_extra")
    assert isinstance(extra, dict), f"{model.__name__} declares no example"
    examples = extra["examples"]
    assert isinstance(examples, list), f"{model.__name__}'s examples are not a list"
    first = examples[0]
    assert isinstance(first, dict), f"{model.__name__}'s example is not an object"
    return copy.deepcopy(first)
