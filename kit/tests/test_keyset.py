"""Keyset pages: the cursor decoded into a position, one row more fetched, the page cut."""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from kit.pagination import InvalidCursor, Position, decode_position, encode_position, keyset_page

START = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class _Row:
    at: datetime
    row_id: uuid.UUID


ROWS = [_Row(START + timedelta(minutes=index), uuid.uuid4()) for index in range(5)]


def _position_of(row: _Row) -> Position:
    return row.at, row.row_id


class _Table:
    """Rows in position order; records what each fetch asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[Position | None, int]] = []

    async def rows_after(self, after: Position | None, fetch_count: int) -> Sequence[_Row]:
        self.asked.append((after, fetch_count))
        later = [row for row in ROWS if after is None or _position_of(row) > after]
        return later[:fetch_count]


async def test_first_page_fetches_one_more_and_points_at_its_last_row() -> None:
    table = _Table()
    page, next_cursor = await keyset_page(
        table.rows_after, limit=2, cursor=None, position_of=_position_of
    )
    assert page == ROWS[:2]
    assert table.asked == [(None, 3)]
    assert next_cursor is not None
    assert decode_position(next_cursor) == _position_of(ROWS[1])


async def test_next_page_starts_after_the_cursor_and_the_last_has_no_cursor() -> None:
    table = _Table()
    cursor = encode_position(*_position_of(ROWS[2]))
    page, next_cursor = await keyset_page(
        table.rows_after, limit=2, cursor=cursor, position_of=_position_of
    )
    assert page == ROWS[3:]
    assert table.asked == [(_position_of(ROWS[2]), 3)]
    assert next_cursor is None


async def test_a_cursor_it_did_not_issue_fetches_nothing() -> None:
    table = _Table()
    with pytest.raises(InvalidCursor):
        await keyset_page(
            table.rows_after, limit=2, cursor="not-a-cursor", position_of=_position_of
        )
    assert table.asked == []
