"""POST /v1/transfers/batch: up to 100 transfers, each answered as a single POST would be."""

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from temporalio.client import Client, WorkflowExecutionStatus

from kit.testing import assert_problem
from transactions.tests.support import count_rows, transfer_body, workflow_handle


def _item(key: str | None = None, **overrides: Any) -> dict[str, Any]:
    return {**transfer_body(**overrides), "idempotency_key": key or f"key-{uuid.uuid4()}"}


async def _batch(client: httpx.AsyncClient, items: list[Any]) -> list[dict[str, Any]]:
    response = await client.post("/v1/transfers/batch", json={"items": items})
    assert response.status_code == 200, response.text
    results: list[dict[str, Any]] = response.json()["results"]
    assert [result["index"] for result in results] == list(range(len(items)))
    return results


class TestCreateTransfersBatch:
    async def test_valid(self, client: httpx.AsyncClient, temporal: Client) -> None:
        items = [_item() for _ in range(3)]

        results = await _batch(client, items)

        for item, result in zip(items, results, strict=True):
            assert result["status"] == 202
            assert result["problem"] is None
            assert result["replayed"] is False
            assert result["idempotency_key"] == item["idempotency_key"]
            transfer = result["transfer"]
            assert transfer["status"] == "pending"
            assert transfer["source_account_id"] == item["source_account_id"]
            assert transfer["amount_minor"] == item["amount_minor"]
            assert (await client.get(f"/v1/transfers/{transfer['id']}")).json() == transfer
            description = await workflow_handle(temporal, transfer["id"]).describe()
            assert description.status == WorkflowExecutionStatus.RUNNING
        assert len({result["transfer"]["id"] for result in results}) == 3

    async def test_a_bad_item_does_not_sink_the_others(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        account = str(uuid.uuid4())
        items: list[Any] = [
            _item(),
            _item(amount_minor=12.5),
            _item(source_account_id=account, target_account_id=account),
            {"source_account_id": "no key, no amount"},
            "not an object",
            _item(),
        ]

        results = await _batch(client, items)

        assert [result["status"] for result in results] == [202, 422, 422, 422, 422, 202]
        slugs = [result["problem"] and result["problem"]["type"] for result in results]
        assert slugs == [
            None,
            "urn:sagabank:problem:invalid-request",
            "urn:sagabank:problem:same-account",
            "urn:sagabank:problem:invalid-request",
            "urn:sagabank:problem:invalid-request",
            None,
        ]
        malformed = results[1]["problem"]
        assert malformed["status"] == 422
        assert malformed["instance"] == "/v1/transfers/batch#/items/1"
        assert [error["location"] for error in malformed["errors"]] == [["amount_minor"]]
        assert results[3]["idempotency_key"] is None
        assert all(results[i]["transfer"] is None for i in (1, 2, 3, 4))
        assert await count_rows(app, "transfers") == 2
        # Only the items that were accepted hold their key.
        assert await count_rows(app, "idempotency_keys") == 2

    async def test_resent_batch_replays_every_item(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        items = [_item() for _ in range(3)]
        first = await _batch(client, items)
        again = await _batch(client, items)
        assert [r["transfer"] for r in again] == [r["transfer"] for r in first]
        assert all(result["replayed"] for result in again)
        assert await count_rows(app, "transfers") == 3

    async def test_items_share_the_key_space_of_single_posts(
        self, client: httpx.AsyncClient
    ) -> None:
        item = _item()
        (result,) = await _batch(client, [item])
        body = {field: value for field, value in item.items() if field != "idempotency_key"}
        single = await client.post(
            "/v1/transfers", json=body, headers={"Idempotency-Key": item["idempotency_key"]}
        )
        assert single.status_code == 202
        assert single.headers["idempotency-replayed"] == "true"
        assert single.json() == result["transfer"]

    async def test_reused_key_with_another_body(self, client: httpx.AsyncClient) -> None:
        item = _item()
        await _batch(client, [item])
        changed = {**item, "amount_minor": 999}
        (result,) = await _batch(client, [changed])
        assert result["status"] == 422
        assert result["problem"]["type"] == "urn:sagabank:problem:idempotency-key-reused"

    async def test_duplicate_items_are_one_transfer(
        self, client: httpx.AsyncClient, app: FastAPI
    ) -> None:
        item = _item()
        results = await _batch(client, [item, item])
        assert [result["status"] for result in results] == [202, 202]
        assert results[0]["transfer"] == results[1]["transfer"]
        assert sorted(result["replayed"] for result in results) == [False, True]
        assert await count_rows(app, "transfers") == 1

    async def test_hundred_items(self, client: httpx.AsyncClient, app: FastAPI) -> None:
        results = await _batch(client, [_item() for _ in range(100)])
        assert {result["status"] for result in results} == {202}
        assert await count_rows(app, "transfers") == 100

    @pytest.mark.parametrize(
        "body",
        [
            pytest.param({"items": []}, id="empty"),
            pytest.param({"items": [{}] * 101}, id="too-many"),
            pytest.param({"items": {}}, id="not-a-list"),
            pytest.param({}, id="no-items"),
            pytest.param({"items": [], "atomic": True}, id="unknown-field"),
        ],
    )
    async def test_malformed_batch(
        self, client: httpx.AsyncClient, app: FastAPI, body: dict[str, Any]
    ) -> None:
        response = await client.post("/v1/transfers/batch", json=body)
        assert_problem(response, 422, "invalid-request")
        assert await count_rows(app, "idempotency_keys") == 0
