from pathlib import Path

from pydantic_settings import SettingsConfigDict

from kit.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="FRAUD_", extra="ignore", frozen=True)

    # None: the ruleset shipped with the package (fraud/rulesets/default.toml).
    ruleset_path: Path | None = None
    # A candidate ruleset evaluated beside the live one on every new transfer, its verdict
    # recorded and logged but never acted on. None: no shadow evaluation.
    shadow_ruleset_path: Path | None = None
