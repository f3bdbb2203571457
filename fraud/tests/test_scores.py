import asyncio
import uuid
from dataclasses import replace
from datetime import datetime, timedelta

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from fraud.resources import FraudResources
from fraud.ruleset import Ruleset
from fraud.tests.clock import SettableClock
from kit.resources import install_resources, resources_of
from kit.testing import assert_problem


def _score_request(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "transfer_id": str(uuid.uuid4()),
        "source_account_id": str(uuid.uuid4()),
        "target_account_id": str(uuid.uuid4()),
        "amount_minor": 125_00,
        "currency": "EUR",
    }
    body.update(overrides)
    return body


def _codes(score: dict[str, object]) -> list[object]:
    reasons = score["reasons"]
    assert isinstance(reasons, list)
    return [reason["code"] for reason in reasons]


async def _score(worker: httpx.AsyncClient, **overrides: object) -> dict[str, object]:
    response = await worker.post("/v1/scores", json=_score_request(**overrides))
    assert response.status_code == 201, response.text
    body: dict[str, object] = response.json()
    return body


def _counted(name: str, label: str) -> dict[str, float]:
    """The counter's value per value of `label`."""
    return {
        sample.labels[label]: sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == name
    }


class TestScoreTransfer:
    async def test_valid(
        self, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        request = _score_request()
        response = await worker.post("/v1/scores", json=request)
        assert response.status_code == 201, response.text
        score = response.json()
        assert score["transfer_id"] == request["transfer_id"]
        assert score["score"] == 0
        assert score["decision"] == "approve"
        assert score["reasons"] == []
        assert score["ruleset_version"] == ruleset.version
        assert datetime.fromisoformat(score["created_at"]) == clock.now
        fetched = await worker.get(f"/v1/scores/{request['transfer_id']}")
        assert fetched.status_code == 200
        assert fetched.json() == score

    async def test_large_amount_goes_to_review(self, worker: httpx.AsyncClient) -> None:
        score = await _score(worker, amount_minor=10_000_00)
        assert score["decision"] == "review"
        assert score["score"] == 650
        assert _codes(score) == ["large_amount", "first_counterparty_large", "brand_new_account"]
        reasons = score["reasons"]
        assert isinstance(reasons, list)
        assert "10000.00 EUR" in reasons[0]["text"]
        assert sum(reason["points"] for reason in reasons) == score["score"]

    async def test_very_large_amount_is_declined(self, worker: httpx.AsyncClient) -> None:
        score = await _score(worker, amount_minor=50_000_00)
        assert score["decision"] == "decline"
        assert score["score"] == 1000
        assert _codes(score)[0] == "very_large_amount"

    async def test_replay_returns_the_stored_score(self, worker: httpx.AsyncClient) -> None:
        request = _score_request(amount_minor=10_000_00)
        first = await worker.post("/v1/scores", json=request)
        second = await worker.post("/v1/scores", json=request)
        assert first.status_code == 201
        assert second.status_code == 200
        assert second.json() == first.json()

    async def test_a_decision_and_its_rule_hits_count_once(self, worker: httpx.AsyncClient) -> None:
        request = _score_request(amount_minor=10_000_00)
        decision_before = _counted("sagabank_fraud_decisions_total", "outcome")
        hits_before = _counted("sagabank_fraud_rule_hits_total", "rule")
        first = (await worker.post("/v1/scores", json=request)).json()
        assert (await worker.post("/v1/scores", json=request)).status_code == 200
        decisions = _counted("sagabank_fraud_decisions_total", "outcome")
        hits = _counted("sagabank_fraud_rule_hits_total", "rule")
        assert decisions[first["decision"]] - decision_before.get(first["decision"], 0) == 1
        assert first["reasons"], "a large amount hits a rule"
        for reason in first["reasons"]:
            assert hits[reason["code"]] - hits_before.get(reason["code"], 0) == 1

    async def test_replay_ignores_later_history_and_ruleset(
        self, app: FastAPI, worker: httpx.AsyncClient, ruleset: Ruleset, clock: SettableClock
    ) -> None:
        source = str(uuid.uuid4())
        request = _score_request(source_account_id=source, amount_minor=10_00)
        first = await worker.post("/v1/scores", json=request)
        assert first.json()["decision"] == "approve"
        # The source turns busy, and the operators make every transfer a decline.
        for _ in range(ruleset.rules.velocity.hour_transfers_min):
            clock.advance(timedelta(seconds=1))
            await _score(worker, source_account_id=source, amount_minor=10_00)
        strict = {"version": "strict", "review_at": 1, "decline_at": 2}
        stricter = Ruleset.model_validate({**ruleset.model_dump(), **strict})
        install_resources(app, replace(resources_of(app, FraudResources), ruleset=stricter))

        replay = await worker.post("/v1/scores", json=request)
        assert replay.status_code == 200
        assert replay.json() == first.json()
        # A new transfer with the same details is judged by today's ruleset and history.
        fresh = await _score(worker, source_account_id=source, amount_minor=10_00)
        assert fresh["decision"] == "decline"
        assert fresh["ruleset_version"] == "strict"
        assert _codes(fresh) == ["velocity"]

    @pytest.mark.parametrize(
        "change",
        [
            {"amount_minor": 125_01},
            {"currency": "USD"},
            {"source_account_id": str(uuid.uuid4())},
            {"target_account_id": str(uuid.uuid4())},
        ],
    )
    async def test_same_transfer_other_details_conflicts(
        self, worker: httpx.AsyncClient, change: dict[str, object]
    ) -> None:
        request = _score_request()
        first = await worker.post("/v1/scores", json=request)
        response = await worker.post("/v1/scores", json={**request, **change})
        body = assert_problem(response, 409, "score-request-mismatch")
        assert body["fields"] == list(change)
        fetched = await worker.get(f"/v1/scores/{request['transfer_id']}")
        assert fetched.json() == first.json()

    async def test_concurrent_first_requests_agree(self, worker: httpx.AsyncClient) -> None:
        for _ in range(5):
            request = _score_request(amount_minor=10_000_00)
            responses = await asyncio.gather(
                worker.post("/v1/scores", json=request),
                worker.post("/v1/scores", json=request),
            )
            assert sorted(response.status_code for response in responses) == [200, 201]
            assert responses[0].json() == responses[1].json()

    @pytest.mark.parametrize(
        "change",
        [
            pytest.param({"currency": "XTS"}, id="unknown-currency"),
            pytest.param({"currency": "eur"}, id="lower-case-currency"),
            pytest.param({"amount_minor": 125.5}, id="float-amount"),
            pytest.param({"amount_minor": 125.0}, id="whole-float-amount"),
            pytest.param({"amount_minor": "12500"}, id="string-amount"),
            pytest.param({"amount_minor": -125_00}, id="negative-amount"),
            pytest.param({"amount_minor": 0}, id="zero-amount"),
            pytest.param({"amount_minor": 10**15 + 1}, id="amount-above-maximum"),
            pytest.param({"source_account_id": "not-a-uuid"}, id="malformed-account"),
            pytest.param({"priority": "high"}, id="unknown-field"),
        ],
    )
    async def test_malformed_request_is_refused(
        self, worker: httpx.AsyncClient, change: dict[str, object]
    ) -> None:
        request = _score_request(**change)
        response = await worker.post("/v1/scores", json=request)
        body = assert_problem(response, 422, "invalid-request")
        assert body["errors"]
        fetched = await worker.get(f"/v1/scores/{request['transfer_id']}")
        assert_problem(fetched, 404, "score-not-found")

    async def test_missing_field_is_refused(self, worker: httpx.AsyncClient) -> None:
        request = _score_request()
        del request["currency"]
        response = await worker.post("/v1/scores", json=request)
        assert_problem(response, 422, "invalid-request")
        fetched = await worker.get(f"/v1/scores/{request['transfer_id']}")
        assert_problem(fetched, 404, "score-not-found")


class TestGetScore:
    async def test_missing(self, worker: httpx.AsyncClient) -> None:
        response = await worker.get(f"/v1/scores/{uuid.uuid4()}")
        assert_problem(response, 404, "score-not-found")

    async def test_malformed_id(self, worker: httpx.AsyncClient) -> None:
        response = await worker.get("/v1/scores/not-a-uuid")
        assert_problem(response, 422, "invalid-request")
