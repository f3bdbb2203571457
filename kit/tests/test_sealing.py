"""The key ring (kit.sealing): sealed values name their key, old keys still open, values
are bound to their row, and the settings format refuses what it cannot use."""

import base64
import os
import uuid

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kit.sealing import (
    KeyRing,
    SealedValueUnreadable,
    SealingKey,
    parse_key_ring,
    sealed_key_id,
    with_legacy_key,
)

OLD = SealingKey("2025", os.urandom(32))
NEW = SealingKey("2026", os.urandom(32))
ROW = uuid.uuid4().bytes


class TestKeyRing:
    def test_new_values_are_sealed_under_the_newest_key_and_name_it(self) -> None:
        sealed = KeyRing([NEW, OLD]).seal(b"secret", associated_data=ROW)
        assert sealed_key_id(sealed) == "2026"
        assert b"secret" not in sealed

    def test_a_value_sealed_under_an_old_key_opens_after_a_new_key_is_added(self) -> None:
        sealed = KeyRing([OLD]).seal(b"secret", associated_data=ROW)
        rotated = KeyRing([NEW, OLD])
        assert rotated.open(sealed, associated_data=ROW) == b"secret"
        assert not rotated.is_current(sealed)
        with pytest.raises(SealedValueUnreadable, match="2025"):
            KeyRing([NEW]).open(sealed, associated_data=ROW)

    def test_a_value_is_bound_to_its_row(self) -> None:
        sealed = KeyRing([NEW]).seal(b"secret", associated_data=ROW)
        with pytest.raises(SealedValueUnreadable):
            KeyRing([NEW]).open(sealed, associated_data=uuid.uuid4().bytes)

    def test_a_value_sealed_before_rings_opens_under_any_key_of_the_ring(self) -> None:
        nonce = os.urandom(12)
        headerless = nonce + AESGCM(OLD.key).encrypt(nonce, b"secret", ROW)
        assert KeyRing([NEW, OLD]).open(headerless, associated_data=ROW) == b"secret"

    def test_a_key_configured_under_another_id_still_opens(self) -> None:
        sealed = KeyRing([SealingKey("legacy", OLD.key)]).seal(b"secret", associated_data=ROW)
        assert KeyRing([NEW, OLD]).open(sealed, associated_data=ROW) == b"secret"


class TestSettingsFormat:
    def test_newest_first(self) -> None:
        text = ",".join(f"{key.key_id}:{base64.b64encode(key.key).decode()}" for key in (NEW, OLD))
        ring = parse_key_ring(text)
        assert ring.newest_key_id == "2026"
        assert [key.key_id for key in ring.keys] == ["2026", "2025"]

    @pytest.mark.parametrize(
        ("text", "why"),
        [
            ("", "not `id:base64key`"),
            ("k1", "not `id:base64key`"),
            ("k1:not base64!", "not base64"),
            ("k1:c2hvcnQ=", "32 bytes"),
            (f"bad id:{base64.b64encode(bytes(32)).decode()}", "key id"),
            (
                f"k1:{base64.b64encode(bytes(32)).decode()},k1:{base64.b64encode(bytes(32)).decode()}",
                "twice",
            ),
        ],
    )
    def test_refused(self, text: str, why: str) -> None:
        with pytest.raises(ValueError, match=why) as refused:
            parse_key_ring(text)
        assert base64.b64encode(bytes(32)).decode() not in str(refused.value)

    def test_the_single_key_of_old_joins_the_ring_as_its_oldest(self) -> None:
        ring = with_legacy_key(KeyRing([NEW]), OLD.key, key_id="legacy")
        assert ring is not None
        assert [key.key_id for key in ring.keys] == ["2026", "legacy"]
        assert with_legacy_key(KeyRing([NEW, OLD]), OLD.key, key_id="legacy") is not None
        alone = with_legacy_key(None, OLD.key, key_id="legacy")
        assert alone is not None
        assert alone.newest_key_id == "legacy"
