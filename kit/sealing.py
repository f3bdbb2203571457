"""Secrets sealed at rest under a key ring: AES-256-GCM, the row's id as associated data.

A sealed value is `SEALED_MAGIC + len(key id) + key id + nonce + ciphertext`: it names the
key that sealed it, so a ring of several keys opens values sealed under any of them while
new values are sealed under the newest. A value sealed before rings existed (nonce +
ciphertext, no header) is tried under every key of the ring; re-sealing gives it a header.
The ring is configured as `<PREFIX>_SECRETS_KEYS`: `id:base64key` entries, newest first,
separated by commas (see `parse_key_ring`).
"""

import base64
import binascii
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import AfterValidator, Field, SecretStr

KEY_BYTES: Final = 32
NONCE_BYTES: Final = 12
KEY_ID_PATTERN: Final = re.compile(r"[A-Za-z0-9_.-]{1,32}")
# A sealed value starts with these bytes. A headerless value (sealed before rings) begins
# with a random nonce, so it matches them once in 2**32: `open` then still tries the ring.
SEALED_MAGIC: Final = b"sbk1"
# Enough for a ring through years of yearly rotations; trying a headerless value costs one
# AES-GCM attempt per key.
KEYS_MAX: Final = 16


class SealedValueUnreadable(Exception):
    """No key of the ring opens this value for this row (a key removed too early, a value
    copied from another row, or tampering)."""


@dataclass(frozen=True)
class SealingKey:
    key_id: str
    key: bytes

    def __post_init__(self) -> None:
        if KEY_ID_PATTERN.fullmatch(self.key_id) is None:
            raise ValueError(f"a key id is 1 to 32 of A-Z a-z 0-9 _ . - (not {self.key_id!r})")
        if len(self.key) != KEY_BYTES:
            raise ValueError(f"key {self.key_id!r} must decode to {KEY_BYTES} bytes")


def header_of(key_id: str) -> bytes:
    """The bytes every value sealed under `key_id` starts with (a query can match them)."""
    encoded = key_id.encode("ascii")
    return SEALED_MAGIC + bytes([len(encoded)]) + encoded


def sealed_key_id(sealed: bytes) -> str | None:
    """The id of the key `sealed` names in its header; None for a headerless value."""
    if not sealed.startswith(SEALED_MAGIC) or len(sealed) <= len(SEALED_MAGIC):
        return None
    length = sealed[len(SEALED_MAGIC)]
    start = len(SEALED_MAGIC) + 1
    candidate = sealed[start : start + length]
    try:
        key_id = candidate.decode("ascii")
    except UnicodeDecodeError:
        return None
    return key_id if KEY_ID_PATTERN.fullmatch(key_id) else None


class KeyRing:
    """Seals under the newest key; opens values sealed under any key of the ring."""

    def __init__(self, keys: Sequence[SealingKey]) -> None:
        if not keys:
            raise ValueError("a key ring holds at least one key")
        if len(keys) > KEYS_MAX:
            raise ValueError(f"a key ring holds at most {KEYS_MAX} keys")
        ids = [key.key_id for key in keys]
        if len(set(ids)) != len(ids):
            raise ValueError("the key ring names a key id twice")
        self.keys: tuple[SealingKey, ...] = tuple(keys)
        self._aeads = {key.key_id: AESGCM(key.key) for key in keys}

    @property
    def newest_key_id(self) -> str:
        return self.keys[0].key_id

    def seal(self, plaintext: bytes, *, associated_data: bytes) -> bytes:
        """`plaintext` sealed under the newest key, bound to `associated_data` (the row id)."""
        nonce = os.urandom(NONCE_BYTES)
        aead = self._aeads[self.newest_key_id]
        return (
            header_of(self.newest_key_id) + nonce + aead.encrypt(nonce, plaintext, associated_data)
        )

    def open(self, sealed: bytes, *, associated_data: bytes) -> bytes:
        """The plaintext; `SealedValueUnreadable` if no key of the ring sealed it for this
        associated data."""
        key_id = sealed_key_id(sealed)
        # The key the header names first; then every key, since an id is only a label (the
        # same bytes may have been configured under another id); last, the whole value as a
        # headerless one (whose nonce may merely look like a header).
        attempts: list[tuple[AESGCM, bytes]] = []
        if key_id is not None:
            body = sealed[len(header_of(key_id)) :]
            if key_id in self._aeads:
                attempts.append((self._aeads[key_id], body))
            attempts.extend((aead, body) for other, aead in self._aeads.items() if other != key_id)
        attempts.extend((aead, sealed) for aead in self._aeads.values())
        for aead, value in attempts:
            try:
                return aead.decrypt(value[:NONCE_BYTES], value[NONCE_BYTES:], associated_data)
            except InvalidTag:
                continue
        raise SealedValueUnreadable(
            f"sealed under key {key_id!r}" if key_id is not None else "sealed without a key id"
        )

    def is_current(self, sealed: bytes) -> bool:
        """Whether `sealed` is under the newest key (re-sealing would change nothing)."""
        return sealed_key_id(sealed) == self.newest_key_id


def parse_key_ring(text: str) -> KeyRing:
    """A ring from `id:base64key,id:base64key,...`, newest first; ValueError naming the
    entry at fault (never its key)."""
    keys = []
    for position, entry in enumerate(part.strip() for part in text.split(",")):
        key_id, separator, encoded = entry.partition(":")
        if not separator:
            raise ValueError(f"entry {position + 1} is not `id:base64key`")
        key = decode_key(encoded, name=f"the key of {key_id.strip()!r}", size_bytes_min=1)
        keys.append(SealingKey(key_id.strip(), key))
    return KeyRing(keys)


def decode_key(encoded: str, *, name: str, size_bytes_min: int = KEY_BYTES) -> bytes:
    """A key from its setting, base64 of at least `size_bytes_min` bytes; a ValueError
    names the setting (`name`), never the key."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} is not base64") from None
    if len(key) < size_bytes_min:
        raise ValueError(f"{name} needs at least {size_bytes_min} bytes")
    return key


def _parses_as_key_ring(value: SecretStr) -> SecretStr:
    parse_key_ring(value.get_secret_value())  # its ValueError never shows a key
    return value


# A settings field holding a ring in the `id:base64key,...` format, checked at start.
KeyRingSetting = Annotated[
    SecretStr, Field(min_length=1, max_length=4096), AfterValidator(_parses_as_key_ring)
]


def with_legacy_key(
    ring: KeyRing | None, legacy_key: bytes | None, *, key_id: str
) -> KeyRing | None:
    """`ring` with a single key from an older setting appended as its oldest key (under
    `key_id`), unless the ring holds those bytes already; the legacy key alone without a ring."""
    if legacy_key is None:
        return ring
    if ring is None:
        return KeyRing([SealingKey(key_id, legacy_key)])
    if any(key.key == legacy_key for key in ring.keys):
        return ring
    return KeyRing([*ring.keys, SealingKey(key_id, legacy_key)])
