"""The service against a model of the ledger: random deposits, withdrawals, transfers,
holds, posts, voids, batches with linked chains, replays, freezes, limit changes, clock
moves and sweeps. After every step each account's balances must be what the model says,
and every answer the status and problem the model predicts.

The model is written from the rules as the issue states them, on purpose without
`accounts.ledger.rules`: a shared bug would otherwise agree with itself.
"""

import asyncio
import copy
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.config import Settings
from accounts.ledger import service
from accounts.resources import AccountsResources
from accounts.tests.helpers import Clock, accounts_app
from kit.resources import resources_of
from kit.testing import TestIssuer, app_client

START = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
amounts = st.integers(min_value=1, max_value=1_500)


@dataclass
class ModelAccount:
    id: str
    debits_rule: bool = True
    credits_rule: bool = False
    overdraft_minor: int = 0
    max_transfer_minor: int | None = None
    daily_limit_minor: int | None = None
    status: str = "active"
    debits_pending: int = 0
    debits_posted: int = 0
    credits_pending: int = 0
    credits_posted: int = 0


@dataclass
class ModelHold:
    id: str
    debit: str
    credit: str
    amount_minor: int
    expires_at: datetime | None
    resolution: str | None = None
    posted_minor: int = 0


@dataclass
class ModelLedger:
    """The ledger's rules, as plainly as they can be written."""

    now: datetime
    accounts: dict[str, ModelAccount] = field(default_factory=dict)
    holds: dict[str, ModelHold] = field(default_factory=dict)
    # Opening transfers debiting each account: (kind, amount, hold id or None)
    sent: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    requests: dict[str, dict[str, Any]] = field(default_factory=dict)

    def expired(self, hold: ModelHold) -> bool:
        return hold.expires_at is not None and self.now >= hold.expires_at

    def effective(self, account: ModelAccount) -> tuple[int, int, int, int]:
        """(debits_pending, debits_posted, credits_pending, credits_posted) as of now."""
        expired_out = sum(
            hold.amount_minor
            for hold in self.holds.values()
            if hold.debit == account.id and hold.resolution is None and self.expired(hold)
        )
        expired_in = sum(
            hold.amount_minor
            for hold in self.holds.values()
            if hold.credit == account.id and hold.resolution is None and self.expired(hold)
        )
        return (
            account.debits_pending - expired_out,
            account.debits_posted,
            account.credits_pending - expired_in,
            account.credits_posted,
        )

    def outflow_today(self, account_id: str) -> int:
        total = 0
        for debit, kind, amount, hold_id in self.sent:
            if debit != account_id:
                continue
            if kind == "single_phase":
                total += amount
                continue
            assert hold_id is not None, "a hold has an id"
            hold = self.holds[hold_id]
            if hold.resolution == "posted":
                total += hold.posted_minor
            elif hold.resolution is None and not self.expired(hold):
                total += amount
        return total

    def apply(self, event: dict[str, Any]) -> tuple[int, str | None]:
        """The status and problem slug the service must answer; changes the model."""
        stored = self.requests.get(event["id"])
        if stored is not None:
            same = {k: v for k, v in event.items() if k != "linked"} == {
                k: v for k, v in stored.items() if k != "linked"
            }
            return (200, None) if same else (409, "ledger-transfer-exists")
        if event["kind"] in ("single_phase", "pending"):
            outcome = self._open(event)
        else:
            outcome = self._resolve(event)
        if outcome[0] == 201:
            self.requests[event["id"]] = event
        return outcome

    def _open(self, event: dict[str, Any]) -> tuple[int, str | None]:
        debit_id, credit_id, amount = (
            event["debit_account_id"],
            event["credit_account_id"],
            event["amount_minor"],
        )
        if debit_id == credit_id:
            return 422, "same-account"
        debit, credit = self.accounts[debit_id], self.accounts[credit_id]
        if debit.status != "active" or credit.status != "active":
            return 409, "account-not-active"
        if debit.max_transfer_minor is not None and amount > debit.max_transfer_minor:
            return 422, "transfer-limit-exceeded"
        if (
            debit.daily_limit_minor is not None
            and self.outflow_today(debit_id) + amount > debit.daily_limit_minor
        ):
            return 409, "daily-outflow-limit-exceeded"
        pending, posted, _, credits_posted = self.effective(debit)
        if debit.debits_rule and pending + posted + amount - credits_posted > debit.overdraft_minor:
            return 409, "insufficient-funds"
        _, debits_posted, credits_pending, credits = self.effective(credit)
        if credit.credits_rule and credits_pending + credits + amount > debits_posted:
            return 409, "insufficient-funds"
        if event["kind"] == "single_phase":
            debit.debits_posted += amount
            credit.credits_posted += amount
            self.sent.append((debit_id, "single_phase", amount, None))
        else:
            debit.debits_pending += amount
            credit.credits_pending += amount
            timeout = event.get("timeout_seconds")
            expires_at = None if timeout is None else self.now + timedelta(seconds=timeout)
            self.holds[event["id"]] = ModelHold(
                event["id"], debit_id, credit_id, amount, expires_at
            )
            self.sent.append((debit_id, "pending", amount, event["id"]))
        return 201, None

    def _resolve(self, event: dict[str, Any]) -> tuple[int, str | None]:
        hold = self.holds.get(event["pending_id"])
        if hold is None:
            return 404, "pending-transfer-not-found"
        if hold.resolution == "posted":
            return 409, "pending-transfer-already-posted"
        if hold.resolution == "voided":
            return 409, "pending-transfer-already-voided"
        if self.expired(hold):
            return 409, "pending-transfer-expired"
        amount = event.get("amount_minor", hold.amount_minor)
        if event["kind"] == "post_pending" and amount > hold.amount_minor:
            return 409, "post-amount-exceeds-pending"
        debit, credit = self.accounts[hold.debit], self.accounts[hold.credit]
        debit.debits_pending -= hold.amount_minor
        credit.credits_pending -= hold.amount_minor
        if event["kind"] == "post_pending":
            debit.debits_posted += amount
            credit.credits_posted += amount
            hold.resolution, hold.posted_minor = "posted", amount
        else:
            hold.resolution = "voided"
        return 201, None

    def apply_batch(self, events: list[dict[str, Any]]) -> list[tuple[int, str | None]]:
        outcomes: list[tuple[int, str | None]] = []
        index = 0
        while index < len(events):
            end = index
            while end < len(events) and events[end].get("linked"):
                end += 1
            if end == len(events):  # the batch ends inside a chain
                outcomes += [(422, "linked-event-chain-open")] * (end - index)
                break
            if end == index:
                outcomes.append(self.apply(events[index]))
                index += 1
                continue
            saved = copy.deepcopy((self.accounts, self.holds, self.sent, self.requests))
            chain: list[tuple[int, str | None]] = []
            for event in events[index : end + 1]:
                chain.append(self.apply(event))
                if chain[-1][0] >= 400:
                    break
            if chain[-1][0] >= 400:
                self.accounts, self.holds, self.sent, self.requests = saved
                failed = len(chain) - 1
                chain = [
                    chain[failed] if position == failed else (424, "linked-event-failed")
                    for position in range(end + 1 - index)
                ]
            outcomes += chain
            index = end + 1
        return outcomes


def outcome_of(response: httpx.Response) -> tuple[int, str | None]:
    if response.status_code >= 400:
        return response.status_code, response.json()["type"].removeprefix("urn:sagabank:problem:")
    return response.status_code, None


class LedgerMachine(RuleBasedStateMachine):
    database_url = ""
    signing_keys_dir = Path()
    issuer: TestIssuer  # set by the test before the machine runs

    def __init__(self) -> None:
        super().__init__()
        self.runner = asyncio.Runner()
        self.clock = Clock(START)
        self.model = ModelLedger(now=START)
        self.customer = f"model-{uuid.uuid4().hex[:12]}"
        app_settings = Settings(
            database_url=self.database_url,
            log_json=True,
            log_level="warning",
            hold_sweep_enabled=False,
            signing_keys_dir=self.signing_keys_dir,
        )
        self.app = accounts_app(app_settings, clock=self.clock, token_verifier=self.issuer.verifier)
        self.operator = self.issuer.operator()
        self.worker = self.issuer.worker()
        self.client_context = app_client(self.app)
        self.client: httpx.AsyncClient = self.runner.run(self.client_context.__aenter__())
        self.ids: list[str] = []
        for options in (
            {},
            {"overdraft_limit_minor": 300, "daily_outflow_limit_minor": 2_000},
            {"balance_rule": "credits_must_not_exceed_debits"},
            {"max_transfer_amount_minor": 500},
        ):
            account = self.call(
                "POST",
                "/v1/accounts",
                {"currency": "EUR", **options},
                **self.issuer.customer(self.customer),
            )
            assert account.status_code == 201, account.text
            body = account.json()
            self.ids.append(body["id"])
            self.model.accounts[body["id"]] = ModelAccount(
                id=body["id"],
                debits_rule=body["debits_must_not_exceed_credits"],
                credits_rule=body["credits_must_not_exceed_debits"],
                overdraft_minor=body["overdraft_limit_minor"] or 0,
                max_transfer_minor=body["max_transfer_amount_minor"],
                daily_limit_minor=body["daily_outflow_limit_minor"],
            )

    def call(self, method: str, path: str, body: Any = None, **headers: str) -> httpx.Response:
        """As the saga's worker for the ledger's validations, as an operator otherwise (any
        ledger transfer needs accounts:admin), unless `headers` name someone else."""
        caller = self.worker if path.startswith("/v1/ledger/validations") else self.operator
        return self.runner.run(
            self.client.request(method, path, json=body, headers={**caller, **headers})
        )

    def teardown(self) -> None:
        try:
            report = self.call("GET", "/v1/admin/ledger/invariants").json()
            assert report["ok"], report
        finally:
            self.runner.run(self.client_context.__aexit__(None, None, None))
            self.runner.close()

    # --- money in and out, through the system account -----------------------------------

    def external(self, direction: str, account_id: str, amount: int) -> None:
        response = self.call(
            "POST",
            f"/v1/accounts/{account_id}/{direction}",
            {"amount_minor": amount, "currency": "EUR"},
            **{"Idempotency-Key": uuid.uuid4().hex},
        )
        system = ModelAccount(id="system", debits_rule=False)
        self.model.accounts["system"] = self.model.accounts.get("system", system)
        debit, credit = (
            ("system", account_id) if direction == "deposits" else (account_id, "system")
        )
        event = {
            "id": str(uuid.uuid4()),
            "kind": "single_phase",
            "debit_account_id": debit,
            "credit_account_id": credit,
            "amount_minor": amount,
        }
        assert outcome_of(response) == self.model.apply(event), response.text

    @rule(account=st.integers(0, 3), amount=amounts)
    def deposit(self, account: int, amount: int) -> None:
        self.external("deposits", self.ids[account], amount)

    @rule(account=st.integers(0, 3), amount=amounts)
    def withdraw(self, account: int, amount: int) -> None:
        self.external("withdrawals", self.ids[account], amount)

    # --- ledger transfers ---------------------------------------------------------------

    def opening(
        self, kind: str, debit: int, credit: int, amount: int, **extra: Any
    ) -> dict[str, Any]:
        return {
            "id": str(uuid.uuid4()),
            "kind": kind,
            "debit_account_id": self.ids[debit],
            "credit_account_id": self.ids[credit],
            "amount_minor": amount,
            "currency": "EUR",
            **extra,
        }

    def send(self, event: dict[str, Any]) -> None:
        response = self.call("POST", "/v1/ledger/transfers", event)
        assert outcome_of(response) == self.model.apply(event), response.text

    @rule(debit=st.integers(0, 3), credit=st.integers(0, 3), amount=amounts)
    def single_phase(self, debit: int, credit: int, amount: int) -> None:
        self.send(self.opening("single_phase", debit, credit, amount))

    @rule(
        debit=st.integers(0, 3),
        credit=st.integers(0, 3),
        amount=amounts,
        timeout=st.sampled_from([None, 5, 30]),
    )
    def hold(self, debit: int, credit: int, amount: int, timeout: int | None) -> None:
        extra = {} if timeout is None else {"timeout_seconds": timeout}
        self.send(self.opening("pending", debit, credit, amount, **extra))

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data(), partial=st.none() | amounts)
    def post(self, data: st.DataObject, partial: int | None) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.model.holds)))
        event: dict[str, Any] = {
            "id": str(uuid.uuid4()),
            "kind": "post_pending",
            "pending_id": hold_id,
        }
        if partial is not None:
            event["amount_minor"] = partial
        self.send(event)

    @precondition(lambda self: bool(self.model.holds))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.model.holds)))
        self.send({"id": str(uuid.uuid4()), "kind": "void_pending", "pending_id": hold_id})

    @precondition(lambda self: bool(self.model.requests))
    @rule(data=st.data())
    def replay(self, data: st.DataObject) -> None:
        event = data.draw(st.sampled_from(list(self.model.requests.values())))
        if "system" in (event.get("debit_account_id"), event.get("credit_account_id")):
            return  # deposits and withdrawals replay through their Idempotency-Key
        event = {key: value for key, value in event.items() if key != "linked"}
        response = self.call("POST", "/v1/ledger/transfers", event)
        assert response.status_code == 200, response.text

    @rule(
        events=st.lists(
            st.tuples(
                st.sampled_from(["single_phase", "pending", "post", "void"]),
                st.integers(0, 3),
                st.integers(0, 3),
                amounts,
                st.booleans(),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def batch(self, events: list[tuple[str, int, int, int, bool]]) -> None:
        body: list[dict[str, Any]] = []
        created_holds: list[str] = []
        for kind, debit, credit, amount, linked in events:
            holds = sorted(self.model.holds) + created_holds
            if kind in ("post", "void") and holds:
                event = {
                    "id": str(uuid.uuid4()),
                    "kind": f"{kind}_pending",
                    "pending_id": holds[amount % len(holds)],
                }
            else:
                opening_kind = "pending" if kind == "pending" else "single_phase"
                event = self.opening(opening_kind, debit, credit, amount)
                if opening_kind == "pending":
                    created_holds.append(event["id"])
            body.append({**event, "linked": linked})
        response = self.call("POST", "/v1/ledger/transfers/batch", {"transfers": body})
        assert response.status_code == 200, response.text
        answered = [
            (result["status"], result["problem"]["type"].removeprefix("urn:sagabank:problem:"))
            if result["problem"]
            else (result["status"], None)
            for result in response.json()["results"]
        ]
        assert answered == self.model.apply_batch(body), body

    # --- operators and time -------------------------------------------------------------

    @rule(account=st.integers(0, 3), action=st.sampled_from(["freeze", "unfreeze"]))
    def change_status(self, account: int, action: str) -> None:
        response = self.call("POST", f"/v1/accounts/{self.ids[account]}/{action}")
        assert response.status_code == 200, response.text
        self.model.accounts[self.ids[account]].status = "frozen" if action == "freeze" else "active"

    @rule(limit=st.none() | st.integers(1, 3_000))
    def change_daily_limit(self, limit: int | None) -> None:
        response = self.call(
            "PATCH", f"/v1/accounts/{self.ids[1]}/limits", {"daily_outflow_limit_minor": limit}
        )
        assert response.status_code == 200, response.text
        self.model.accounts[self.ids[1]].daily_limit_minor = limit

    @rule(seconds=st.sampled_from([1, 10, 40]))
    def advance_clock(self, seconds: int) -> None:
        self.clock.advance(seconds)
        self.model.now = self.clock.now

    @rule()
    def sweep(self) -> None:
        database = resources_of(self.app, AccountsResources).ledger
        self.runner.run(service.sweep_expired_holds(database, now=self.clock.now, batch_size=3))

    # --- after every step ---------------------------------------------------------------

    @invariant()
    def balances_agree(self) -> None:
        response = self.runner.run(
            self.client.get(
                "/v1/accounts", params={"customer_id": self.customer}, headers=self.operator
            )
        )
        assert response.status_code == 200, response.text
        for account in response.json()["items"]:
            model = self.model.accounts[account["id"]]
            balances = account["balances"]
            assert account["status"] == model.status
            assert (
                balances["debits_pending_minor"],
                balances["debits_posted_minor"],
                balances["credits_pending_minor"],
                balances["credits_posted_minor"],
            ) == self.model.effective(model), account["id"]


def test_the_service_agrees_with_its_model(
    database_url: str, signing_keys_dir: Path, issuer: TestIssuer
) -> None:
    LedgerMachine.database_url = database_url
    LedgerMachine.signing_keys_dir = signing_keys_dir
    LedgerMachine.issuer = issuer
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
