from pydantic import Field
from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ACCOUNTS_", extra="ignore", frozen=True)

    # A batch of 1,000 ledger transfers is about 300 KB of JSON.
    request_body_max_bytes: int = Field(default=1024 * 1024, ge=1024, le=16 * 1024 * 1024)
    # The background task that voids expired holds (they already count for nothing in
    # balances; the sweep makes the stored totals and the journal say so too).
    hold_sweep_enabled: bool = True
    hold_sweep_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    hold_sweep_batch_size: int = Field(default=500, ge=1, le=1000)
