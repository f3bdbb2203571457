"""How the banking commands speak: tables for people, NDJSON (one JSON object per line)
with `--json`, amounts in the currency's units without floats, and the bank's refusals
shown plainly (on --json, the problem object itself on stderr)."""

import functools
import sys
import uuid
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from decimal import Decimal, InvalidOperation
from typing import Any, NoReturn, ParamSpec

import click

from contracts.auth import Scope
from contracts.money import AMOUNT_MINOR_MAX, MINOR_UNIT_EXPONENTS
from sagabank.bankclient import BankError
from sagabank.banking import profiles
from sagabank.banking.session import ITEMS_MAX_DEFAULT, ApiProblem, ndjson, open_session

Parameters = ParamSpec("Parameters")
_AMOUNT_LENGTH_MAX = 40


def amount_minor_of(amount: str, currency: str) -> int:
    """`25.50` EUR as 2550 minor units: exact decimal arithmetic, never a float."""
    exponent = MINOR_UNIT_EXPONENTS.get(currency)
    if exponent is None:
        raise click.BadParameter(f"unknown currency {currency!r}", param_hint="--currency")
    try:
        value = Decimal(amount) if len(amount) <= _AMOUNT_LENGTH_MAX else Decimal("NaN")
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise click.BadParameter(f"{amount!r} is not a positive amount", param_hint="--amount")
    scaled = value.scaleb(exponent)
    if scaled != scaled.to_integral_value():
        raise click.BadParameter(
            f"{amount} {currency}: {currency} has {exponent} decimal places",
            param_hint="--amount",
        )
    if scaled > AMOUNT_MINOR_MAX:
        raise click.BadParameter(f"{amount} {currency} is more than the bank moves at once")
    return int(scaled)


def chosen_idempotency_key(given: str | None) -> str:
    """The key given, else a new one printed on stderr so that the person can retry safely."""
    if given is not None:
        return given
    key = str(uuid.uuid4())
    click.echo(f"idempotency key: {key} (send again with --idempotency-key {key})", err=True)
    return key


def idempotency_key_option(function: Callable[Parameters, None]) -> Callable[Parameters, None]:
    return click.option(
        "--idempotency-key",
        default=None,
        help="Send again with the same key and the bank moves the money once "
        "[default: a new one, printed on stderr].",
    )(function)


def table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    """Left-aligned columns under their headers, two spaces apart."""
    lines = [list(headers), *(list(row) for row in rows)]
    widths = [max(len(line[column]) for line in lines) for column in range(len(headers))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in lines
    ]


def fields(pairs: Iterable[tuple[str, str]]) -> list[str]:
    """`name   value` lines for one object, names aligned."""
    listed = list(pairs)
    width = max(len(name) for name, _ in listed)
    return [f"{name.ljust(width)}  {value}".rstrip() for name, value in listed]


def emit(
    records: Iterable[dict[str, Any]],
    as_json: bool,
    lines: Callable[[], list[str]],
    *,
    quiet: bool = False,
) -> None:
    """The records' ids one per line with --quiet, NDJSON of them with --json, else the
    lines for people."""
    if quiet:
        for record in records:
            click.echo(record["id"])
        return
    if as_json:
        for record in records:
            click.echo(ndjson(record))
        return
    text = lines()
    if text:
        click.echo("\n".join(text))


def fail(error: BankError, as_json: bool) -> NoReturn:
    if as_json:
        problem = (
            error.problem
            if isinstance(error, ApiProblem)
            else {"type": "about:blank", "title": str(error)}
        )
        click.echo(ndjson(problem), err=True)
    else:
        click.echo(f"error: {error}", err=True)
    sys.exit(error.exit_code)


def profile_option(function: Callable[Parameters, None]) -> Callable[Parameters, None]:
    return click.option(
        "--profile",
        envvar="SAGABANK_PROFILE",
        default=profiles.PROFILE_DEFAULT,
        show_default=True,
        callback=lambda _context, _parameter, value: profiles.check_profile_name(value),
        help="Which bank and login to use (see `sagabank login`).",
    )(function)


def json_option(function: Callable[Parameters, None]) -> Callable[Parameters, None]:
    return click.option(
        "--json", "as_json", is_flag=True, help="NDJSON for scripts: one JSON object a line."
    )(function)


def quiet_option(function: Callable[Parameters, None]) -> Callable[Parameters, None]:
    """`-q/--quiet` (docker's): only the ids of what was created or listed, for `$(...)`."""
    return click.option(
        "-q", "--quiet", is_flag=True, help="Print only the id(s), one per line (over --json)."
    )(function)


def operator_token_option(
    scope: Scope,
) -> Callable[[Callable[Parameters, None]], Callable[Parameters, None]]:
    """`--token` (or SAGABANK_TOKEN): an operator's token with `scope`; unset, the command
    fetches the operator client's when it runs (`launcher_operator_token`)."""
    return click.option(
        "--token",
        "access_token",
        envvar="SAGABANK_TOKEN",
        default=None,
        help=f"A token with {scope.value} [default: the operator client's, fetched now].",
    )


def items_max_option(function: Callable[Parameters, None]) -> Callable[Parameters, None]:
    """`--limit`: how many items a listing shows at most (it follows the API's pages)."""
    return click.option(
        "--limit",
        "items_max",
        type=click.IntRange(min=1, max=10_000),
        default=ITEMS_MAX_DEFAULT,
        show_default=True,
        help="At most this many.",
    )(function)


def url_option(function: Callable[Parameters, None]) -> Callable[Parameters, None]:
    return click.option(
        "--url",
        "url_values",
        multiple=True,
        metavar="URL",
        help="The bank: http(s)://HOST (its services on their default ports) or "
        "SERVICE=URL (accounts, transactions, notifications); repeatable "
        "[default: the profile's, else the local bank's].",
    )(function)


def banking_command(
    function: Callable[..., None],
) -> Callable[..., None]:
    """Hand the command a session on its profile's bank (`session`) and render any
    BankError it raises; the command takes `profile`, `as_json` and optionally `url_values`."""

    @functools.wraps(function)
    def run(*arguments: Any, profile: str, as_json: bool, **options: Any) -> None:
        given = profiles.parse_urls(options.pop("url_values", ()))
        try:
            session = open_session(profile, given)
            with closing(session.http):
                function(*arguments, session=session, as_json=as_json, **options)
        except BankError as error:
            fail(error, as_json)

    return run
