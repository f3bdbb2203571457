"""Where a profile's bank is and the customer's tokens for it, kept under the user's config
directory: `profiles/<name>.json` (the URLs, no secret) and `credentials/<name>.json` (the
tokens, mode 0600). docs/decisions/0041-everyday-banking-cli.md says why."""

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import click
from pydantic import BaseModel, Field, ValidationError

from sagabank.bankclient import BankError, service_urls
from sagabank.config import LauncherSettings

CONFIG_DIR_VARIABLE = "SAGABANK_CONFIG_DIR"
PROFILE_DEFAULT = "default"
PROFILE_NAME_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# The services a customer talks to, and their ports when a URL names only the host.
BANKING_PORTS = {"accounts": 8001, "transactions": 8002, "notifications": 8004}
# A token this close to its expiry is renewed first: the request must not outlive it.
EXPIRY_MARGIN_SECONDS = 30
_FILE_MODE = 0o600
_DIRECTORY_MODE = 0o700


class Profile(BaseModel):
    """The base URL of each service of one bank."""

    urls: dict[str, str] = Field(max_length=len(BANKING_PORTS))


class Credentials(BaseModel):
    """A customer's tokens; `expires_at` is the access token's. `email` is the name the
    password grant signed in with (the browser's sign-in page does not tell it: None)."""

    email: str | None = Field(default=None, max_length=320)
    access_token: str = Field(max_length=4096)
    refresh_token: str | None = Field(default=None, max_length=512)
    expires_at: datetime

    @property
    def expired(self) -> bool:
        margin = timedelta(seconds=EXPIRY_MARGIN_SECONDS)
        return datetime.now(UTC) + margin >= self.expires_at


def config_dir() -> Path:
    """SAGABANK_CONFIG_DIR, else the platform's (e.g. ~/.config/sagabank)."""
    configured = os.environ.get(CONFIG_DIR_VARIABLE)
    return Path(configured) if configured else Path(click.get_app_dir("sagabank"))


def check_profile_name(name: str) -> str:
    if not re.fullmatch(PROFILE_NAME_PATTERN, name):
        raise click.UsageError(f"a profile name is 1-64 of A-Z a-z 0-9 _ . - (not {name!r})")
    return name


def parse_urls(values: tuple[str, ...]) -> dict[str, str]:
    """`--url` values: `SERVICE=URL` names one service's base URL; a bare `http(s)://HOST`
    names the host, each service on its default port there."""
    urls: dict[str, str] = {}
    for value in values:
        name, separator, url = value.partition("=")
        if separator and name in BANKING_PORTS:
            urls[name] = _checked_url(url).rstrip("/")
            continue
        parts = urlsplit(_checked_url(value))
        if parts.port is not None or parts.path.strip("/"):
            raise click.UsageError(
                f"--url {value}: a bare URL names a host (its services on ports "
                f"{', '.join(map(str, BANKING_PORTS.values()))}); name one service with "
                f"SERVICE=URL ({', '.join(BANKING_PORTS)})"
            )
        for service, port in BANKING_PORTS.items():
            urls.setdefault(service, f"{parts.scheme}://{parts.hostname}:{port}")
    return urls


def _checked_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.UsageError(f"--url {url}: not an http(s) URL")
    return url


def _profile_path(name: str) -> Path:
    return config_dir() / "profiles" / f"{name}.json"


def credentials_path(name: str) -> Path:
    return config_dir() / "credentials" / f"{name}.json"


def bank_urls(profile: str, given: dict[str, str]) -> dict[str, str]:
    """The URLs given, over the profile's remembered ones, over the local bank's."""
    local = service_urls(LauncherSettings())
    urls = {service: local[service] for service in BANKING_PORTS}
    path = _profile_path(profile)
    if path.is_file():
        try:
            urls.update(Profile.model_validate_json(path.read_bytes()).urls)
        except ValidationError:
            raise BankError(f"{path} is not a profile; remove it", exit_code=1) from None
    urls.update(given)
    return urls


def remember_urls(profile: str, urls: dict[str, str]) -> None:
    _write_private(_profile_path(profile), Profile(urls=urls).model_dump_json(indent=2))


def load_credentials(profile: str) -> Credentials | None:
    path = credentials_path(profile)
    if not path.is_file():
        return None
    try:
        return Credentials.model_validate_json(path.read_bytes())
    except ValidationError:
        raise BankError(f"{path} is not a credentials file; `sagabank login` again") from None


def save_credentials(profile: str, credentials: Credentials) -> None:
    _write_private(credentials_path(profile), credentials.model_dump_json(indent=2))


def forget_credentials(profile: str) -> None:
    credentials_path(profile).unlink(missing_ok=True)


def _write_private(path: Path, text: str) -> None:
    """Write through a 0600 temporary file renamed over the old one: a reader never sees
    half a file, and the tokens are never readable by others, not even for a moment."""
    path.parent.mkdir(mode=_DIRECTORY_MODE, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # a leftover keeps its mode through O_CREAT
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, _FILE_MODE)
    with os.fdopen(descriptor, "w") as file:
        file.write(text)
    os.replace(temporary, path)
