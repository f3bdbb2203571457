"""What guarding the journal costs a posting: the write statements of a batch of ledger
transfers with each guard weighed for accounts migration 0004 (see
docs/decisions/0003-journal-integrity.md), beside no guard at all.

Starts its own embedded PostgreSQL in a temporary directory (durable unless `--no-fsync`),
migrates a template database to 0003 (the journal before any guard) and opens `--accounts`
funded accounts in it, with SQL: the journal is not what is measured. Each variant gets a
copy, migrated on to 0004 or given its guard's DDL here. Then batches of single-phase
transfers go through asyncpg with the service's own statements (`accounts.ledger.repository`): the
transfers' INSERT, their entries' INSERT, COMMIT. The variants take turns batch by batch,
so that load from elsewhere on the machine falls on all of them alike. It prints, per
variant, the median milliseconds of each statement and of the three, and the difference
from no guard. Everything it starts is stopped at the end, also on error or Ctrl-C.

    .venv/bin/python benchmarks/journal_guards.py                   # batches of 1,000
    .venv/bin/python benchmarks/journal_guards.py --size 1 --batches 1500
"""

import argparse
import asyncio
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from alembic import command

from accounts.ledger import repository
from accounts.main import MIGRATIONS_PATH
from kit.migrations import alembic_config
from kit.settings import with_database
from sagabank.localstack.databases import ensure_database
from sagabank.localstack.postgres import EmbeddedPostgres, free_port, running_postgres

UNGUARDED_REVISION = "0003"
GUARDED_REVISION = "0004"
FUNDING_MINOR = 10**12
WARM_UP_BATCHES = 5

_INDEX = "CREATE INDEX ix_ledger_entries_transfer_id ON ledger_entries (transfer_id);"
_FOREIGN_KEYS = """
ALTER TABLE ledger_entries ADD FOREIGN KEY (transfer_id) REFERENCES ledger_transfers (id) {when};
ALTER TABLE ledger_entries ADD FOREIGN KEY (account_id) REFERENCES accounts (id) {when};
"""
# Refused at commit unless the transfer has an entry: a look-up per transfer. (Both
# functions are kept from planning a scan of a young table, as 0004's is.)
_EVERY_TRANSFER_HAS_ENTRIES = """
CREATE FUNCTION ledger_transfers_check_entries() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off AS $$
BEGIN
    PERFORM FROM ledger_entries WHERE transfer_id = NEW.id LIMIT 1;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'ledger transfer % has no entries', NEW.id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_transfers_have_entries AFTER INSERT ON ledger_transfers
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_transfers_check_entries();
"""
# The textbook shape: at commit, each entry sums its transfer's entries.
_EACH_ENTRY_SUMS_ITS_TRANSFER = """
CREATE FUNCTION ledger_entries_check_transfer() RETURNS trigger LANGUAGE plpgsql
    SET enable_seqscan = off AS $$
BEGIN
    PERFORM FROM ledger_entries WHERE transfer_id = NEW.transfer_id
    HAVING sum(CASE balance WHEN 'debits_pending' THEN amount_minor
                            WHEN 'credits_pending' THEN -amount_minor ELSE 0 END) <> 0
        OR sum(CASE balance WHEN 'debits_posted' THEN amount_minor
                            WHEN 'credits_posted' THEN -amount_minor ELSE 0 END) <> 0;
    IF FOUND THEN
        RAISE EXCEPTION 'ledger transfer % does not balance', NEW.transfer_id;
    END IF;
    RETURN NULL;
END;
$$;
CREATE CONSTRAINT TRIGGER ledger_entries_sum_transfer AFTER INSERT ON ledger_entries
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION ledger_entries_check_transfer();
"""


@dataclass(frozen=True)
class Variant:
    name: str
    revision: str
    ddl: str = ""


VARIANTS = (
    Variant("no guard (0003)", UNGUARDED_REVISION),
    Variant("statement trigger (0004)", GUARDED_REVISION),
    Variant("foreign keys", UNGUARDED_REVISION, _FOREIGN_KEYS.format(when="")),
    Variant(
        "foreign keys, deferred",
        UNGUARDED_REVISION,
        _FOREIGN_KEYS.format(when="DEFERRABLE INITIALLY DEFERRED"),
    ),
    Variant("0004 + has-entries trigger", GUARDED_REVISION, _INDEX + _EVERY_TRANSFER_HAS_ENTRIES),
    Variant(
        "per-entry deferred trigger", UNGUARDED_REVISION, _INDEX + _EACH_ENTRY_SUMS_ITS_TRANSFER
    ),
)
PHASES = ("transfers", "entries", "commit", "total")


async def open_accounts(database_url: str, count: int) -> list[uuid.UUID]:
    account_ids = [uuid.uuid4() for _ in range(count)]
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(
            "INSERT INTO accounts (id, customer_id, kind, currency,"
            " debits_must_not_exceed_credits, credits_must_not_exceed_debits, credits_posted)"
            " SELECT id, 'benchmark', 'customer', 'EUR', true, false, $2"
            " FROM unnest($1::uuid[]) AS id",
            account_ids,
            FUNDING_MINOR,
        )
    finally:
        await connection.close()
    return account_ids


async def prepare(admin_url: str, accounts: int) -> tuple[dict[str, str], list[uuid.UUID]]:
    """One database per variant, copied from a funded template at 0003; their URLs."""
    template = "journal_guards_template"
    await ensure_database(admin_url, template)
    template_url = with_database(admin_url, template)
    await asyncio.to_thread(
        command.upgrade, alembic_config(MIGRATIONS_PATH, template_url), UNGUARDED_REVISION
    )
    account_ids = await open_accounts(template_url, accounts)
    urls: dict[str, str] = {}
    for number, variant in enumerate(VARIANTS):
        name = f"journal_guards_{number}"
        await ensure_database(admin_url, name, template=template)
        url = with_database(admin_url, name)
        if variant.revision != UNGUARDED_REVISION:
            await asyncio.to_thread(
                command.upgrade, alembic_config(MIGRATIONS_PATH, url), variant.revision
            )
        if variant.ddl:
            connection = await asyncpg.connect(url)
            try:
                await connection.execute(variant.ddl)
            finally:
                await connection.close()
        urls[variant.name] = url
    return urls, account_ids


async def write_batch(
    connection: Any, account_ids: Sequence[uuid.UUID], size: int
) -> dict[str, float]:
    """One transaction of `size` transfers; seconds per statement and in all."""
    now = datetime.now(UTC)
    transfers = [(uuid.uuid4(), *random.sample(account_ids, 2)) for _ in range(size)]
    entries = [
        (transfer_id, account_id, balance, 1, 0, 0)
        for transfer_id, debit_id, credit_id in transfers
        for account_id, balance in ((debit_id, "debits_posted"), (credit_id, "credits_posted"))
    ]
    nothing: list[None] = [None] * size
    transaction = connection.transaction()
    await transaction.start()
    started = time.perf_counter()
    inserted = await connection.fetchval(
        repository.INSERT_TRANSFERS,
        [transfer_id for transfer_id, _, _ in transfers],
        ["single_phase"] * size,
        [debit_id for _, debit_id, _ in transfers],
        [credit_id for _, _, credit_id in transfers],
        [1] * size,
        ["EUR"] * size,
        *(nothing for _ in range(4)),
        now,
    )
    assert inserted == size, "fresh ids"
    transfers_done = time.perf_counter()
    columns = (list(column) for column in zip(*entries, strict=True))
    await connection.execute(repository.INSERT_ENTRIES, *columns, now)
    entries_done = time.perf_counter()
    await transaction.commit()
    committed = time.perf_counter()
    return {
        "transfers": transfers_done - started,
        "entries": entries_done - transfers_done,
        "commit": committed - entries_done,
        "total": committed - started,
    }


async def measure(
    urls: dict[str, str], account_ids: Sequence[uuid.UUID], args: argparse.Namespace
) -> None:
    connections = {name: await asyncpg.connect(url) for name, url in urls.items()}
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in urls}
    try:
        for number in range(WARM_UP_BATCHES + args.batches):
            order = list(urls)
            random.shuffle(order)
            for name in order:
                seconds = await write_batch(connections[name], account_ids, args.size)
                # The first batches plan the statements and the triggers' queries.
                if number >= WARM_UP_BATCHES:
                    samples[name].append(seconds)
    finally:
        for connection in connections.values():
            await connection.close()
    print(
        f"Write statements of one transaction of {args.size:,} single-phase transfers, ms:"
        f" median of {args.batches} per variant, {len(account_ids):,} accounts"
    )
    print(f"{'variant':<28}" + "".join(f"{phase:>11}" for phase in PHASES) + "  vs no guard")
    unguarded_ms = 0.0
    for variant in VARIANTS:
        medians = {
            phase: statistics.median(sample[phase] for sample in samples[variant.name]) * 1000
            for phase in PHASES
        }
        unguarded_ms = unguarded_ms or medians["total"]
        difference_ms = medians["total"] - unguarded_ms
        print(
            f"{variant.name:<28}"
            + "".join(f"{medians[phase]:>11.2f}" for phase in PHASES)
            + f"  {difference_ms:+.2f} ({difference_ms / unguarded_ms:+.0%})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--size", type=int, default=1000, help="transfers per transaction")
    parser.add_argument("--batches", type=int, default=60, help="transactions per variant")
    parser.add_argument("--accounts", type=int, default=1000, help="funded accounts")
    parser.add_argument("--no-fsync", action="store_true", help="PostgreSQL without fsync")
    args = parser.parse_args()
    assert args.size >= 1, "at least one transfer per transaction"
    assert args.batches >= 1, "at least one transaction per variant"
    assert args.accounts >= 2, "transfers need two accounts"
    with tempfile.TemporaryDirectory(prefix="sagabank-benchmark-journal-") as directory:
        server = EmbeddedPostgres(
            data_dir=Path(directory) / "postgres", port=free_port(), durable=not args.no_fsync
        )
        with running_postgres(server, log_path=Path(directory) / "postgres.log") as postgres:
            urls, account_ids = asyncio.run(prepare(postgres.admin_url, args.accounts))
            asyncio.run(measure(urls, account_ids, args))


if __name__ == "__main__":
    main()
