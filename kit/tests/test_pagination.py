"""Cursor pagination: one codec, one length check, one problem for a cursor it did not issue."""

import base64
import string
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.common import CURSOR_LENGTH_MAX
from kit.pagination import (
    InvalidCursor,
    cut_page,
    decode_position,
    decode_sequence,
    encode_position,
    encode_sequence,
    fetch_limit,
)

AT = datetime(2026, 11, 28, 10, 0, 0, 123456, tzinfo=UTC)
ROW_ID = uuid.UUID("7d4c2a8e-5b0f-4c1e-9a3d-2f6b8e0c1d4a")


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


class TestPosition:
    def test_round_trip_keeps_the_instant_and_its_offset(self) -> None:
        at = AT.astimezone(timezone(timedelta(hours=-5)))
        assert decode_position(encode_position(at, ROW_ID)) == (at, ROW_ID)

    def test_a_cursor_is_url_safe_and_unpadded(self) -> None:
        cursor = encode_position(AT, ROW_ID)
        assert "=" not in cursor
        assert set(cursor) <= set(string.ascii_letters + string.digits + "-_")

    def test_a_padded_cursor_issued_before_still_reads(self) -> None:
        assert decode_position(_raw(f"{AT.isoformat()}|{ROW_ID}")) == (AT, ROW_ID)

    @pytest.mark.parametrize(
        "cursor",
        [
            pytest.param("garbage!", id="not-base64"),
            pytest.param(_raw("not-a-cursor"), id="no-separator"),
            pytest.param(_raw("2026-11-28T10:00:00|not-a-uuid"), id="bad-id"),
            pytest.param(_raw(f"2026-11-28T10:00:00|{ROW_ID}"), id="naive-time"),
            pytest.param(_raw(f"yesterday|{ROW_ID}"), id="bad-time"),
            pytest.param(base64.urlsafe_b64encode(b"\xff\xfe|x").decode(), id="not-utf8"),
            pytest.param(encode_sequence(5), id="a-sequence-cursor"),
            pytest.param("A" * (CURSOR_LENGTH_MAX + 1), id="too-long"),
            pytest.param("", id="empty"),
        ],
    )
    def test_anything_else_is_an_invalid_cursor(self, cursor: str) -> None:
        with pytest.raises(InvalidCursor):
            decode_position(cursor)


class TestSequence:
    @pytest.mark.parametrize("sequence", [0, 1, 2**63 - 1])
    def test_round_trip(self, sequence: int) -> None:
        assert decode_sequence(encode_sequence(sequence)) == sequence

    @pytest.mark.parametrize(
        "text",
        ["seq:-1", "seq: 5", "seq:5_000", "seq:", "seq:١٢", "5", "entry:5", f"seq:{10**19}"],
    )
    def test_only_the_digits_it_issued_decode(self, text: str) -> None:
        with pytest.raises(InvalidCursor):
            decode_sequence(_raw(text))

    def test_a_position_cursor_is_not_a_sequence(self) -> None:
        with pytest.raises(InvalidCursor):
            decode_sequence(encode_position(AT, ROW_ID))


class TestCutPage:
    def test_the_extra_row_means_a_next_page_after_the_last_kept(self) -> None:
        rows = list(range(fetch_limit(3)))
        page, next_cursor = cut_page(rows, limit=3, cursor_of=encode_sequence)
        assert page == [0, 1, 2]
        assert next_cursor is not None
        assert decode_sequence(next_cursor) == 2

    @pytest.mark.parametrize("count", [0, 2, 3])
    def test_no_extra_row_is_the_last_page(self, count: int) -> None:
        page, next_cursor = cut_page(list(range(count)), limit=3, cursor_of=encode_sequence)
        assert page == list(range(count))
        assert next_cursor is None
