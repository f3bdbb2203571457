"""Keyset pages of rows ordered by their position `(time, id)`, the one flow of a list use
case: decode the cursor, fetch one row more than the page, cut it (kit.pagination's codec).
"""

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

from contracts.common import LIMIT_MAX
from kit.pagination import cut_page, decode_position, encode_position, fetch_limit

RowT = TypeVar("RowT")

# Where a row stands in its list: its time, then its id to break ties.
Position = tuple[datetime, uuid.UUID]


async def keyset_page(
    rows_after: Callable[[Position | None, int], Awaitable[Sequence[RowT]]],
    *,
    limit: int,
    cursor: str | None,
    position_of: Callable[[RowT], Position],
) -> tuple[list[RowT], str | None]:
    """The page after `cursor` (the first without one) and the next page's cursor, None on
    the last. `rows_after(position, count)` fetches up to `count` rows past `position`;
    a cursor this kit did not issue raises `InvalidCursor` before anything is fetched."""
    assert limit <= LIMIT_MAX, "the route caps limit"
    after = None if cursor is None else decode_position(cursor)
    rows = await rows_after(after, fetch_limit(limit))
    return cut_page(rows, limit=limit, cursor_of=lambda row: encode_position(*position_of(row)))
