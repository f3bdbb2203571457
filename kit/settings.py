"""Settings every service has. Only a service's `main.py` reads them; the rest gets values."""

from pydantic import Field, PostgresDsn
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """Subclass per service with its own `env_prefix` (e.g. `ACCOUNTS_`).

    `database_url` has no default: a service that does not know its database must not start.
    """

    model_config = SettingsConfigDict(extra="ignore", frozen=True)

    database_url: PostgresDsn
    database_pool_size: int = Field(default=10, ge=1, le=100)
    log_level: str = Field(default="info", pattern=r"^(debug|info|warning|error)$")
    # None: JSON when stderr is not a terminal, coloured console lines when it is.
    log_json: bool | None = None
    request_body_max_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)

    def async_database_url(self) -> str:
        """The URL with the asyncpg driver, whatever scheme the operator wrote."""
        return to_asyncpg_url(str(self.database_url))


def to_asyncpg_url(url: str) -> str:
    scheme, separator, rest = url.partition("://")
    assert separator, f"not a URL: {url!r}"
    if scheme in ("postgres", "postgresql", "postgresql+asyncpg"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"unsupported database URL scheme {scheme!r}; use postgresql://")
