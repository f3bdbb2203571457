"""Money: an integer count of minor units with an ISO 4217 currency. Never a float."""

from typing import Annotated, Final

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

# ISO 4217 minor-unit exponents for the currencies Sagabank accepts. A code not listed
# here is rejected rather than guessed: a wrong exponent silently scales money by 10^n.
MINOR_UNIT_EXPONENTS: Final[dict[str, int]] = {
    "AUD": 2,
    "BHD": 3,
    "BRL": 2,
    "CAD": 2,
    "CHF": 2,
    "CLP": 0,
    "CNY": 2,
    "CZK": 2,
    "DKK": 2,
    "EUR": 2,
    "GBP": 2,
    "HKD": 2,
    "HUF": 2,
    "IDR": 2,
    "ILS": 2,
    "INR": 2,
    "ISK": 0,
    "JOD": 3,
    "JPY": 0,
    "KRW": 0,
    "KWD": 3,
    "MXN": 2,
    "NOK": 2,
    "NZD": 2,
    "OMR": 3,
    "PLN": 2,
    "RON": 2,
    "SEK": 2,
    "SGD": 2,
    "THB": 2,
    "TND": 3,
    "TRY": 2,
    "USD": 2,
    "VND": 0,
    "ZAR": 2,
}

# The ledger stores bigint; keep every amount well inside it so sums of many cannot overflow.
AMOUNT_MINOR_MAX: Final[int] = 10**15


def minor_unit_exponent(currency: str) -> int:
    """The number of decimal places of `currency`; KeyError for an unknown code."""
    return MINOR_UNIT_EXPONENTS[currency]


def display_amount(amount_minor: int, currency: str) -> str:
    """`-1,234.50 EUR`, for people (the console, the CLI): any signed count of minor units,
    grouped by thousands, without floats; a currency not listed shows its minor units."""
    exponent = MINOR_UNIT_EXPONENTS.get(currency)
    if exponent is None:
        return f"{amount_minor:,} (minor units) {currency}"
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    decimals = f".{fraction:0{exponent}d}" if exponent else ""
    return f"{sign}{whole:,}{decimals} {currency}"


def _known_currency(code: str) -> str:
    if code not in MINOR_UNIT_EXPONENTS:
        raise ValueError(f"unknown or unsupported ISO 4217 currency code: {code!r}")
    return code


CurrencyCode = Annotated[
    str,
    Field(min_length=3, max_length=3, pattern=r"^[A-Z]{3}$", examples=["EUR"]),
    AfterValidator(_known_currency),
]

# strict=True: "100" or 100.0 are refused, so a float can never sneak into a money path.
AmountMinor = Annotated[int, Field(gt=0, le=AMOUNT_MINOR_MAX, strict=True, examples=[1250])]


class Money(BaseModel):
    """An amount in minor units (cents for EUR, yen for JPY, fils for KWD) and its currency."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    amount_minor: AmountMinor
    currency: CurrencyCode

    def format(self) -> str:
        """Human-readable form, e.g. `12.50 EUR`, computed without floats."""
        exponent = minor_unit_exponent(self.currency)
        if exponent == 0:
            return f"{self.amount_minor} {self.currency}"
        whole, fraction = divmod(self.amount_minor, 10**exponent)
        return f"{whole}.{fraction:0{exponent}d} {self.currency}"
