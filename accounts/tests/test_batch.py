"""POST /v1/ledger/transfers/batch: up to 1,000 events in one transaction, one result per
event in order, linked chains that succeed or fail as a whole."""

import uuid
from typing import Any

from accounts.tests.helpers import Bank, Clock, hold_event, single_phase_event
from contracts.accounts import LedgerTransfer, LedgerTransferBatchResults


async def assert_untouched(bank: Bank, account_id: str) -> None:
    balances = await bank.balances(account_id)
    assert (balances["posted_minor"], balances["available_minor"]) == (1000, 1000)


def slugs(results: list[dict[str, Any]]) -> list[str | int]:
    """Each result's problem slug, or its status when it succeeded."""
    return [
        result["problem"]["type"].removeprefix("urn:sagabank:problem:")
        if result["problem"]
        else result["status"]
        for result in results
    ]


class TestBatch:
    async def test_valid(self, bank: Bank, alice: str, bob: str) -> None:
        ids = [str(uuid.uuid4()) for _ in range(3)]
        results = await bank.batch(
            single_phase_event(alice, bob, 100, id=ids[0], reference="one"),
            hold_event(alice, bob, 200, id=ids[1], timeout_seconds=60),
            single_phase_event(alice, bob, 300, id=ids[2]),
        )
        assert slugs(results) == [201, 201, 201]
        assert [result["transfer"]["id"] for result in results] == ids
        assert results[1]["transfer"]["expires_at"] is not None
        # Each result's transfer is what GET answers for it, field for field.
        for result in results:
            stored = await bank.client.get(f"/v1/ledger/transfers/{result['transfer']['id']}")
            assert stored.json() == result["transfer"]
            assert result["problem"] is None
        balances = await bank.balances(alice)
        assert (balances["posted_minor"], balances["available_minor"]) == (600, 400)
        await bank.assert_ledger_sound()

    async def test_answers_the_documented_shape(self, bank: Bank, alice: str, bob: str) -> None:
        events = [single_phase_event(alice, bob, 1), single_phase_event(alice, bob, 10**6)]
        body = [{"id": str(uuid.uuid4()), **event} for event in events]
        response = await bank.client.post(
            "/v1/ledger/transfers/batch", json={"transfers": body}, headers=bank.operator
        )
        document = LedgerTransferBatchResults.model_validate_json(response.content)
        assert document.results[0].transfer == LedgerTransfer.model_validate(
            response.json()["results"][0]["transfer"]
        )
        assert document.results[1].problem is not None
        assert document.results[1].problem.status == 409

    async def test_events_see_the_ones_before(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = str(uuid.uuid4())
        results = await bank.batch(
            hold_event(alice, bob, 600, id=hold_id),
            {"kind": "post_pending", "pending_id": hold_id, "amount_minor": 250},
            single_phase_event(bob, alice, 250),
            single_phase_event(alice, bob, 1001),
        )
        assert slugs(results) == [201, 201, 201, "insufficient-funds"]
        assert results[3]["problem"]["available_minor"] == 1000
        assert (await bank.balances(alice))["posted_minor"] == 1000
        assert (await bank.balances(bob))["posted_minor"] == 0
        await bank.assert_ledger_sound()

    async def test_a_hold_voided_in_the_same_batch(self, bank: Bank, alice: str, bob: str) -> None:
        """Found by the model test: the entries cancel out and no total changes."""
        hold_id = str(uuid.uuid4())
        results = await bank.batch(
            hold_event(alice, bob, 300, id=hold_id, timeout_seconds=60),
            {"kind": "void_pending", "pending_id": hold_id},
        )
        assert slugs(results) == [201, 201]
        await assert_untouched(bank, alice)
        entries = await bank.statement(alice)
        assert [entry["amount_minor"] for entry in entries] == [1000, 300, -300]
        assert (await bank.invariants())["expired_holds_unswept_count"] == 0
        await bank.assert_ledger_sound()

    async def test_failures_are_independent(self, bank: Bank, alice: str, bob: str) -> None:
        results = await bank.batch(
            single_phase_event(alice, bob, 100),
            single_phase_event(alice, str(uuid.uuid4()), 100),
            single_phase_event(alice, alice, 100),
            single_phase_event(alice, bob, 100, currency="GBP"),
            {"kind": "post_pending", "pending_id": str(uuid.uuid4())},
            {"kind": "single_phase", "debit_account_id": alice},
            single_phase_event(alice, bob, 100),
        )
        assert slugs(results) == [
            201,
            "account-not-found",
            "same-account",
            "currency-mismatch",
            "pending-transfer-not-found",
            "invalid-ledger-transfer",
            201,
        ]
        assert (await bank.balances(bob))["posted_minor"] == 200
        await bank.assert_ledger_sound()

    async def test_replay(self, bank: Bank, alice: str, bob: str) -> None:
        events = [
            single_phase_event(alice, bob, 100, id=str(uuid.uuid4())),
            hold_event(alice, bob, 100, id=str(uuid.uuid4())),
        ]
        first = await bank.batch(*events)
        again = await bank.batch(*events)
        assert slugs(again) == [200, 200]
        assert [result["transfer"] for result in again] == [result["transfer"] for result in first]
        changed = await bank.batch({**events[0], "amount_minor": 101})
        assert slugs(changed) == ["ledger-transfer-exists"]
        assert changed[0]["problem"]["field"] == "amount_minor"
        assert (await bank.balances(alice))["available_minor"] == 800

    async def test_same_id_twice_in_one_batch(self, bank: Bank, alice: str, bob: str) -> None:
        event = single_phase_event(alice, bob, 100, id=str(uuid.uuid4()))
        results = await bank.batch(event, event, {**event, "amount_minor": 5})
        assert slugs(results) == [201, 200, "ledger-transfer-exists"]
        assert (await bank.balances(bob))["posted_minor"] == 100

    async def test_expired_hold_in_a_batch(
        self, bank: Bank, alice: str, bob: str, clock: Clock
    ) -> None:
        hold_id = await bank.placed_hold(alice, bob, 1000, timeout_seconds=5)
        clock.advance(5)
        results = await bank.batch(
            {"kind": "post_pending", "pending_id": hold_id},
            single_phase_event(alice, bob, 1000),
        )
        assert slugs(results) == ["pending-transfer-expired", 201]
        await bank.assert_ledger_sound()

    async def test_size_is_bounded(self, bank: Bank, alice: str, bob: str) -> None:
        event = single_phase_event(alice, bob, 1)
        for size in (0, 1001):
            transfers = [{"id": str(uuid.uuid4()), **event} for _ in range(size)]
            response = await bank.client.post(
                "/v1/ledger/transfers/batch", json={"transfers": transfers}, headers=bank.operator
            )
            assert response.status_code == 422, response.text
            assert response.json()["type"] == "urn:sagabank:problem:invalid-request"
        assert (await bank.balances(alice))["posted_minor"] == 1000

    async def test_a_thousand_events(self, bank: Bank, alice: str, bob: str) -> None:
        results = await bank.batch(*[single_phase_event(alice, bob, 1) for _ in range(1000)])
        assert slugs(results) == [201] * 1000
        assert (await bank.balances(bob))["posted_minor"] == 1000
        assert (await bank.balances(alice))["available_minor"] == 0
        await bank.assert_ledger_sound()


class TestLinkedChains:
    async def test_a_chain_that_fails_rolls_back(self, bank: Bank, alice: str, bob: str) -> None:
        carol: str = (await bank.open_account(customer_id="carol"))["id"]
        hold_id = str(uuid.uuid4())
        results = await bank.batch(
            single_phase_event(alice, bob, 100),
            hold_event(alice, carol, 300, id=hold_id, linked=True),
            single_phase_event(alice, bob, 200, linked=True),
            {"kind": "post_pending", "pending_id": hold_id, "linked": True},
            single_phase_event(alice, carol, 1000),  # fails: the chain's last event
            single_phase_event(alice, carol, 50),
        )
        assert slugs(results) == [
            201,
            "linked-event-failed",
            "linked-event-failed",
            "linked-event-failed",
            "insufficient-funds",
            201,
        ]
        assert results[1]["status"] == 424
        assert results[1]["problem"]["failed_event_index"] == 4
        assert results[4]["problem"]["available_minor"] == 400
        # Nothing of the chain happened; the events around it did.
        assert (await bank.balances(alice))["posted_minor"] == 850
        assert (await bank.balances(carol))["posted_minor"] == 50
        missing = await bank.client.get(f"/v1/ledger/transfers/{hold_id}")
        assert missing.status_code == 404
        await bank.assert_ledger_sound()

    async def test_a_chain_that_succeeds(self, bank: Bank, alice: str, bob: str) -> None:
        hold_id = str(uuid.uuid4())
        results = await bank.batch(
            hold_event(alice, bob, 300, id=hold_id, linked=True),
            {"kind": "post_pending", "pending_id": hold_id, "amount_minor": 100, "linked": True},
            single_phase_event(bob, alice, 100),
        )
        assert slugs(results) == [201, 201, 201]
        assert (await bank.balances(alice))["posted_minor"] == 1000
        await bank.assert_ledger_sound()

    async def test_first_failure_in_the_middle(self, bank: Bank, alice: str, bob: str) -> None:
        results = await bank.batch(
            single_phase_event(alice, bob, 100, linked=True),
            single_phase_event(alice, alice, 1, linked=True),
            single_phase_event(alice, bob, 100),
        )
        assert slugs(results) == ["linked-event-failed", "same-account", "linked-event-failed"]
        assert results[0]["problem"]["failed_event_index"] == 1
        assert (await bank.balances(bob))["posted_minor"] == 0

    async def test_an_open_chain_fails_whole(self, bank: Bank, alice: str, bob: str) -> None:
        results = await bank.batch(
            single_phase_event(alice, bob, 100),
            single_phase_event(alice, bob, 100, linked=True),
            single_phase_event(alice, bob, 100, linked=True),
        )
        assert slugs(results) == [201, "linked-event-chain-open", "linked-event-chain-open"]
        assert (await bank.balances(bob))["posted_minor"] == 100

    async def test_a_failed_chain_gives_its_hold_and_ids_back(
        self, bank: Bank, alice: str, bob: str
    ) -> None:
        """A failed chain leaves its hold unresolved and its ids unused: the post after it
        goes through, and the void's id, tried again, is a new void (refused on its own)."""
        hold_id = await bank.placed_hold(alice, bob, 500)
        void_id = str(uuid.uuid4())
        results = await bank.batch(
            {"kind": "void_pending", "pending_id": hold_id, "id": void_id, "linked": True},
            single_phase_event(alice, alice, 1),
            {"kind": "post_pending", "pending_id": hold_id},
            {"kind": "void_pending", "pending_id": hold_id, "id": void_id},
        )
        assert slugs(results) == [
            "linked-event-failed",
            "same-account",
            201,
            "pending-transfer-already-posted",
        ]
        missing = await bank.client.get(f"/v1/ledger/transfers/{void_id}")
        assert missing.status_code == 404
        assert (await bank.balances(bob))["posted_minor"] == 500
