"""Checkpoints of an audit chain's head, signed with the chain key and kept outside the
service's database, in a directory of write-once files (docs/decisions/0016).

A checkpoint pins every event up to its sequence: cutting off the tail after it, or
rewriting the chain up to it, no longer verifies. Each file is named by the sequence it
checkpoints and is never rewritten: replicas publishing the same head race harmlessly
(the first wins), and the newest file is the one with the highest sequence.
"""

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Final

from pydantic import ValidationError

from contracts.audit import AuditCheckpoint
from kit.sealing import decode_key

CHAIN_KEY_BYTES_MIN: Final = 32
# Domain separation: a checkpoint's signature can never pass for an event's hash.
_SIGNATURE_CONTEXT: Final = b"sagabank.audit.checkpoint.v1\n"
_FILE_NAME: Final = re.compile(r"^(\d{20})\.json$")
_FILE_BYTES_MAX: Final = 4096


class ChainKeyError(ValueError):
    """A chain key setting that is not base64 of at least 32 bytes."""


def decode_chain_key(encoded: str) -> bytes:
    """The chain key from its setting (base64 of at least 32 random bytes)."""
    try:
        return decode_key(encoded, name="the audit chain key", size_bytes_min=CHAIN_KEY_BYTES_MIN)
    except ValueError as error:
        raise ChainKeyError(str(error)) from None


def _signed_bytes(service: str, sequence: int, head_hash: str, published_at: datetime) -> bytes:
    fields = {
        "service": service,
        "sequence": sequence,
        "hash": head_hash,
        "published_at": published_at.isoformat(timespec="microseconds"),
    }
    return _SIGNATURE_CONTEXT + json.dumps(fields, sort_keys=True).encode()


def _signature(key: bytes, message: bytes) -> str:
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()


def sign_checkpoint(
    key: bytes, *, service: str, sequence: int, head_hash: str, published_at: datetime
) -> AuditCheckpoint:
    """The checkpoint of a chain whose newest event is `sequence` with hash `head_hash`."""
    assert published_at.tzinfo is not None, "checkpoint times are timezone-aware"
    message = _signed_bytes(service, sequence, head_hash, published_at)
    return AuditCheckpoint(
        service=service,
        sequence=sequence,
        hash=head_hash,
        published_at=published_at,
        signature=_signature(key, message),
    )


def checkpoint_is_signed(key: bytes, checkpoint: AuditCheckpoint) -> bool:
    """Whether `checkpoint` carries a valid signature under `key` (compared in constant time)."""
    message = _signed_bytes(
        checkpoint.service, checkpoint.sequence, checkpoint.hash, checkpoint.published_at
    )
    return hmac.compare_digest(_signature(key, message), checkpoint.signature)


@dataclass(frozen=True)
class Latest:
    """The newest checkpoint file: its sequence, and its content (None if unreadable)."""

    sequence: int
    checkpoint: AuditCheckpoint | None


class CheckpointDirectory:
    """A directory of write-once checkpoint files, `<sequence, 20 digits>.json`."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _file(self, sequence: int) -> Path:
        return self.path / f"{sequence:020d}.json"

    def has(self, sequence: int) -> bool:
        return self._file(sequence).exists()

    def publish(self, checkpoint: AuditCheckpoint) -> bool:
        """Write `checkpoint` unless its sequence has a file already; True if this wrote it.

        Written to a temporary file, flushed to disk, then hard-linked to its name: the
        link fails if the name exists (another replica was first), and nobody ever sees
        a half-written checkpoint.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        temporary = self.path / f".{uuid.uuid4().hex}.tmp"
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(checkpoint.model_dump_json().encode())
                file.flush()
                os.fsync(file.fileno())
            try:
                os.link(temporary, self._file(checkpoint.sequence))
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()
        return True

    def latest(self) -> Latest | None:
        """The checkpoint with the highest sequence, None when there is none."""
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return None
        sequences = [int(match[1]) for name in names if (match := _FILE_NAME.match(name))]
        if not sequences:
            return None
        sequence = max(sequences)
        try:
            with self._file(sequence).open("rb") as file:
                content = file.read(_FILE_BYTES_MAX + 1)
            checkpoint = AuditCheckpoint.model_validate_json(content)
        except (OSError, ValidationError):
            return Latest(sequence, None)
        return Latest(sequence, checkpoint if checkpoint.sequence == sequence else None)
