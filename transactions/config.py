from pydantic import Field
from pydantic_settings import SettingsConfigDict

from contracts.transfers import REVIEW_TIMEOUT_SECONDS_DEFAULT, TASK_QUEUE
from kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="TRANSACTIONS_", extra="ignore", frozen=True)

    temporal_address: str = Field(default="127.0.0.1:7233", min_length=1, max_length=255)
    temporal_namespace: str = Field(default="default", min_length=1, max_length=255)
    task_queue: str = Field(default=TASK_QUEUE, min_length=1, max_length=255)
    # How long a transfer in review waits for a reviewer before it expires (30 days at most).
    review_timeout_seconds: int = Field(default=REVIEW_TIMEOUT_SECONDS_DEFAULT, gt=0, le=30 * 86400)
    # Every call to Temporal (connect, start, signal) gives up after this long.
    temporal_rpc_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
