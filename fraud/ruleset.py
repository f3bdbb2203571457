"""The versioned ruleset: thresholds and each rule's parameters and points, read from TOML.

Pure (no SQLAlchemy, no FastAPI). A ruleset that does not parse or validate is refused
with `RulesetError`, so a broken file stops the service at startup instead of scoring.
"""

import tomllib
from pathlib import Path
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.fraud import SCORE_MAX
from contracts.money import MINOR_UNIT_EXPONENTS, AmountMinor, CurrencyCode

DEFAULT_RULESET_PATH = Path(__file__).parent / "rulesets" / "default.toml"

# A ruleset is a page of parameters; anything larger is not one.
RULESET_FILE_BYTES_MAX = 256 * 1024

Points = Annotated[int, Field(ge=0, le=SCORE_MAX)]
Threshold = Annotated[int, Field(ge=1, le=SCORE_MAX)]

# The typical amount is the median of at most this many of the account's last completed
# transfers: enough for a stable median, small enough to keep one row per account.
AMOUNT_HISTORY_MAX = 50


class RulesetError(Exception):
    """The ruleset file is missing, is not TOML, or breaks a rule of its schema."""


class _Frozen(BaseModel):
    # strict: `points = 40.0` or `"40"` in the file is a mistake, not a number to coerce.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class AmountRule(_Frozen):
    """Fires when the amount is at least the threshold for its currency."""

    points: Points
    # Every currency Sagabank accepts must be listed: a currency without a threshold
    # would make its transfers invisible to the rule.
    threshold_minor: dict[CurrencyCode, AmountMinor]

    @model_validator(mode="after")
    def _every_currency_covered(self) -> Self:
        missing = sorted(set(MINOR_UNIT_EXPONENTS) - set(self.threshold_minor))
        if missing:
            raise ValueError(f"threshold_minor lacks currencies: {', '.join(missing)}")
        return self


class VelocityRule(_Frozen):
    """Fires when the source already had many transfers in the last hour or the last day.

    A transfer counts from the moment it is scored (so a burst in flight is seen at once)
    unless it ended without moving money.
    """

    points: Points
    hour_transfers_min: int = Field(ge=1, le=10_000)
    day_transfers_min: int = Field(ge=1, le=100_000)

    @model_validator(mode="after")
    def _day_not_below_hour(self) -> Self:
        if self.day_transfers_min < self.hour_transfers_min:
            raise ValueError("velocity day_transfers_min must not be below hour_transfers_min")
        return self


class AmountAboveTypicalRule(_Frozen):
    """Fires when the amount is far above the source's typical (median) completed amount.

    Far means both: at least `median_multiple` times the median, and more than
    `spread_multiple` spreads (median absolute deviations) above it. Quiet until the
    account has `history_min` completed transfers in the currency.
    """

    points: Points
    history_min: int = Field(ge=1, le=AMOUNT_HISTORY_MAX)
    median_multiple: int = Field(ge=2, le=1_000)
    spread_multiple: int = Field(ge=1, le=1_000)


class BrandNewAccountRule(AmountRule):
    """Fires when the source was first seen less than `age_seconds_max` ago (or never) and
    the amount is at least the threshold of its currency."""

    age_seconds_max: int = Field(ge=60, le=366 * 24 * 3600)


class RecentDeclinesRule(_Frozen):
    """Fires when the source had at least `declines_min` declined transfers in the last day."""

    points: Points
    declines_min: int = Field(ge=1, le=1_000)


class RoundAmountRule(_Frozen):
    """Fires when the amount is a whole multiple of `multiple_major` major units and the
    source already had `earlier_transfers_min` such round amounts in the last hour (a burst;
    0 makes every round amount fire)."""

    points: Points
    multiple_major: int = Field(ge=1, le=10**9)
    earlier_transfers_min: int = Field(ge=0, le=1_000)


class DenyListRule(_Frozen):
    """Fires when the source or the target is on the deny-list (a table operators keep)."""

    points: Points


class Rules(_Frozen):
    deny_list: DenyListRule
    large_amount: AmountRule
    very_large_amount: AmountRule
    velocity: VelocityRule
    amount_above_typical: AmountAboveTypicalRule
    first_counterparty_large: AmountRule
    brand_new_account: BrandNewAccountRule
    recent_declines: RecentDeclinesRule
    round_amount: RoundAmountRule

    @model_validator(mode="after")
    def _very_large_above_large(self) -> Self:
        for currency, large_minor in self.large_amount.threshold_minor.items():
            if self.very_large_amount.threshold_minor[currency] <= large_minor:
                raise ValueError(
                    f"very_large_amount threshold for {currency} must exceed large_amount's"
                )
        return self


class Ruleset(_Frozen):
    version: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    review_at: Threshold
    decline_at: Threshold
    rules: Rules

    @model_validator(mode="after")
    def _review_below_decline(self) -> Self:
        if self.review_at >= self.decline_at:
            raise ValueError("review_at must be below decline_at")
        return self


def load_ruleset(path: Path) -> Ruleset:
    """Read and validate a ruleset file; `RulesetError` names the file and what is wrong."""
    try:
        size_bytes = path.stat().st_size
        if size_bytes > RULESET_FILE_BYTES_MAX:
            raise RulesetError(
                f"fraud ruleset {path} is {size_bytes} bytes; at most "
                f"{RULESET_FILE_BYTES_MAX} are accepted"
            )
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise RulesetError(f"cannot read fraud ruleset {path}: {error}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise RulesetError(f"fraud ruleset {path} is not valid TOML: {error}") from error
    try:
        return Ruleset.model_validate(document)
    except ValidationError as error:
        raise RulesetError(f"fraud ruleset {path} is invalid: {error}") from error
