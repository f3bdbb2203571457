"""The ledger's new pure rules without a database: a batch applied in memory (linked chains,
expiry, running balances), overdrafts, daily outflow, status changes and limits."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from accounts.ledger import rules
from accounts.ledger.errors import (
    AccountClosed,
    AccountNotEmpty,
    DailyOutflowLimitExceeded,
    InsufficientFunds,
    LinkedEventChainOpen,
    LinkedEventFailed,
    OverdraftInUse,
    OverdraftNotAllowed,
    PendingTransferExpired,
    SameAccount,
    SystemAccountImmutable,
)
from accounts.ledger.rules import (
    AccountSnapshot,
    LedgerState,
    PendingSnapshot,
    Resolution,
    StatusAction,
)
from contracts.accounts import AccountKind, AccountStatus, LedgerTransferCreate, LedgerTransferKind

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def customer(credits_posted: int = 0, **changes: Any) -> AccountSnapshot:
    account = AccountSnapshot(
        id=uuid.uuid4(),
        kind=AccountKind.customer,
        currency="EUR",
        status=AccountStatus.active,
        debits_must_not_exceed_credits=True,
        credits_must_not_exceed_debits=False,
        max_transfer_amount_minor=None,
        debits_pending=0,
        debits_posted=0,
        credits_pending=0,
        credits_posted=credits_posted,
    )
    return account._replace(**changes)


def state_of(*accounts: AccountSnapshot, **options: Any) -> LedgerState:
    return LedgerState(
        accounts={account.id: account for account in accounts},
        pendings=options.get("pendings", {}),
        resolutions=options.get("resolutions", {}),
        transfers=options.get("transfers", {}),
        outflows_today_minor=options.get("outflows", {}),
        now=options.get("now", NOW),
    )


def single(debit: AccountSnapshot, credit: AccountSnapshot, amount: int) -> LedgerTransferCreate:
    return LedgerTransferCreate(
        id=uuid.uuid4(),
        kind=LedgerTransferKind.single_phase,
        debit_account_id=debit.id,
        credit_account_id=credit.id,
        amount_minor=amount,
        currency="EUR",
    )


def hold(debit: AccountSnapshot, credit: AccountSnapshot, amount: int) -> LedgerTransferCreate:
    return single(debit, credit, amount).model_copy(update={"kind": LedgerTransferKind.pending})


def resolve(kind: LedgerTransferKind, pending_id: uuid.UUID) -> LedgerTransferCreate:
    return LedgerTransferCreate(id=uuid.uuid4(), kind=kind, pending_id=pending_id)


class TestLedgerState:
    def test_events_apply_in_order(self) -> None:
        alice, bob = customer(credits_posted=100), customer()
        state = state_of(alice, bob)
        outcomes = state.execute(
            [single(alice, bob, 60), single(alice, bob, 60), single(bob, alice, 60)],
            [False, False, False],
        )
        assert [type(outcome.error) for outcome in outcomes] == [
            type(None),
            InsufficientFunds,
            type(None),
        ]
        assert state.accounts[alice.id].debits_available_minor == 100
        assert len(state.postings) == 2

    def test_a_failed_chain_leaves_no_trace(self) -> None:
        alice, bob = customer(credits_posted=100, daily_outflow_limit_minor=1000), customer()
        state = state_of(alice, bob, outflows={alice.id: 0})
        before = (
            dict(state.accounts),
            dict(state.pendings),
            dict(state.transfers),
            dict(state.outflows_today_minor),
        )
        placed = hold(alice, bob, 50)
        outcomes = state.execute(
            [
                placed,
                resolve(LedgerTransferKind.post_pending, placed.id),
                single(alice, bob, 51),
            ],
            [True, True, False],
        )
        assert [type(outcome.error) for outcome in outcomes] == [
            LinkedEventFailed,
            LinkedEventFailed,
            InsufficientFunds,
        ]
        failure = outcomes[0].error
        assert failure is not None
        assert failure.extensions["failed_event_index"] == 2
        assert (
            state.accounts,
            state.pendings,
            state.transfers,
            state.outflows_today_minor,
        ) == before
        assert state.resolutions == {}
        assert state.postings == []

    def test_an_open_chain(self) -> None:
        alice, bob = customer(credits_posted=100), customer()
        state = state_of(alice, bob)
        outcomes = state.execute([single(alice, bob, 1), single(alice, bob, 1)], [False, True])
        assert outcomes[0].created
        assert isinstance(outcomes[1].error, LinkedEventChainOpen)
        assert len(state.postings) == 1

    def test_chains_after_a_failed_one_still_apply(self) -> None:
        alice, bob = customer(credits_posted=100), customer()
        state = state_of(alice, bob)
        outcomes = state.execute(
            [single(alice, alice, 1), single(alice, bob, 1), single(alice, bob, 1)],
            [True, False, False],
        )
        assert isinstance(outcomes[0].error, SameAccount)
        assert isinstance(outcomes[1].error, LinkedEventFailed)
        assert outcomes[2].created

    def test_replays_and_conflicts_within_the_state(self) -> None:
        alice, bob = customer(credits_posted=100), customer()
        state = state_of(alice, bob)
        event = single(alice, bob, 10)
        outcomes = state.execute(
            [event, event, event.model_copy(update={"amount_minor": 11})], [False] * 3
        )
        assert (outcomes[0].created, outcomes[1].created) == (True, False)
        assert outcomes[1].transfer == outcomes[0].transfer
        assert outcomes[2].error is not None
        assert outcomes[2].error.extensions["field"] == "amount_minor"

    def test_expiry_releases_and_resolves(self) -> None:
        alice, bob = customer(credits_posted=100, debits_pending=80), customer(credits_pending=80)
        pending = PendingSnapshot(
            uuid.uuid4(), alice.id, bob.id, 80, "EUR", NOW - timedelta(seconds=1), NOW
        )
        state = state_of(alice, bob, pendings={pending.id: pending})
        state.expire(pending)
        assert state.resolutions[pending.id] == Resolution.expired
        (posting,) = state.postings
        assert posting.transfer.id == rules.expiry_void_id(pending.id)
        assert posting.transfer.kind == LedgerTransferKind.void_pending
        assert state.accounts[alice.id].debits_available_minor == 100
        outcomes = state.execute([resolve(LedgerTransferKind.void_pending, pending.id)], [False])
        assert isinstance(outcomes[0].error, PendingTransferExpired)

    def test_entry_columns_and_changed_totals(self) -> None:
        alice, bob = customer(credits_posted=100), customer()
        state = state_of(alice, bob)
        placed = hold(alice, bob, 30)
        state.execute([placed, resolve(LedgerTransferKind.post_pending, placed.id)], [False, False])
        columns = state.entry_columns()
        assert len({len(column) for column in columns}) == 1, "one value per entry in each"
        alice_lines = [
            (balance, posted, pending)
            for account_id, balance, posted, pending in zip(
                columns.account_ids,
                columns.balances,
                columns.posted_balances_after_minor,
                columns.pending_balances_after_minor,
                strict=True,
            )
            if account_id == alice.id
        ]
        assert alice_lines == [
            ("debits_pending", 100, -30),
            ("debits_pending", 100, 0),
            ("debits_posted", 70, 0),
        ]
        assert columns.transfer_ids[:2] == [placed.id, placed.id]
        assert state.changed_totals() == {alice.id: (0, 30, 0, 0), bob.id: (0, 0, 0, 30)}

    def test_daily_outflow_follows_the_events(self) -> None:
        alice = customer(credits_posted=1000, daily_outflow_limit_minor=100)
        bob = customer()
        state = state_of(alice, bob, outflows={alice.id: 40})
        placed = hold(alice, bob, 60)
        outcomes = state.execute(
            [
                placed,
                single(alice, bob, 1),
                resolve(LedgerTransferKind.post_pending, placed.id).model_copy(
                    update={"amount_minor": 20}
                ),
                single(alice, bob, 40),
                single(alice, bob, 1),
            ],
            [False] * 5,
        )
        assert [type(outcome.error).__name__ for outcome in outcomes] == [
            "NoneType",
            "DailyOutflowLimitExceeded",
            "NoneType",
            "NoneType",
            "DailyOutflowLimitExceeded",
        ]
        assert state.outflows_today_minor[alice.id] == 100


class TestOverdraft:
    def test_debits_may_exceed_credits_by_the_limit(self) -> None:
        debit = customer(credits_posted=100, overdraft_limit_minor=50)
        assert debit.debits_available_minor == 150
        plan = rules.plan_single_phase(
            debit=debit, credit=customer(), amount_minor=150, currency="EUR"
        )
        assert rules.apply(debit, plan.entries).debits_available_minor == 0
        with pytest.raises(InsufficientFunds) as raised:
            rules.plan_single_phase(
                debit=debit, credit=customer(), amount_minor=151, currency="EUR"
            )
        assert raised.value.extensions["available_minor"] == 150


class TestDailyOutflow:
    def test_limit_counts_what_was_sent(self) -> None:
        debit = customer(credits_posted=1000, daily_outflow_limit_minor=100)
        rules.check_transfer_allowed(
            debit=debit, credit=customer(), amount_minor=60, currency="EUR", outflow_today_minor=40
        )
        with pytest.raises(DailyOutflowLimitExceeded) as raised:
            rules.check_transfer_allowed(
                debit=debit,
                credit=customer(),
                amount_minor=61,
                currency="EUR",
                outflow_today_minor=40,
            )
        assert raised.value.extensions["outflow_today_minor"] == 40

    def test_system_accounts_are_not_capped(self) -> None:
        source = customer(
            kind=AccountKind.system,
            debits_must_not_exceed_credits=False,
            daily_outflow_limit_minor=1,
        )
        rules.check_transfer_allowed(
            debit=source, credit=customer(), amount_minor=5, currency="EUR", outflow_today_minor=9
        )

    @pytest.mark.parametrize(
        ("now", "start"),
        [
            (datetime(2026, 11, 28, 0, 0, tzinfo=UTC), datetime(2026, 11, 28, tzinfo=UTC)),
            (
                datetime(2026, 11, 28, 23, 59, 59, 999999, tzinfo=UTC),
                datetime(2026, 11, 28, tzinfo=UTC),
            ),
            (
                # 20:00 the evening before in New York is already the 28th in UTC.
                datetime(2026, 11, 28, 1, 0, tzinfo=UTC).astimezone(ZoneInfo("America/New_York")),
                datetime(2026, 11, 28, tzinfo=UTC),
            ),
        ],
    )
    def test_the_day_is_the_utc_day(self, now: datetime, start: datetime) -> None:
        assert rules.outflow_day(now) == (start, start + timedelta(days=1))


class TestNextStatus:
    @pytest.mark.parametrize(
        ("status", "action", "expected"),
        [
            (AccountStatus.active, StatusAction.freeze, AccountStatus.frozen),
            (AccountStatus.frozen, StatusAction.freeze, AccountStatus.frozen),
            (AccountStatus.frozen, StatusAction.unfreeze, AccountStatus.active),
            (AccountStatus.active, StatusAction.unfreeze, AccountStatus.active),
            (AccountStatus.active, StatusAction.close, AccountStatus.closed),
            (AccountStatus.frozen, StatusAction.close, AccountStatus.closed),
            (AccountStatus.closed, StatusAction.close, AccountStatus.closed),
        ],
    )
    def test_transitions(
        self, status: AccountStatus, action: StatusAction, expected: AccountStatus
    ) -> None:
        assert rules.next_status(customer(status=status), action) == expected

    @pytest.mark.parametrize("action", [StatusAction.freeze, StatusAction.unfreeze])
    def test_closed_is_final(self, action: StatusAction) -> None:
        with pytest.raises(AccountClosed):
            rules.next_status(customer(status=AccountStatus.closed), action)

    @pytest.mark.parametrize(
        "totals",
        [
            {"credits_posted": 1},
            {"debits_posted": 1, "overdraft_limit_minor": 5},
            {"credits_posted": 5, "debits_pending": 5},
            {"credits_pending": 1},
        ],
    )
    def test_only_an_empty_account_closes(self, totals: dict[str, int]) -> None:
        with pytest.raises(AccountNotEmpty):
            rules.next_status(customer(**totals), StatusAction.close)

    def test_spent_to_zero_is_empty(self) -> None:
        account = customer(credits_posted=500, debits_posted=500)
        assert rules.next_status(account, StatusAction.close) == AccountStatus.closed

    @pytest.mark.parametrize("action", list(StatusAction))
    def test_system_accounts_keep_their_status(self, action: StatusAction) -> None:
        system = customer(kind=AccountKind.system, debits_must_not_exceed_credits=False)
        with pytest.raises(SystemAccountImmutable):
            rules.next_status(system, action)


class TestCheckLimits:
    def test_overdraft_only_with_the_debit_rule(self) -> None:
        loan = customer(debits_must_not_exceed_credits=False, credits_must_not_exceed_debits=True)
        rules.check_limits(loan, overdraft_limit_minor=None)
        with pytest.raises(OverdraftNotAllowed):
            rules.check_limits(loan, overdraft_limit_minor=10)

    def test_overdraft_in_use_cannot_be_taken_away(self) -> None:
        account = customer(credits_posted=100, debits_posted=100, debits_pending=30)
        rules.check_limits(account, overdraft_limit_minor=30)
        with pytest.raises(OverdraftInUse) as raised:
            rules.check_limits(account, overdraft_limit_minor=29)
        assert raised.value.extensions["overdraft_used_minor"] == 30

    def test_closed_accounts_take_no_limits(self) -> None:
        with pytest.raises(AccountClosed):
            rules.check_limits(customer(status=AccountStatus.closed), overdraft_limit_minor=None)
