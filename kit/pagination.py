"""Cursor pagination, the one way every list endpoint pages.

A cursor is opaque to the caller: the URL-safe base64 (unpadded) of the last row's sort
key, either a position `(time, id)` for rows ordered by their creation, or a sequence
number. Decoding refuses anything this codec did not issue with `InvalidCursor` (422).
Pages are cut by fetching one row more than asked: that row only tells that another page
follows.
"""

import base64
import binascii
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Annotated, Final, TypeVar

from fastapi import Query

from contracts.common import CURSOR_LENGTH_MAX, LIMIT_MAX
from contracts.problem import CommonProblem
from kit.errors import ProblemError

RowT = TypeVar("RowT")

_SEPARATOR: Final = "|"
_SEQUENCE_PREFIX: Final = "seq:"
# A PostgreSQL bigint has at most 19 digits.
_SEQUENCE_DIGITS_MAX: Final = 19
_MALFORMED: Final = "pass back a next_cursor exactly as received"


# The query parameters of a list endpoint. A route with a lower cap than LIMIT_MAX narrows
# `Limit` with `Annotated[Limit, Le(cap)]` (annotated_types), which OpenAPI shows too.
Limit = Annotated[int, Query(ge=1, le=LIMIT_MAX, description="Items per page at most")]
Cursor = Annotated[
    str | None,
    Query(max_length=CURSOR_LENGTH_MAX, description="The `next_cursor` of the previous page"),
]


class InvalidCursor(ProblemError):
    """The `cursor` is not one this list issued (it was altered, truncated or is too long): pass a
    page's `next_cursor` unchanged, or none for the first page."""

    status = 422
    slug = CommonProblem.invalid_cursor
    title = "Cursor is malformed"


def _encode(text: str) -> str:
    encoded = base64.urlsafe_b64encode(text.encode()).decode("ascii").rstrip("=")
    assert len(encoded) <= CURSOR_LENGTH_MAX, "a sort key always fits a cursor"
    return encoded


def _decode(cursor: str) -> str:
    """The text inside a cursor; padded or not (cursors issued before were padded)."""
    if len(cursor) > CURSOR_LENGTH_MAX:
        raise InvalidCursor(_MALFORMED)
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError) as error:
        raise InvalidCursor(_MALFORMED) from error


def encode_position(at: datetime, row_id: uuid.UUID) -> str:
    """The cursor after the row created at `at` with id `row_id` (a timezone-aware time)."""
    assert at.tzinfo is not None, "positions are timezone-aware"
    return _encode(f"{at.isoformat()}{_SEPARATOR}{row_id}")


def decode_position(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The `(time, id)` an `encode_position` cursor holds; `InvalidCursor` for any other."""
    at_text, separator, row_id_text = _decode(cursor).partition(_SEPARATOR)
    try:
        at = datetime.fromisoformat(at_text)
        row_id = uuid.UUID(row_id_text)
    except ValueError as error:
        raise InvalidCursor(_MALFORMED) from error
    if not separator or at.tzinfo is None:
        raise InvalidCursor(_MALFORMED)
    return at, row_id


def encode_sequence(sequence: int) -> str:
    """The cursor after the row numbered `sequence` (a non-negative bigint)."""
    assert sequence >= 0, "sequences count up from zero"
    return _encode(f"{_SEQUENCE_PREFIX}{sequence}")


def decode_sequence(cursor: str) -> int:
    """The number an `encode_sequence` cursor holds; `InvalidCursor` for any other."""
    text = _decode(cursor)
    digits = text.removeprefix(_SEQUENCE_PREFIX)
    # isdigit admits other scripts' digits; int() would admit signs, spaces and underscores.
    valid = digits.isascii() and digits.isdigit() and len(digits) <= _SEQUENCE_DIGITS_MAX
    if digits == text or not valid:
        raise InvalidCursor(_MALFORMED)
    return int(digits)


def fetch_limit(limit: int) -> int:
    """How many rows to fetch for a page of `limit`: one more, which tells whether another
    page follows (see `cut_page`)."""
    assert limit > 0, "the route caps limit"
    return limit + 1


def cut_page(
    rows: Sequence[RowT], *, limit: int, cursor_of: Callable[[RowT], str]
) -> tuple[list[RowT], str | None]:
    """The page of `rows` (fetched with `fetch_limit(limit)`) and the cursor of the next page,
    None when this is the last."""
    page = list(rows[:limit])
    next_cursor = cursor_of(page[-1]) if len(rows) > limit else None
    return page, next_cursor


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
