"""The `sagabank` command line."""

import asyncio
import os
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NoReturn
from uuid import UUID

import click
import httpx
from pydantic import SecretStr, ValidationError

from contracts.accounts import LEDGER_INVARIANTS_PATH, LedgerInvariants
from contracts.auth import Scope
from contracts.money import display_amount
from contracts.secrets import RESEAL_LIMIT_MAX
from sagabank.bankclient import (
    BankError,
    customer_token,
    launcher_operator_token,
    service_urls,
)
from sagabank.banking.accounts import account
from sagabank.banking.deposits import deposit
from sagabank.banking.identity import customer, login, logout
from sagabank.banking.output import operator_token_option
from sagabank.banking.transfers import transfer
from sagabank.banking.webhooks import webhook
from sagabank.config import CONSOLE, SERVICES, LauncherSettings
from sagabank.progress import Progress
from sagabank.staff import staff

if TYPE_CHECKING:
    from sagabank.audit import Question

# How long `sagabank status` waits for each readiness probe.
PROBE_TIMEOUT_SECONDS = 2.0
DEFAULT_PORTS = {
    "accounts": 8001,
    "transactions": 8002,
    "fraud": 8003,
    "notifications": 8004,
    CONSOLE: 8005,
}


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
@click.option("--json", "as_json", is_flag=True, help="One JSON object: {components: [...]}.")
def status(as_json: bool) -> None:
    """Show each component of a running bank: its URL, whether it is ready (where it has a
    probe) and its metrics URL. Exit status 1 when a probed component is not ready."""
    from sagabank.launcher import read_state
    from sagabank.status import bank_status, status_lines

    settings = LauncherSettings()
    state = read_state(settings.state_dir)
    if state is None:
        click.echo("no bank is running from this state directory")
        sys.exit(1)
    recorded = state.get("metrics")
    with httpx.Client(timeout=PROBE_TIMEOUT_SECONDS) as http:
        report = bank_status(
            settings,
            recorded_metrics_urls=recorded if isinstance(recorded, dict) else None,
            environ=os.environ,
            http=http,
        )
    click.echo(report.model_dump_json(indent=2) if as_json else "\n".join(status_lines(report)))
    sys.exit(0 if report.ready else 1)


@main.command()
@click.argument("service", type=click.Choice([*SERVICES, CONSOLE]))
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=None, help="Port (default: the service's own).")
def serve(service: str, host: str, port: int | None) -> None:
    """Run one service (or the operator console) under uvicorn; its settings come from
    <SERVICE>_* variables (CONSOLE_* for the console).

    <SERVICE>_FORWARDED_ALLOW_IPS names the proxies whose X-Forwarded-For and
    X-Forwarded-Proto are believed; unset, none are."""
    import uvicorn

    # Read here, not by the app: uvicorn rewrites the client address before the app runs.
    forwarded_allow_ips = os.environ.get(f"{service.upper()}_FORWARDED_ALLOW_IPS") or None
    uvicorn.run(
        f"{service}.main:create_app",
        factory=True,
        host=host,
        port=port or DEFAULT_PORTS[service],
        # Logging is ours (structlog JSON, one access line per request): keep uvicorn's off.
        log_config=None,
        access_log=False,
        # Off unless proxies are named: otherwise uvicorn would trust 127.0.0.1 (or the
        # FORWARDED_ALLOW_IPS of whatever environment it runs in) by default.
        proxy_headers=forwarded_allow_ips is not None,
        forwarded_allow_ips=forwarded_allow_ips,
        timeout_graceful_shutdown=10,
    )


@main.command("codec-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to bind.")
@click.option("--port", type=int, default=8235, show_default=True, help="Port.")
@click.option(
    "--ui-origin",
    "ui_origins",
    multiple=True,
    required=True,
    help="The Temporal UI's origin (e.g. http://localhost:8233), allowed by CORS; repeatable.",
)
def codec_server(host: str, port: int, ui_origins: tuple[str, ...]) -> None:
    """Serve the Temporal codec endpoint (POST /decode, /encode) for the Temporal UI and CLI;
    the key ring comes from SAGABANK_PAYLOAD_KEYS. Anyone who reaches it reads every payload:
    bind it to loopback on the operator's machine (see docs/decisions/0022)."""
    import uvicorn

    from kit.payloads import create_codec_app
    from kit.sealing import parse_key_ring
    from kit.tracing import configure_tracing, instrument_app

    keys = LauncherSettings().payload_keys
    if keys is None:
        raise click.UsageError("set SAGABANK_PAYLOAD_KEYS (the worker's WORKER_PAYLOAD_KEYS)")
    configure_tracing("codec")
    app = create_codec_app(parse_key_ring(keys.get_secret_value()), allowed_origins=ui_origins)
    instrument_app(app)
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False)


@main.command()
def worker() -> None:
    """Run the Temporal worker of the transfer saga; settings from WORKER_* variables."""
    from workflows.worker import main as run_worker

    run_worker()


@main.command()
@click.argument("service", type=click.Choice([*SERVICES, "all"]))
@click.option(
    "--database-url",
    default=None,
    help="Database to migrate, as its owner role (default: <SERVICE>_MIGRATION_DATABASE_URL).",
)
@click.option(
    "--application-role",
    default=None,
    help="The role the service connects as (default: sagabank_<service>_app).",
)
def migrate(service: str, database_url: str | None, application_role: str | None) -> None:
    """Apply a service's Alembic migrations up to head as the schema's owner, then grant the
    service's application role what it needs (safe to run again)."""
    from kit import migrations
    from sagabank.launcher import migrations_path

    targets = SERVICES if service == "all" else (service,)
    if database_url and len(targets) > 1:
        raise click.UsageError("--database-url names one database; migrate one service")
    if application_role and len(targets) > 1:
        raise click.UsageError("--application-role names one role; migrate one service")
    for target in targets:
        variable = f"{target.upper()}_MIGRATION_DATABASE_URL"
        url = database_url or os.environ.get(variable)
        if not url:
            raise click.UsageError(f"set {variable} or --database-url")
        role = application_role or migrations.application_role(target)
        migrations.upgrade_to_head(migrations_path(target), url, application_role=role)
        click.echo(f"{target}: at head; {role} granted its rights")


def _fail(error: BankError) -> NoReturn:
    click.echo(f"error: {error}", err=True)
    sys.exit(error.exit_code)


@main.command()
@click.option(
    "--operator",
    "as_operator",
    is_flag=True,
    help="A token for the operator client (SAGABANK_OPERATOR_CLIENT_ID / _SECRET).",
)
@click.option("--customer", "email", metavar="EMAIL", help="A token for this customer.")
@click.option(
    "--password",
    default=None,
    help="The customer's password (asked for, unechoed, when left out).",
)
def token(as_operator: bool, email: str | None, password: str | None) -> None:
    """Print an access token from the running bank's issuer, and nothing else.

    `TOKEN=$(sagabank token --operator)` then `curl -H "Authorization: Bearer $TOKEN" ...`.
    The bank's URLs come from its state directory (SAGABANK_STATE_DIR). Exit status 1
    when the issuer refuses, 2 when it cannot be asked.
    """
    if as_operator == (email is not None):
        raise click.UsageError("choose one of --operator and --customer EMAIL")
    if as_operator and password is not None:
        raise click.UsageError("--password goes with --customer")
    settings = LauncherSettings()
    accounts_url = service_urls(settings)["accounts"]
    try:
        if email is None:
            access_token = launcher_operator_token(accounts_url, settings)
        else:
            if password is None:
                password = click.prompt("password", hide_input=True, err=True)
            access_token = customer_token(accounts_url, email, SecretStr(password))
    except BankError as error:
        _fail(error)
    click.echo(access_token)


class _Moment(click.ParamType[datetime]):
    """An ISO 8601 date or time; without a zone it is UTC."""

    name = "TIME"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> datetime:
        if isinstance(value, datetime):
            return value
        try:
            moment = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time (e.g. 2026-03-01T12:00:00Z)", param, ctx)
        return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


@main.command()
@click.option("--transfer", "transfer_id", type=click.UUID, help="Events about this transfer.")
@click.option("--account", "account_id", metavar="ID", help="Events naming this account.")
@click.option("--actor", "actor_id", metavar="ID", help="Events by this actor (a token subject).")
@click.option("--action", metavar="NAME", help="Events of this action, e.g. account.frozen.")
@click.option("--since", type=_Moment(), help="Events at or after this time.")
@click.option("--until", type=_Moment(), help="Events before this time.")
@click.option("--json", "as_json", is_flag=True, help="NDJSON, one event per line.")
@click.option(
    "--verify",
    is_flag=True,
    help="Verify every service's keyed chain against its last checkpoint instead.",
)
@click.option(
    "--export",
    "export_path",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Write every service's events of --since..--until to this NDJSON file (- for "
    "stdout) instead, service by service, oldest first.",
)
@operator_token_option(Scope.audit_read)
def audit(
    transfer_id: UUID | None,
    account_id: str | None,
    actor_id: str | None,
    action: str | None,
    since: datetime | None,
    until: datetime | None,
    as_json: bool,
    verify: bool,
    export_path: str | None,
    access_token: str | None,
) -> None:
    """One timeline of what happened, from the audit trails of all four services.

    Every filter given must match. Events are ordered by the time they occurred (then by
    service and each service's sequence). `--verify` recomputes each service's keyed hash
    chain, holds it against the service's last checkpoint, and names the first broken
    event or the events missing after the checkpoint; exit status 1 if any chain is broken.
    """
    from sagabank import audit as trail

    question = trail.Question(
        transfer_id=transfer_id,
        account_id=account_id,
        actor_id=actor_id,
        action=action,
        since=since,
        until=until,
    )
    if verify and question.params():
        raise click.UsageError("--verify checks whole chains: it takes no filter")
    if export_path is not None:
        _export_audit(question, export_path, access_token, verify=verify)
        return
    settings = LauncherSettings()
    urls = service_urls(settings)
    try:
        if access_token is None:
            access_token = launcher_operator_token(urls["accounts"], settings)
        with trail.client(access_token) as http:
            if verify:
                verifications = [trail.verify(http, name, urls[name]) for name in SERVICES]
            else:
                gathered = [trail.gather(http, name, urls[name], question) for name in SERVICES]
    except BankError as error:
        _fail(error)
    if verify:
        if as_json:
            lines = [item.model_dump_json() for item in verifications]
        else:
            lines = trail.verification_lines(verifications)
        click.echo("\n".join(lines))
        sys.exit(0 if all(item.ok for item in verifications) else 1)
    for answer in gathered:
        if answer.truncated:
            click.echo(
                f"warning: {answer.service} has more than {len(answer.events):,} matching "
                "events; narrow the question (--since/--until) to see them all",
                err=True,
            )
    events = trail.merge(gathered)
    if as_json:
        if events:
            click.echo("\n".join(trail.ndjson(events)))
        return
    click.echo("\n".join(trail.table(events)))
    if not events:
        click.echo("no audit event matches", err=True)


def _export_audit(
    question: "Question", export_path: str, access_token: str | None, *, verify: bool
) -> None:
    """`sagabank audit --export`: progress on a terminal, a summary on stderr at the end."""
    from sagabank import audit as trail

    if verify or question.params().keys() - {"since", "until"}:
        raise click.UsageError("--export takes --since and --until only")
    settings = LauncherSettings()
    urls = service_urls(settings)
    try:
        if access_token is None:
            access_token = launcher_operator_token(urls["accounts"], settings)
        with (
            trail.client(access_token) as http,
            click.open_file(export_path, "w") as sink,
            Progress("exporting the audit trails") as progress,
        ):
            counts = {
                name: trail.export(http, name, urls[name], question, sink, progress)
                for name in SERVICES
            }
    except BankError as error:
        _fail(error)
    summary = ", ".join(f"{name} {count:,}" for name, count in counts.items())
    click.echo(f"exported {sum(counts.values()):,} events ({summary}) to {export_path}", err=True)


@main.group()
def secrets() -> None:
    """Secrets the services keep sealed at rest (staff TOTP, callback and webhook secrets)."""


@secrets.command()
@click.option(
    "--batch-size",
    type=click.IntRange(min=1, max=RESEAL_LIMIT_MAX),
    default=100,
    show_default=True,
    help="Rows re-sealed per request (each batch is its own transaction).",
)
@operator_token_option(Scope.secrets_rotate)
def rotate(batch_size: int, access_token: str | None) -> None:
    """Re-seal every secret of accounts, transactions and notifications under their newest key.

    Add the new key first (newest first in <SERVICE>_SECRETS_KEYS) and restart the
    services; then run this; then the old key may leave the ring. Safe to run again, and
    to resume after an interruption. Exit status 1 if some row no key opens, 2 if a
    service cannot be asked.
    """
    from sagabank import rotation

    settings = LauncherSettings()
    urls = service_urls(settings)
    try:
        if access_token is None:
            access_token = launcher_operator_token(urls["accounts"], settings)
        with rotation.client(access_token) as http:
            done = [
                rotation.rotate_service(http, name, urls[name], batch_size=batch_size)
                for name in rotation.SEALING_SERVICES
            ]
    except BankError as error:
        _fail(error)
    click.echo("\n".join(rotation.rotation_lines(done)))
    sys.exit(0 if all(item.ok for item in done) else 1)


@main.group()
def ledger() -> None:
    """Operate on the ledger that the accounts service keeps."""


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
                f"  {totals.currency} {phase:<7} debits {display_amount(debits, totals.currency)}"
                f" {relation} credits {display_amount(credits, totals.currency)}"
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
    empty = invariants.transfers_without_entries_count
    lines.append(f"  ledger transfers without entries: {empty:,}{'  BROKEN' if empty else ''}")
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
@operator_token_option(Scope.accounts_admin)
def check(accounts_url: str, timeout_seconds: float, access_token: str | None) -> None:
    """Check the ledger's invariants: per currency, debits equal credits (posted and
    pending); each account's totals equal the sum of its journal entries.

    Exit status: 0 when they hold, 1 when one fails, 2 when the check could not run.
    """
    url = f"{accounts_url.rstrip('/')}{LEDGER_INVARIANTS_PATH}"
    if access_token is None:
        try:
            access_token = launcher_operator_token(accounts_url, LauncherSettings())
        except BankError as error:
            click.echo(f"cannot get an operator token from the accounts service: {error}", err=True)
            sys.exit(2)
    try:
        with (
            httpx.Client(
                timeout=timeout_seconds,
                follow_redirects=False,
                headers={"Authorization": f"Bearer {access_token}"},
            ) as http,
            Progress("checking the ledger's invariants"),
        ):
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


main.add_command(staff)
ledger.add_command(deposit)
# Everyday banking, as a customer (sagabank/banking/): on the public HTTP API only.
for everyday_command in (login, logout, customer, account, transfer, webhook):
    main.add_command(everyday_command)
