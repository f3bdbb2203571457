"""The journal's guarantees: append-only, totals equal entries, double entry per currency."""

import uuid

import asyncpg
import pytest

from accounts.tests.helpers import Bank, raw_connection


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
