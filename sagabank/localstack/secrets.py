"""Development secrets for the local bank, generated once into the state directory.

A secret must outlive a restart (a sealed callback secret could no longer be opened under a
new key), so each is written once, readable by the owner only, and read back afterwards.
Production takes the same values from its secret store through the services' settings.
"""

import base64
import os
import secrets
from pathlib import Path

SECRETS_DIR_NAME = "secrets"


def dev_secret(state_dir: Path, name: str, *, size_bytes: int = 32) -> str:
    """The base64 secret called `name` under `state_dir`, created on first use."""
    directory = state_dir / SECRETS_DIR_NAME
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / name
    if not path.exists():
        _write_once(path, base64.b64encode(secrets.token_bytes(size_bytes)))
    return path.read_text().strip()


# The id of the one key of a dev key ring (kit.sealing's `id:base64key` format).
DEV_KEY_ID = "dev"


def dev_key_ring(state_dir: Path, name: str) -> str:
    """A key ring of one dev key, `dev:<base64>`, from the secret called `name` (created
    on first use): what a service's `<PREFIX>_SECRETS_KEYS` takes."""
    return f"{DEV_KEY_ID}:{dev_secret(state_dir, name)}"


def _write_once(path: Path, content: bytes) -> None:
    """Create `path` (owner-only) holding `content`, unless it exists by now.

    O_EXCL: two launchers racing on a fresh state directory keep the first value.
    """
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "wb") as file:
        file.write(content)


SIGNING_KEYS_DIR_NAME = "signing-keys"
DEV_SIGNING_KEY_NAME = "dev"


def dev_signing_keys_dir(state_dir: Path) -> Path:
    """`<state>/signing-keys/`, holding the dev RSA key `dev.pem` (created on first use).

    The key outlives restarts so tokens handed out before one stay valid after it. The
    accounts service publishes every key in the directory and signs with the one named by
    ACCOUNTS_SIGNING_KEY_ACTIVE (or the only one): to rotate by hand, add a key, point
    that setting at it, and remove the old one once its tokens have expired.
    """
    # Imported here: it pulls in cryptography, which `sagabank --help` does not need.
    from kit.token_signing import SigningKey

    directory = state_dir / SIGNING_KEYS_DIR_NAME
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = directory / f"{DEV_SIGNING_KEY_NAME}.pem"
    if not path.exists():
        _write_once(path, SigningKey.generate().private_pem)
    return directory
