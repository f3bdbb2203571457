"""The `sagabank` command line."""

import asyncio
import os
import sys

import click
import httpx
from pydantic import ValidationError

from contracts.accounts import LEDGER_INVARIANTS_PATH, LedgerInvariants
from contracts.money import MINOR_UNIT_EXPONENTS
from sagabank.config import SERVICES, LauncherSettings

DEFAULT_PORTS = {"accounts": 8001, "transactions": 8002, "fraud": 8003, "notifications": 8004}


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Sagabank: a banking transaction service driven by a Temporal saga.

    `sagabank up` runs the whole bank on this machine; the other commands run one
    component each (as containers do) or help an operator.
    """


@main.command()
def up() -> None:
    """Start PostgreSQL, Temporal (with its web UI), the four services and the worker.

    Runs in the foreground with each line prefixed by its source; Ctrl-C (or SIGTERM)
    stops everything. Configure with SAGABANK_* variables (see the README): e.g.
    SAGABANK_DATABASE_URL / SAGABANK_TEMPORAL_ADDRESS use external servers.
    """
    from sagabank.launcher import Launcher

    settings = LauncherSettings()
    sys.exit(asyncio.run(Launcher(settings).run()))


@main.command()
def down() -> None:
    """Stop a bank started by `sagabank up` from this state directory."""
    from sagabank.launcher import down as stop_bank

    click.echo(stop_bank(LauncherSettings().state_dir))


@main.command()
def status() -> None:
    """Show whether each component of a running bank is ready."""
    from sagabank.launcher import read_state

    settings = LauncherSettings()
    state = read_state(settings.state_dir)
    if state is None:
        click.echo("no bank is running from this state directory")
        sys.exit(1)
    healthy = True
    with httpx.Client(timeout=2.0) as http:
        for service in SERVICES:
            url = f"{settings.service_url(service)}/readyz"
            try:
                answer = str(http.get(url).status_code)
            except httpx.HTTPError as error:
                answer = type(error).__name__
            healthy = healthy and answer == "200"
            click.echo(f"{service:<14} {url:<40} {answer}")
    click.echo(f"{'temporal':<14} {settings.temporal_target}")
    if settings.temporal_ui_url:
        click.echo(f"{'temporal-ui':<14} {settings.temporal_ui_url}")
    sys.exit(0 if healthy else 1)


@main.command()
@click.argument("service", type=click.Choice(SERVICES))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=None, help="Port (default: the service's own).")
def serve(service: str, host: str, port: int | None) -> None:
    """Run one service under uvicorn; its settings come from <SERVICE>_* variables."""
    import uvicorn

    uvicorn.run(
        f"{service}.main:create_app",
        factory=True,
        host=host,
        port=port or DEFAULT_PORTS[service],
        # Logging is ours (structlog JSON, one access line per request): keep uvicorn's off.
        log_config=None,
        access_log=False,
        proxy_headers=False,
        timeout_graceful_shutdown=10,
    )


@main.command()
def worker() -> None:
    """Run the Temporal worker of the transfer saga; settings from WORKER_* variables."""
    from workflows.worker import main as run_worker

    run_worker()


@main.command()
@click.argument("service", type=click.Choice([*SERVICES, "all"]))
@click.option(
    "--database-url", default=None, help="Database to migrate (default: <SERVICE>_DATABASE_URL)."
)
def migrate(service: str, database_url: str | None) -> None:
    """Apply a service's Alembic migrations up to head (safe to run again)."""
    from kit.migrations import upgrade_to_head
    from sagabank.launcher import migrations_path

    targets = SERVICES if service == "all" else (service,)
    if database_url and len(targets) > 1:
        raise click.UsageError("--database-url names one database; migrate one service")
    for target in targets:
        url = database_url or os.environ.get(f"{target.upper()}_DATABASE_URL")
        if not url:
            raise click.UsageError(f"set {target.upper()}_DATABASE_URL or --database-url")
        upgrade_to_head(migrations_path(target), url)
        click.echo(f"{target}: at head")


@main.group()
def ledger() -> None:
    """Operate on the ledger that the accounts service keeps."""


def _amount(amount_minor: int, currency: str) -> str:
    """`1,234.50 EUR` from minor units, without floats; raw minor units if unknown."""
    exponent = MINOR_UNIT_EXPONENTS.get(currency)
    if exponent is None:
        return f"{amount_minor:,} (minor units) {currency}"
    sign = "-" if amount_minor < 0 else ""
    whole, fraction = divmod(abs(amount_minor), 10**exponent)
    decimals = f".{fraction:0{exponent}d}" if exponent else ""
    return f"{sign}{whole:,}{decimals} {currency}"


def _report(invariants: LedgerInvariants) -> list[str]:
    verdict = "OK" if invariants.ok else "BROKEN"
    lines = [f"Ledger invariants at {invariants.checked_at.isoformat()}: {verdict}"]
    if not invariants.currencies:
        lines.append("  no accounts yet")
    for totals in invariants.currencies:
        for phase, debits, credits, balanced in (
            (
                "posted",
                totals.debits_posted_minor,
                totals.credits_posted_minor,
                totals.posted_balanced,
            ),
            (
                "pending",
                totals.debits_pending_minor,
                totals.credits_pending_minor,
                totals.pending_balanced,
            ),
        ):
            relation = "=" if balanced else "!="
            lines.append(
                f"  {totals.currency} {phase:<7} debits {_amount(debits, totals.currency)}"
                f" {relation} credits {_amount(credits, totals.currency)}"
                f"  {'ok' if balanced else 'UNBALANCED'}"
            )
    accounts = invariants.accounts
    lines.append(
        f"  accounts: {accounts.accounts_checked:,} checked, {accounts.mismatched_count:,}"
        " whose totals differ from their journal entries"
    )
    lines.extend(f"    mismatch: {account_id}" for account_id in accounts.mismatched_account_ids)
    if accounts.mismatched_count > len(accounts.mismatched_account_ids):
        lines.append(
            f"    ... and {accounts.mismatched_count - len(accounts.mismatched_account_ids):,} more"
        )
    orphans = invariants.entries_without_transfer_count
    lines.append(
        f"  journal entries without their transfer: {orphans:,}{'  BROKEN' if orphans else ''}"
    )
    lines.append(
        f"  expired holds awaiting the sweeper: {invariants.expired_holds_unswept_count:,}"
    )
    return lines


@ledger.command()
@click.option(
    "--accounts-url",
    default=f"http://127.0.0.1:{DEFAULT_PORTS['accounts']}",
    show_default=True,
    help="Base URL of the accounts service.",
)
@click.option(
    "--timeout-seconds",
    type=click.FloatRange(min=0.1, max=600.0),
    default=60.0,
    show_default=True,
    help="How long to wait for the check (it reads every account and journal entry).",
)
def check(accounts_url: str, timeout_seconds: float) -> None:
    """Check the ledger's invariants: per currency, debits equal credits (posted and
    pending); each account's totals equal the sum of its journal entries.

    Exit status: 0 when they hold, 1 when one fails, 2 when the check could not run.
    """
    url = f"{accounts_url.rstrip('/')}{LEDGER_INVARIANTS_PATH}"
    try:
        with httpx.Client(timeout=timeout_seconds, follow_redirects=False) as http:
            response = http.get(url)
    except httpx.HTTPError as error:
        click.echo(f"cannot reach the accounts service at {url}: {error!r}", err=True)
        sys.exit(2)
    if response.status_code != 200:
        click.echo(f"{url} answered {response.status_code}: {response.text[:500]}", err=True)
        sys.exit(2)
    try:
        invariants = LedgerInvariants.model_validate_json(response.content)
    except ValidationError as error:
        click.echo(f"{url} answered something else than an invariants report: {error}", err=True)
        sys.exit(2)
    click.echo("\n".join(_report(invariants)))
    sys.exit(0 if invariants.ok else 1)
