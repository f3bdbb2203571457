"""The issuer's signing keys: every `*.pem` of a directory is published, one of them signs.

Rotation, with no token refused on the way:
1. add the new key's file (published in the JWKS, not signing) and restart;
2. after the verifiers' JWKS cache TTL, make it active (`ACCOUNTS_SIGNING_KEY_ACTIVE`);
3. after the access-token lifetime, remove the old file: its tokens have all expired.
"""

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from kit.auth import Jwk, StaticKeySource
from kit.token_signing import SigningKey

# More keys than this in the directory is a mistake, not a rotation.
SIGNING_KEYS_MAX: Final = 10
_KEY_FILE_BYTES_MAX: Final = 16 * 1024
# Parsing a key checks it (~40 ms of CPU). The same bytes always make the same key, so an
# app built again in one process (each accounts test builds one) parses a file once; a
# rotated file has other bytes and is parsed anew. Bounded: rotations never grow it.
_parsed_key: Final = functools.lru_cache(maxsize=2 * SIGNING_KEYS_MAX)(SigningKey.from_private_pem)


class SigningKeysError(Exception):
    """The key directory cannot give the service a key to sign with: it must not start."""


@dataclass(frozen=True)
class SigningKeys:
    """The keys a directory holds, by file stem, and the one that signs."""

    by_name: dict[str, SigningKey]
    active_name: str

    @property
    def active(self) -> SigningKey:
        return self.by_name[self.active_name]

    def jwks(self) -> dict[str, list[dict[str, Any]]]:
        """The JWKS document: public halves only, in a stable order."""
        return {"keys": [self.by_name[name].public_jwk() for name in sorted(self.by_name)]}

    def public_keys(self) -> dict[str, Jwk]:
        return {key.kid: key.public_jwk() for key in self.by_name.values()}

    def key_source(self) -> StaticKeySource:
        """For verifying this service's own tokens without asking itself over HTTP."""
        return StaticKeySource(self.public_keys())


def load_signing_keys(directory: Path | None, *, active: str | None) -> SigningKeys:
    """Every `*.pem` in `directory`; `active` names the signer by file stem and may be
    omitted when there is exactly one key."""
    if directory is None:
        raise SigningKeysError("set ACCOUNTS_SIGNING_KEYS_DIR to a directory of RSA keys")
    if not directory.is_dir():
        raise SigningKeysError(f"the signing keys directory {directory} does not exist")
    paths = sorted(directory.glob("*.pem"))
    if not paths:
        raise SigningKeysError(f"no *.pem key in {directory}")
    if len(paths) > SIGNING_KEYS_MAX:
        raise SigningKeysError(f"{len(paths)} keys in {directory}; at most {SIGNING_KEYS_MAX}")
    by_name: dict[str, SigningKey] = {}
    for path in paths:
        if path.stat().st_size > _KEY_FILE_BYTES_MAX:
            raise SigningKeysError(f"{path.name} is too large to be an RSA key")
        try:
            by_name[path.stem] = _parsed_key(path.read_bytes())
        except (ValueError, TypeError, AssertionError) as error:
            # The message names the file, never its content.
            raise SigningKeysError(f"{path.name} is not an unencrypted RSA private key") from error
    kids = [key.kid for key in by_name.values()]
    if len(set(kids)) != len(kids):
        raise SigningKeysError(f"two files in {directory} hold the same key")
    if active is None:
        if len(by_name) != 1:
            raise SigningKeysError(
                f"{len(by_name)} keys in {directory}: name the signing one with "
                "ACCOUNTS_SIGNING_KEY_ACTIVE"
            )
        (active,) = by_name
    if active not in by_name:
        raise SigningKeysError(f"the active key {active!r} is not in {directory}")
    return SigningKeys(by_name=by_name, active_name=active)
