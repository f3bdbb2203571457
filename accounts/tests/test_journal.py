"""The journal's guarantees: append-only, balanced per transfer, totals equal entries, double
entry per currency."""

import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from accounts.ledger import rules
from accounts.ledger.rules import Balance, Entry, PendingSnapshot
from accounts.tests.helpers import Bank, raw_connection, single_phase_event
from kit.testing import assert_problem

_INSERT_TRANSFER = (
    "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, amount_minor,"
    " currency) VALUES ($1, 'single_phase', $2, $3, $4, 'EUR')"
)
_INSERT_ENTRIES = (
    "INSERT INTO ledger_entries (transfer_id, account_id, balance, amount_minor,"
    " posted_balance_after_minor, pending_balance_after_minor)"
    " SELECT transfer_id, account_id, balance, amount_minor, 0, 0"
    " FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[])"
    " AS entry(transfer_id, account_id, balance, amount_minor)"
)


async def _journal_size(database_url: str) -> tuple[int, int]:
    async with raw_connection(database_url) as connection:
        transfers = await connection.fetchval("SELECT count(*) FROM ledger_transfers")
        entries = await connection.fetchval("SELECT count(*) FROM ledger_entries")
    return transfers, entries


async def _bypass_triggers(connection: Any) -> None:
    """What only a superuser's bypass can write: the database refuses entries of a missing
    transfer or account (TestJournalBalances), but a restore with triggers disabled (or
    session_replication_role = replica) skips every trigger, foreign keys' included."""
    await connection.execute("SET session_replication_role = replica")


class TestLedgerInvariants:
    async def test_valid(self, bank: Bank) -> None:
        alice = await bank.funded_account(1000)
        pounds = await bank.funded_account(500, currency="GBP")
        bob = await bank.open_account()
        hold = await bank.placed_hold(alice["id"], bob["id"], 300)
        await bank.post(hold, amount_minor=200)
        await bank.placed_hold(alice["id"], bob["id"], 100)
        await bank.withdraw(pounds["id"], 50, currency="GBP")

        report = await bank.invariants()
        assert report["ok"] is True
        assert report["accounts"] == {
            "accounts_checked": 5,
            "mismatched_count": 0,
            "mismatched_account_ids": [],
        }
        by_currency = {totals["currency"]: totals for totals in report["currencies"]}
        assert by_currency["EUR"] == {
            "currency": "EUR",
            "debits_pending_minor": 100,
            "credits_pending_minor": 100,
            "debits_posted_minor": 1200,
            "credits_posted_minor": 1200,
            "pending_balanced": True,
            "posted_balanced": True,
        }
        assert by_currency["GBP"]["debits_posted_minor"] == 550

    async def test_empty_ledger(self, bank: Bank) -> None:
        report = await bank.invariants()
        assert report["ok"] is True
        assert report["currencies"] == []
        assert report["accounts"]["accounts_checked"] == 0
        assert report["entries_without_transfer_count"] == 0
        assert report["transfers_without_entries_count"] == 0

    async def test_detects_totals_that_differ_from_the_journal(
        self, bank: Bank, database_url: str
    ) -> None:
        alice = await bank.funded_account(1000)
        async with raw_connection(database_url) as connection:
            # Only a bypass of the service can do this: accounts is not append-only.
            await connection.execute(
                "UPDATE accounts SET credits_posted = credits_posted + 1 WHERE id = $1",
                uuid.UUID(alice["id"]),
            )
        report = await bank.invariants()
        assert report["ok"] is False
        assert report["accounts"]["mismatched_count"] == 1
        assert report["accounts"]["mismatched_account_ids"] == [alice["id"]]
        assert report["currencies"][0]["posted_balanced"] is False
        assert report["currencies"][0]["pending_balanced"] is True

    async def test_detects_entries_of_an_unknown_account(
        self, bank: Bank, database_url: str
    ) -> None:
        await bank.funded_account(1000)
        stranger = uuid.uuid4()
        async with raw_connection(database_url) as connection:
            await _bypass_triggers(connection)
            transfer_id = await connection.fetchval("SELECT id FROM ledger_transfers LIMIT 1")
            await connection.execute(
                "INSERT INTO ledger_entries (transfer_id, account_id, balance, amount_minor,"
                " posted_balance_after_minor, pending_balance_after_minor)"
                " VALUES ($1, $2, 'credits_posted', 5, 5, 0)",
                transfer_id,
                stranger,
            )
        report = await bank.invariants()
        assert report["ok"] is False
        assert report["accounts"]["mismatched_account_ids"] == [str(stranger)]
        assert report["accounts"]["accounts_checked"] == 2

    async def test_detects_entries_without_their_transfer(
        self, bank: Bank, database_url: str
    ) -> None:
        alice = await bank.funded_account(1000)
        async with raw_connection(database_url) as connection:
            await _bypass_triggers(connection)
            # Two entries that cancel out, so every total still agrees, but belong to nothing.
            for amount_minor in (5, -5):
                await connection.execute(
                    "INSERT INTO ledger_entries (transfer_id, account_id, balance, amount_minor,"
                    " posted_balance_after_minor, pending_balance_after_minor)"
                    " VALUES ($1, $2, 'credits_posted', $3, 1000, 0)",
                    uuid.uuid4(),
                    uuid.UUID(alice["id"]),
                    amount_minor,
                )
        report = await bank.invariants()
        assert report["ok"] is False
        assert report["entries_without_transfer_count"] == 2
        assert report["accounts"]["mismatched_count"] == 0

    async def test_detects_a_transfer_without_entries(self, bank: Bank, database_url: str) -> None:
        alice, bob = await bank.funded_account(1000), await bank.open_account()
        async with raw_connection(database_url) as connection:
            # The database refuses unbalanced entries but not a transfer written without any
            # (docs/decisions/0003-journal-integrity.md): this check reports it.
            await connection.execute(
                _INSERT_TRANSFER, uuid.uuid4(), uuid.UUID(alice["id"]), uuid.UUID(bob["id"]), 100
            )
        report = await bank.invariants()
        assert report["ok"] is False
        assert report["transfers_without_entries_count"] == 1
        assert report["accounts"]["mismatched_count"] == 0


class TestJournalBalances:
    """The database refuses a ledger transfer whose entries do not balance, whatever code
    writes them: here, SQL that bypasses the service."""

    @pytest.fixture
    async def accounts(self, bank: Bank) -> tuple[uuid.UUID, uuid.UUID]:
        alice, bob = await bank.funded_account(1000), await bank.open_account()
        return uuid.UUID(alice["id"]), uuid.UUID(bob["id"])

    async def _write(
        self,
        database_url: str,
        transfers: Sequence[tuple[uuid.UUID, uuid.UUID, uuid.UUID, int]],
        *statements: Sequence[tuple[uuid.UUID, uuid.UUID, str, int]],
    ) -> None:
        """One transaction: the transfers (id, debit, credit, amount), then each statement's
        entries (transfer id, account id, balance, amount)."""
        async with raw_connection(database_url) as connection, connection.transaction():
            for transfer in transfers:
                await connection.execute(_INSERT_TRANSFER, *transfer)
            for entries in statements:
                columns = zip(*entries, strict=True)
                await connection.execute(_INSERT_ENTRIES, *(list(column) for column in columns))

    async def test_a_debit_without_its_credit_is_refused(
        self, bank: Bank, database_url: str, accounts: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        alice, bob = accounts
        before = await _journal_size(database_url)
        transfer_id = uuid.uuid4()
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance") as refused:
            await self._write(
                database_url,
                [(transfer_id, alice, bob, 100)],
                [(transfer_id, alice, "debits_posted", 100)],
            )
        assert refused.value.constraint_name == "ledger_entries_balanced"
        assert await _journal_size(database_url) == before
        await bank.assert_ledger_sound()

    async def test_pending_and_posted_balance_each_on_their_own(
        self, database_url: str, accounts: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        alice, bob = accounts
        transfer_id = uuid.uuid4()
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            await self._write(
                database_url,
                [(transfer_id, alice, bob, 100)],
                [
                    (transfer_id, alice, "debits_posted", 100),
                    (transfer_id, bob, "credits_pending", 100),
                ],
            )

    async def test_one_unbalanced_transfer_refuses_the_whole_statement(
        self, database_url: str, accounts: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        alice, bob = accounts
        before = await _journal_size(database_url)
        balanced, unbalanced = uuid.uuid4(), uuid.uuid4()
        with pytest.raises(asyncpg.CheckViolationError, match=str(unbalanced)):
            await self._write(
                database_url,
                [(balanced, alice, bob, 10), (unbalanced, alice, bob, 10)],
                [
                    (balanced, alice, "debits_posted", 10),
                    (balanced, bob, "credits_posted", 10),
                    (unbalanced, alice, "debits_posted", 10),
                    (unbalanced, bob, "credits_posted", 9),
                ],
            )
        assert await _journal_size(database_url) == before

    async def test_a_transfer_s_entries_are_written_in_one_statement(
        self, database_url: str, accounts: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        # Each statement's part must balance: the debit alone is refused before the credit
        # could follow.
        alice, bob = accounts
        transfer_id = uuid.uuid4()
        with pytest.raises(asyncpg.CheckViolationError, match="does not balance"):
            await self._write(
                database_url,
                [(transfer_id, alice, bob, 100)],
                [(transfer_id, alice, "debits_posted", 100)],
                [(transfer_id, bob, "credits_posted", 100)],
            )

    async def test_entries_of_a_missing_transfer_are_refused(
        self, database_url: str, accounts: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        alice, bob = accounts
        missing = uuid.uuid4()
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="does not exist"):
            await self._write(
                database_url,
                [],
                [(missing, alice, "debits_posted", 5), (missing, bob, "credits_posted", 5)],
            )

    @pytest.mark.parametrize("stranger_known", [True, False])
    async def test_entries_of_an_account_outside_the_transfer_are_refused(
        self,
        bank: Bank,
        database_url: str,
        accounts: tuple[uuid.UUID, uuid.UUID],
        stranger_known: bool,
    ) -> None:
        alice, bob = accounts
        stranger = uuid.UUID((await bank.open_account())["id"]) if stranger_known else uuid.uuid4()
        transfer_id = uuid.uuid4()
        with pytest.raises(asyncpg.ForeignKeyViolationError, match="two other accounts"):
            await self._write(
                database_url,
                [(transfer_id, alice, bob, 5)],
                [
                    (transfer_id, alice, "debits_posted", 5),
                    (transfer_id, stranger, "credits_posted", 5),
                ],
            )

    async def test_a_balanced_transfer_written_by_hand_is_accepted(
        self, bank: Bank, database_url: str, accounts: tuple[uuid.UUID, uuid.UUID]
    ) -> None:
        alice, bob = accounts
        hold_id, post_id = uuid.uuid4(), uuid.uuid4()
        async with raw_connection(database_url) as connection, connection.transaction():
            await connection.execute(
                "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
                " amount_minor, currency, pending_id) VALUES ($1, 'pending', $3, $4, 100, 'EUR',"
                " NULL), ($2, 'post_pending', $3, $4, 60, 'EUR', $1)",
                hold_id,
                post_id,
                alice,
                bob,
            )
            await connection.execute(
                _INSERT_ENTRIES,
                [hold_id, hold_id, post_id, post_id, post_id, post_id],
                [alice, bob, alice, bob, alice, bob],
                ["debits_pending", "credits_pending"] * 2 + ["debits_posted", "credits_posted"],
                [100, 100, -100, -100, 60, 60],
            )
            await connection.execute(
                "UPDATE accounts SET debits_posted = debits_posted + 60 WHERE id = $1", alice
            )
            await connection.execute(
                "UPDATE accounts SET credits_posted = credits_posted + 60 WHERE id = $1", bob
            )
        assert (await bank.balances(str(bob)))["posted_minor"] == 60
        await bank.assert_ledger_sound()


class TestJournalIsAppendOnly:
    @pytest.mark.parametrize(
        "statement",
        [
            "UPDATE ledger_entries SET amount_minor = amount_minor + 1",
            "DELETE FROM ledger_entries",
            "TRUNCATE ledger_entries",
            "UPDATE ledger_transfers SET amount_minor = 1",
            "UPDATE ledger_transfers SET reference = 'rewritten'",
            "DELETE FROM ledger_transfers",
            "TRUNCATE ledger_transfers CASCADE",
        ],
    )
    async def test_history_cannot_be_rewritten(
        self, bank: Bank, database_url: str, statement: str
    ) -> None:
        await bank.funded_account(1000)
        async with raw_connection(database_url) as connection:
            with pytest.raises(asyncpg.RaiseError, match="append-only"):
                await connection.execute(statement)
            entries = await connection.fetchval("SELECT count(*) FROM ledger_entries")
            transfers = await connection.fetchval("SELECT count(*) FROM ledger_transfers")
        assert (entries, transfers) == (2, 1)
        await bank.assert_ledger_sound()


class TestSchemaBackstops:
    """What the service refuses, the database refuses too, should a bug slip through."""

    async def test_no_overdraft_on_customer_accounts(self, bank: Bank, database_url: str) -> None:
        alice = await bank.funded_account(1000)
        async with raw_connection(database_url) as connection:
            with pytest.raises(asyncpg.CheckViolationError, match="debits_within_credits"):
                await connection.execute(
                    "UPDATE accounts SET debits_pending = 1001 WHERE id = $1",
                    uuid.UUID(alice["id"]),
                )

    async def test_one_system_account_per_currency(self, bank: Bank, database_url: str) -> None:
        await bank.funded_account(1000)
        async with raw_connection(database_url) as connection:
            with pytest.raises(asyncpg.UniqueViolationError):
                await connection.execute(
                    "INSERT INTO accounts (id, kind, currency, debits_must_not_exceed_credits,"
                    " credits_must_not_exceed_debits) VALUES ($1, 'system', 'EUR', false, false)",
                    uuid.uuid4(),
                )

    async def test_a_hold_resolves_once(self, bank: Bank, database_url: str) -> None:
        alice, bob = await bank.funded_account(1000), await bank.open_account()
        hold = await bank.placed_hold(alice["id"], bob["id"], 300)
        await bank.void(hold)
        async with raw_connection(database_url) as connection:
            with pytest.raises(asyncpg.UniqueViolationError):
                await connection.execute(
                    "INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id,"
                    " amount_minor, currency, pending_id)"
                    " VALUES ($1, 'post_pending', $2, $3, 300, 'EUR', $4)",
                    uuid.uuid4(),
                    uuid.UUID(alice["id"]),
                    uuid.UUID(bob["id"]),
                    uuid.UUID(hold),
                )


def _release_of_the_debit_only(pending: PendingSnapshot) -> tuple[Entry, ...]:
    """A bug in the rules: a void that gives back the debit side of a hold and forgets
    the credit side."""
    return (Entry(pending.debit_account_id, Balance.debits_pending, -pending.amount_minor),)


class TestUnbalancedPlans:
    """A bug that plans unbalanced entries is the service's fault: a 500, never a 4xx, and
    the transaction writes nothing; the database refuses them even without the check."""

    @pytest.fixture
    async def held(self, bank: Bank) -> tuple[str, str, str]:
        alice, bob = await bank.funded_account(1000), await bank.open_account()
        hold = await bank.placed_hold(alice["id"], bob["id"], 300)
        return alice["id"], bob["id"], hold

    async def assert_still_held(self, bank: Bank, alice: str, bob: str) -> None:
        assert (await bank.balances(alice))["debits_pending_minor"] == 300
        assert (await bank.balances(bob))["credits_pending_minor"] == 300
        assert (await bank.balances(bob))["credits_posted_minor"] == 0
        await bank.assert_ledger_sound()

    async def test_the_ledger_refuses_them(
        self, bank: Bank, held: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        alice, bob, hold = held
        monkeypatch.setattr(rules, "_release", _release_of_the_debit_only)
        response = await bank.void(hold)
        assert_problem(response, 500, "internal-error")
        await self.assert_still_held(bank, alice, bob)

    async def test_a_batch_writes_none_of_its_events(
        self, bank: Bank, held: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        alice, bob, hold = held
        monkeypatch.setattr(rules, "_release", _release_of_the_debit_only)
        response = await bank.client.post(
            "/v1/ledger/transfers/batch",
            json={
                "transfers": [
                    {"id": str(uuid.uuid4()), **single_phase_event(alice, bob, 100)},
                    {"id": str(uuid.uuid4()), "kind": "void_pending", "pending_id": hold},
                ]
            },
            headers=bank.operator,
        )
        assert_problem(response, 500, "internal-error")
        await self.assert_still_held(bank, alice, bob)

    async def test_the_database_refuses_them_without_the_ledger_s_check(
        self, bank: Bank, held: tuple[str, str, str], monkeypatch: pytest.MonkeyPatch
    ) -> None:
        alice, bob, hold = held
        monkeypatch.setattr(rules, "_release", _release_of_the_debit_only)
        # As an `assert` would be under `python -O`.
        monkeypatch.setattr(rules, "assert_balanced", lambda entries: None)
        response = await bank.void(hold)
        assert_problem(response, 500, "internal-error")
        await self.assert_still_held(bank, alice, bob)
