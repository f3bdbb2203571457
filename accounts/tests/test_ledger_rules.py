"""The ledger's pure rules, without a database: entries, balance flags, holds, idempotency."""

import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from accounts.ledger import rules
from accounts.ledger.errors import (
    AccountNotActive,
    AccountTotalsOverflow,
    CurrencyMismatch,
    InsufficientFunds,
    InvalidLedgerTransfer,
    PendingTransferAlreadyPosted,
    PendingTransferAlreadyVoided,
    PendingTransferExpired,
    PostAmountExceedsPending,
    SameAccount,
    TransferLimitExceeded,
)
from accounts.ledger.rules import (
    AccountSnapshot,
    Balance,
    Entry,
    PendingSnapshot,
    Resolution,
    TransferRecord,
    UnbalancedEntries,
)
from contracts.accounts import (
    AccountKind,
    AccountStatus,
    LedgerTransferCreate,
    LedgerTransferKind,
)
from kit.errors import ProblemError

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


def system(**changes: Any) -> AccountSnapshot:
    return customer()._replace(
        kind=AccountKind.system, debits_must_not_exceed_credits=False, **changes
    )


def hold_of(
    debit: AccountSnapshot,
    credit: AccountSnapshot,
    amount_minor: int,
    expires_at: datetime | None = None,
) -> tuple[PendingSnapshot, AccountSnapshot, AccountSnapshot]:
    """A placed hold and both accounts as they are after it."""
    plan = rules.plan_pending(
        debit=debit,
        credit=credit,
        amount_minor=amount_minor,
        currency="EUR",
        timeout_seconds=None,
        now=NOW,
    )
    pending = PendingSnapshot(
        id=uuid.uuid4(),
        debit_account_id=debit.id,
        credit_account_id=credit.id,
        amount_minor=amount_minor,
        currency="EUR",
        expires_at=expires_at,
    )
    return pending, rules.apply(debit, plan.entries), rules.apply(credit, plan.entries)


def request(kind: LedgerTransferKind, **fields: Any) -> LedgerTransferCreate:
    return LedgerTransferCreate(id=uuid.uuid4(), kind=kind, **fields)


class TestSinglePhase:
    def test_valid(self) -> None:
        debit, credit = customer(credits_posted=500), customer()
        plan = rules.plan_single_phase(debit=debit, credit=credit, amount_minor=200, currency="EUR")
        assert plan.entries == (
            Entry(debit.id, Balance.debits_posted, 200),
            Entry(credit.id, Balance.credits_posted, 200),
        )
        assert rules.apply(debit, plan.entries).debits_available_minor == 300
        assert plan.expires_at is None

    def test_whole_balance_may_be_spent(self) -> None:
        debit = customer(credits_posted=500)
        plan = rules.plan_single_phase(
            debit=debit, credit=customer(), amount_minor=500, currency="EUR"
        )
        assert rules.apply(debit, plan.entries).debits_available_minor == 0

    def test_no_overdraft(self) -> None:
        with pytest.raises(InsufficientFunds) as raised:
            rules.plan_single_phase(
                debit=customer(credits_posted=500),
                credit=customer(),
                amount_minor=501,
                currency="EUR",
            )
        assert raised.value.extensions["available_minor"] == 500

    def test_holds_count_against_the_balance(self) -> None:
        debit = customer(credits_posted=500, debits_pending=400)
        with pytest.raises(InsufficientFunds) as raised:
            rules.plan_single_phase(
                debit=debit, credit=customer(), amount_minor=101, currency="EUR"
            )
        assert raised.value.extensions["available_minor"] == 100

    def test_pending_credits_are_not_spendable(self) -> None:
        with pytest.raises(InsufficientFunds):
            rules.plan_single_phase(
                debit=customer(credits_pending=500),
                credit=customer(),
                amount_minor=1,
                currency="EUR",
            )

    def test_system_account_may_go_negative(self) -> None:
        source = system()
        plan = rules.plan_single_phase(
            debit=source, credit=customer(), amount_minor=10**15, currency="EUR"
        )
        assert rules.apply(source, plan.entries).debits_posted == 10**15

    def test_credits_must_not_exceed_debits(self) -> None:
        credit = customer(
            debits_must_not_exceed_credits=False,
            credits_must_not_exceed_debits=True,
            debits_posted=100,
            credits_posted=40,
        )
        rules.plan_single_phase(debit=system(), credit=credit, amount_minor=60, currency="EUR")
        with pytest.raises(InsufficientFunds) as raised:
            rules.plan_single_phase(debit=system(), credit=credit, amount_minor=61, currency="EUR")
        assert raised.value.extensions["available_minor"] == 60

    def test_same_account(self) -> None:
        account = customer(credits_posted=500)
        with pytest.raises(SameAccount):
            rules.plan_single_phase(debit=account, credit=account, amount_minor=1, currency="EUR")

    @pytest.mark.parametrize("status", [AccountStatus.frozen, AccountStatus.closed])
    @pytest.mark.parametrize("side", ["debit", "credit"])
    def test_account_not_active(self, status: AccountStatus, side: str) -> None:
        accounts = {"debit": customer(credits_posted=500), "credit": customer()}
        accounts[side] = accounts[side]._replace(status=status)
        with pytest.raises(AccountNotActive) as raised:
            rules.plan_single_phase(
                debit=accounts["debit"], credit=accounts["credit"], amount_minor=1, currency="EUR"
            )
        assert raised.value.extensions["account_id"] == str(accounts[side].id)

    @pytest.mark.parametrize("side", ["debit", "credit"])
    def test_currency_mismatch(self, side: str) -> None:
        accounts = {"debit": customer(credits_posted=500), "credit": customer()}
        accounts[side] = accounts[side]._replace(currency="USD")
        with pytest.raises(CurrencyMismatch):
            rules.plan_single_phase(
                debit=accounts["debit"], credit=accounts["credit"], amount_minor=1, currency="EUR"
            )

    def test_transfer_limit_caps_the_debit_side(self) -> None:
        debit = customer(credits_posted=500, max_transfer_amount_minor=100)
        rules.plan_single_phase(debit=debit, credit=customer(), amount_minor=100, currency="EUR")
        with pytest.raises(TransferLimitExceeded) as raised:
            rules.plan_single_phase(
                debit=debit, credit=customer(), amount_minor=101, currency="EUR"
            )
        assert raised.value.extensions["max_transfer_amount_minor"] == 100

    def test_transfer_limit_does_not_cap_receiving(self) -> None:
        credit = customer(max_transfer_amount_minor=100)
        rules.plan_single_phase(debit=system(), credit=credit, amount_minor=101, currency="EUR")

    def test_limit_is_checked_before_funds(self) -> None:
        debit = customer(credits_posted=50, max_transfer_amount_minor=100)
        with pytest.raises(TransferLimitExceeded):
            rules.plan_single_phase(
                debit=debit, credit=customer(), amount_minor=101, currency="EUR"
            )

    def test_totals_cannot_overflow(self) -> None:
        source = system(debits_posted=rules.TOTAL_MAX - 10)
        with pytest.raises(AccountTotalsOverflow):
            rules.plan_single_phase(
                debit=source, credit=customer(), amount_minor=11, currency="EUR"
            )


class TestPending:
    def test_valid(self) -> None:
        debit, credit = customer(credits_posted=500), customer()
        plan = rules.plan_pending(
            debit=debit,
            credit=credit,
            amount_minor=200,
            currency="EUR",
            timeout_seconds=None,
            now=NOW,
        )
        assert plan.entries == (
            Entry(debit.id, Balance.debits_pending, 200),
            Entry(credit.id, Balance.credits_pending, 200),
        )
        assert plan.expires_at is None
        assert rules.apply(debit, plan.entries).debits_available_minor == 300

    def test_timeout_sets_expiry(self) -> None:
        plan = rules.plan_pending(
            debit=customer(credits_posted=500),
            credit=customer(),
            amount_minor=200,
            currency="EUR",
            timeout_seconds=90,
            now=NOW,
        )
        assert plan.expires_at == NOW + timedelta(seconds=90)

    def test_no_overdraft(self) -> None:
        with pytest.raises(InsufficientFunds):
            rules.plan_pending(
                debit=customer(credits_posted=500, debits_pending=300),
                credit=customer(),
                amount_minor=201,
                currency="EUR",
                timeout_seconds=None,
                now=NOW,
            )

    def test_frozen_account_takes_no_new_hold(self) -> None:
        with pytest.raises(AccountNotActive):
            rules.plan_pending(
                debit=customer(credits_posted=500, status=AccountStatus.frozen),
                credit=customer(),
                amount_minor=1,
                currency="EUR",
                timeout_seconds=None,
                now=NOW,
            )


class TestPostPending:
    def test_valid(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        plan = rules.plan_post_pending(
            pending=pending,
            debit=debit,
            credit=credit,
            amount_minor=None,
            resolution=None,
            now=NOW,
        )
        assert plan.amount_minor == 200
        debit_after = rules.apply(debit, plan.entries)
        credit_after = rules.apply(credit, plan.entries)
        assert (debit_after.debits_pending, debit_after.debits_posted) == (0, 200)
        assert (credit_after.credits_pending, credit_after.credits_posted) == (0, 200)

    def test_partial_post_releases_the_rest(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        plan = rules.plan_post_pending(
            pending=pending, debit=debit, credit=credit, amount_minor=150, resolution=None, now=NOW
        )
        assert plan.amount_minor == 150
        debit_after = rules.apply(debit, plan.entries)
        assert (debit_after.debits_pending, debit_after.debits_posted) == (0, 150)
        assert debit_after.debits_available_minor == 350

    def test_post_amount_exceeds_pending(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        with pytest.raises(PostAmountExceedsPending) as raised:
            rules.plan_post_pending(
                pending=pending,
                debit=debit,
                credit=credit,
                amount_minor=201,
                resolution=None,
                now=NOW,
            )
        assert raised.value.extensions["pending_amount_minor"] == 200

    @pytest.mark.parametrize(
        ("resolved_by", "error"),
        [
            (Resolution.posted, PendingTransferAlreadyPosted),
            (Resolution.voided, PendingTransferAlreadyVoided),
            (Resolution.expired, PendingTransferExpired),
        ],
    )
    def test_resolves_once(self, resolved_by: Resolution, error: type[Exception]) -> None:
        pending, debit, credit = hold_of(
            customer(credits_posted=500), customer(), 200, NOW - timedelta(seconds=1)
        )
        with pytest.raises(error):
            rules.plan_post_pending(
                pending=pending,
                debit=debit,
                credit=credit,
                amount_minor=None,
                resolution=resolved_by,
                now=NOW,
            )

    def test_expired_at_its_deadline(self) -> None:
        deadline = NOW + timedelta(seconds=1)
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200, deadline)
        rules.plan_post_pending(
            pending=pending,
            debit=debit,
            credit=credit,
            amount_minor=None,
            resolution=None,
            now=deadline - timedelta(microseconds=1),
        )
        with pytest.raises(PendingTransferExpired):
            rules.plan_post_pending(
                pending=pending,
                debit=debit,
                credit=credit,
                amount_minor=None,
                resolution=None,
                now=deadline,
            )

    def test_allowed_on_frozen_accounts(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        plan = rules.plan_post_pending(
            pending=pending,
            debit=debit._replace(status=AccountStatus.frozen),
            credit=credit._replace(status=AccountStatus.frozen),
            amount_minor=None,
            resolution=None,
            now=NOW,
        )
        assert plan.amount_minor == 200

    def test_refused_into_a_closed_account(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        with pytest.raises(AccountNotActive):
            rules.plan_post_pending(
                pending=pending,
                debit=debit,
                credit=credit._replace(status=AccountStatus.closed),
                amount_minor=None,
                resolution=None,
                now=NOW,
            )


class TestVoidPending:
    def test_valid(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        plan = rules.plan_void_pending(
            pending=pending, debit=debit, credit=credit, resolution=None, now=NOW
        )
        assert plan.amount_minor == 200
        assert rules.apply(debit, plan.entries) == debit._replace(debits_pending=0)
        assert rules.apply(credit, plan.entries) == credit._replace(credits_pending=0)

    def test_allowed_on_any_status(self) -> None:
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        plan = rules.plan_void_pending(
            pending=pending,
            debit=debit._replace(status=AccountStatus.closed),
            credit=credit._replace(status=AccountStatus.frozen),
            resolution=None,
            now=NOW,
        )
        assert plan.amount_minor == 200

    def test_refused_at_the_deadline(self) -> None:
        """The expiry releases the hold; a void after it would release it twice."""
        deadline = NOW + timedelta(seconds=1)
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200, deadline)
        rules.plan_void_pending(
            pending=pending,
            debit=debit,
            credit=credit,
            resolution=None,
            now=deadline - timedelta(microseconds=1),
        )
        with pytest.raises(PendingTransferExpired):
            rules.plan_void_pending(
                pending=pending, debit=debit, credit=credit, resolution=None, now=deadline
            )

    @pytest.mark.parametrize(
        ("resolved_by", "error"),
        [
            (Resolution.posted, PendingTransferAlreadyPosted),
            (Resolution.voided, PendingTransferAlreadyVoided),
            (Resolution.expired, PendingTransferExpired),
        ],
    )
    def test_resolves_once(self, resolved_by: Resolution, error: type[Exception]) -> None:
        pending, debit, credit = hold_of(
            customer(credits_posted=500), customer(), 200, NOW - timedelta(seconds=1)
        )
        with pytest.raises(error):
            rules.plan_void_pending(
                pending=pending, debit=debit, credit=credit, resolution=resolved_by, now=NOW
            )


class TestExpiryVoid:
    def test_releases_the_whole_hold_on_any_status(self) -> None:
        deadline = NOW - timedelta(seconds=1)
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200, deadline)
        plan = rules.plan_expiry_void(
            pending=pending,
            debit=debit._replace(status=AccountStatus.closed),
            credit=credit._replace(status=AccountStatus.frozen),
            now=NOW,
        )
        assert rules.apply(debit, plan.entries).debits_pending == 0
        assert rules.apply(credit, plan.entries).credits_pending == 0

    def test_id_is_derived_from_the_hold(self) -> None:
        hold_id = uuid.uuid4()
        assert rules.expiry_void_id(hold_id) == rules.expiry_void_id(hold_id)
        assert rules.expiry_void_id(hold_id) != rules.expiry_void_id(uuid.uuid4())

    def test_before_the_deadline_is_a_programmer_error(self) -> None:
        pending, debit, credit = hold_of(
            customer(credits_posted=500), customer(), 200, NOW + timedelta(seconds=1)
        )
        with pytest.raises(AssertionError):
            rules.plan_expiry_void(pending=pending, debit=debit, credit=credit, now=NOW)

    def test_expired_holds_no_longer_count_in_balances(self) -> None:
        account = customer(credits_posted=500, debits_pending=300, credits_pending=50)
        view = rules.without_expired_holds(
            account, expired_debits_minor=200, expired_credits_minor=50
        )
        assert (view.debits_pending, view.credits_pending) == (100, 0)
        assert view.debits_available_minor == 400


class TestCheckShape:
    @pytest.mark.parametrize("kind", [LedgerTransferKind.single_phase, LedgerTransferKind.pending])
    @pytest.mark.parametrize(
        "missing", ["debit_account_id", "credit_account_id", "amount_minor", "currency"]
    )
    def test_opening_kinds_name_accounts_amount_currency(
        self, kind: LedgerTransferKind, missing: str
    ) -> None:
        fields: dict[str, Any] = {
            "debit_account_id": uuid.uuid4(),
            "credit_account_id": uuid.uuid4(),
            "amount_minor": 1,
            "currency": "EUR",
        }
        del fields[missing]
        with pytest.raises(InvalidLedgerTransfer) as raised:
            rules.check_shape(request(kind, **fields))
        assert raised.value.extensions["field"] == missing

    def test_opening_kinds_resolve_nothing(self) -> None:
        body = request(
            LedgerTransferKind.single_phase,
            debit_account_id=uuid.uuid4(),
            credit_account_id=uuid.uuid4(),
            amount_minor=1,
            currency="EUR",
            pending_id=uuid.uuid4(),
        )
        with pytest.raises(InvalidLedgerTransfer):
            rules.check_shape(body)

    def test_only_holds_time_out(self) -> None:
        body = request(
            LedgerTransferKind.single_phase,
            debit_account_id=uuid.uuid4(),
            credit_account_id=uuid.uuid4(),
            amount_minor=1,
            currency="EUR",
            timeout_seconds=5,
        )
        with pytest.raises(InvalidLedgerTransfer):
            rules.check_shape(body)
        with pytest.raises(InvalidLedgerTransfer):
            rules.check_shape(
                request(LedgerTransferKind.post_pending, pending_id=uuid.uuid4(), timeout_seconds=5)
            )

    @pytest.mark.parametrize(
        "kind", [LedgerTransferKind.post_pending, LedgerTransferKind.void_pending]
    )
    def test_resolving_kinds_need_pending_id(self, kind: LedgerTransferKind) -> None:
        with pytest.raises(InvalidLedgerTransfer) as raised:
            rules.check_shape(request(kind))
        assert raised.value.extensions["field"] == "pending_id"
        rules.check_shape(request(kind, pending_id=uuid.uuid4()))


class TestCheckMatchesPending:
    def pending(self) -> PendingSnapshot:
        return PendingSnapshot(uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), 200, "EUR", None)

    def test_omitted_fields_are_taken_from_the_hold(self) -> None:
        pending = self.pending()
        rules.check_matches_pending(
            request(LedgerTransferKind.post_pending, pending_id=pending.id), pending
        )

    def test_repeated_fields_must_agree(self) -> None:
        pending = self.pending()
        rules.check_matches_pending(
            request(
                LedgerTransferKind.void_pending,
                pending_id=pending.id,
                debit_account_id=pending.debit_account_id,
                currency="EUR",
                amount_minor=200,
            ),
            pending,
        )
        with pytest.raises(InvalidLedgerTransfer) as raised:
            rules.check_matches_pending(
                request(
                    LedgerTransferKind.post_pending,
                    pending_id=pending.id,
                    credit_account_id=uuid.uuid4(),
                ),
                pending,
            )
        assert raised.value.extensions["field"] == "credit_account_id"

    def test_void_releases_the_whole_hold(self) -> None:
        pending = self.pending()
        with pytest.raises(InvalidLedgerTransfer) as raised:
            rules.check_matches_pending(
                request(LedgerTransferKind.void_pending, pending_id=pending.id, amount_minor=100),
                pending,
            )
        assert raised.value.extensions["field"] == "amount_minor"


class TestFirstDifference:
    def stored(self, body: LedgerTransferCreate, **changes: Any) -> TransferRecord:
        fields: dict[str, Any] = {
            "debit_account_id": body.debit_account_id or uuid.uuid4(),
            "credit_account_id": body.credit_account_id or uuid.uuid4(),
            "amount_minor": body.amount_minor or 200,
            "currency": body.currency or "EUR",
            "pending_id": body.pending_id,
            "timeout_seconds": body.timeout_seconds,
            "expires_at": None,
            "reference": body.reference,
            "created_at": NOW,
        }
        fields.update(changes)
        return TransferRecord(id=body.id, kind=body.kind, **fields)

    def single_phase(self, **changes: Any) -> LedgerTransferCreate:
        fields: dict[str, Any] = {
            "debit_account_id": uuid.uuid4(),
            "credit_account_id": uuid.uuid4(),
            "amount_minor": 100,
            "currency": "EUR",
            "reference": "rent",
        }
        fields.update(changes)
        return request(LedgerTransferKind.single_phase, **fields)

    def test_same_fields(self) -> None:
        body = self.single_phase()
        assert rules.first_difference(body, self.stored(body)) is None

    @pytest.mark.parametrize(
        ("field", "other"),
        [
            ("amount_minor", 101),
            ("currency", "USD"),
            ("debit_account_id", uuid.uuid4()),
            ("credit_account_id", uuid.uuid4()),
            ("reference", "other"),
            ("reference", None),
        ],
    )
    def test_names_the_differing_field(self, field: str, other: object) -> None:
        body = self.single_phase()
        assert rules.first_difference(body, self.stored(body, **{field: other})) == field

    def test_kind_differs_first(self) -> None:
        body = self.single_phase()
        stored = replace(self.stored(body, amount_minor=1), kind=LedgerTransferKind.pending)
        assert rules.first_difference(body, stored) == "kind"

    def test_post_may_omit_what_it_took_from_the_hold(self) -> None:
        body = request(LedgerTransferKind.post_pending, pending_id=uuid.uuid4())
        stored = self.stored(body)
        assert rules.first_difference(body, stored) is None
        explicit = body.model_copy(update={"amount_minor": stored.amount_minor})
        assert rules.first_difference(explicit, stored) is None
        smaller = body.model_copy(update={"amount_minor": stored.amount_minor - 1})
        assert rules.first_difference(smaller, stored) == "amount_minor"


class TestAssertBalanced:
    def test_unbalanced_entries_are_a_programmer_error(self) -> None:
        account = uuid.uuid4()
        with pytest.raises(UnbalancedEntries, match="posted debits and credits differ by 1"):
            rules.assert_balanced([Entry(account, Balance.debits_posted, 1)])
        # Balanced overall but not per phase: a hold's credit is no posting's credit.
        with pytest.raises(UnbalancedEntries, match="pending debits and credits differ by -1"):
            rules.assert_balanced(
                [
                    Entry(account, Balance.debits_posted, 1),
                    Entry(account, Balance.credits_pending, 1),
                ]
            )

    def test_an_entry_of_nothing_is_a_programmer_error(self) -> None:
        account = uuid.uuid4()
        with pytest.raises(UnbalancedEntries, match="moves money"):
            rules.assert_balanced(
                [
                    Entry(account, Balance.debits_posted, 0),
                    Entry(account, Balance.credits_posted, 0),
                ]
            )

    def test_is_no_client_error(self) -> None:
        # A ProblemError would be rendered as a 4xx; this must surface as a 500.
        assert not issubclass(UnbalancedEntries, ProblemError)

    def test_balanced_entries_pass(self) -> None:
        debit, credit = uuid.uuid4(), uuid.uuid4()
        rules.assert_balanced(
            [
                Entry(debit, Balance.debits_pending, -5),
                Entry(credit, Balance.credits_pending, -5),
                Entry(debit, Balance.debits_posted, 3),
                Entry(credit, Balance.credits_posted, 3),
            ]
        )

    def test_a_transfer_without_entries_is_a_programmer_error(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Every kind writes entries; a void that wrote none would resolve its hold without
        # giving the money back.
        monkeypatch.setattr(rules, "_release", lambda pending: ())
        pending, debit, credit = hold_of(customer(credits_posted=500), customer(), 200)
        with pytest.raises(UnbalancedEntries, match="writes entries"):
            rules.plan_void_pending(
                pending=pending, debit=debit, credit=credit, resolution=None, now=NOW
            )

    def test_survives_python_optimizations(self) -> None:
        # `python -O` strips assert statements; the check that guards money must stay.
        program = (
            "import uuid\n"
            "from accounts.ledger.rules import Balance, Entry, assert_balanced\n"
            "assert False, 'asserts are on'\n"
            "assert_balanced([Entry(uuid.uuid4(), Balance.debits_posted, 100)])\n"
        )
        finished = subprocess.run(
            [sys.executable, "-O", "-c", program],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=Path(__file__).resolve().parents[2],
        )
        assert finished.returncode == 1, finished.stderr
        assert "UnbalancedEntries: posted debits and credits differ by 100" in finished.stderr


operations = st.lists(
    st.tuples(
        st.sampled_from(["deposit", "transfer", "hold", "post", "void"]),
        st.integers(min_value=1, max_value=1_000),
        st.integers(min_value=0, max_value=1_000),
    ),
    max_size=60,
)


class LedgerModel:
    """Three accounts in memory, changed only through the rules under test."""

    def __init__(self) -> None:
        self.accounts = {account.id: account for account in (system(), customer(), customer())}
        self.bank, self.alice, self.bob = list(self.accounts)
        self.holds: list[PendingSnapshot] = []
        self.resolutions: dict[uuid.UUID, Resolution] = {}
        self.journal: list[Entry] = []

    def plan(self, operation: str, amount_minor: int, pick: int) -> rules.Plan | None:
        customers = (self.alice, self.bob) if pick % 2 else (self.bob, self.alice)
        debit, credit = (self.accounts[account_id] for account_id in customers)
        if operation == "deposit":
            return rules.plan_single_phase(
                debit=self.accounts[self.bank],
                credit=credit,
                amount_minor=amount_minor,
                currency="EUR",
            )
        if operation == "transfer":
            return rules.plan_single_phase(
                debit=debit, credit=credit, amount_minor=amount_minor, currency="EUR"
            )
        if operation == "hold":
            plan = rules.plan_pending(
                debit=debit,
                credit=credit,
                amount_minor=amount_minor,
                currency="EUR",
                timeout_seconds=None,
                now=NOW,
            )
            self.holds.append(
                PendingSnapshot(uuid.uuid4(), debit.id, credit.id, amount_minor, "EUR", None)
            )
            return plan
        if not self.holds:
            return None
        pending = self.holds[pick % len(self.holds)]
        held_debit = self.accounts[pending.debit_account_id]
        held_credit = self.accounts[pending.credit_account_id]
        resolved_by = self.resolutions.get(pending.id)
        if operation == "post":
            plan = rules.plan_post_pending(
                pending=pending,
                debit=held_debit,
                credit=held_credit,
                amount_minor=amount_minor,
                resolution=resolved_by,
                now=NOW,
            )
            self.resolutions[pending.id] = Resolution.posted
            return plan
        plan = rules.plan_void_pending(
            pending=pending, debit=held_debit, credit=held_credit, resolution=resolved_by, now=NOW
        )
        self.resolutions[pending.id] = Resolution.voided
        return plan

    def record(self, plan: rules.Plan) -> None:
        self.journal.extend(plan.entries)
        self.accounts = {
            account_id: rules.apply(account, plan.entries)
            for account_id, account in self.accounts.items()
        }

    def assert_invariants(self) -> None:
        rules.assert_balanced(self.journal)
        for account in self.accounts.values():
            for balance in Balance:
                journal_sum = sum(
                    entry.amount_minor
                    for entry in self.journal
                    if entry.account_id == account.id and entry.balance == balance
                )
                assert account.total(balance) == journal_sum >= 0
            if account.debits_must_not_exceed_credits:
                assert account.debits_available_minor >= 0


class TestLedgerProperties:
    @settings(max_examples=200, deadline=None)
    @given(operations)
    def test_any_sequence_keeps_the_invariants(self, steps: list[tuple[str, int, int]]) -> None:
        """Whatever is attempted: no overdraft, double entry holds, totals equal the journal,
        and a hold resolves at most once."""
        model = LedgerModel()
        for operation, amount_minor, pick in steps:
            try:
                plan = model.plan(operation, amount_minor, pick)
            # What the rules may refuse here; any other error fails the test.
            except (
                InsufficientFunds,
                PostAmountExceedsPending,
                PendingTransferAlreadyPosted,
                PendingTransferAlreadyVoided,
            ):
                continue
            if plan is not None:
                model.record(plan)
            model.assert_invariants()
