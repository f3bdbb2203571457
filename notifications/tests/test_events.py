import uuid
from datetime import UTC, datetime

import httpx

from kit.testing import assert_problem
from notifications.tests.support import as_worker


def _event(**overrides: object) -> dict[str, object]:
    body: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "type": "transfer.completed",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"transfer_id": str(uuid.uuid4()), "amount_minor": 1250, "currency": "EUR"},
    }
    body.update(overrides)
    return body


class TestPublishEvent:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        event = _event()
        response = await client.post("/v1/events", json=event, headers=as_worker())
        assert response.status_code == 201, response.text
        assert response.json()["id"] == event["id"]
        fetched = await client.get(f"/v1/events/{event['id']}", headers=as_worker())
        assert fetched.status_code == 200
        assert fetched.json()["data"] == event["data"]

    async def test_replay_returns_the_original(self, client: httpx.AsyncClient) -> None:
        event = _event()
        first = await client.post("/v1/events", json=event, headers=as_worker())
        second = await client.post("/v1/events", json=event, headers=as_worker())
        assert first.status_code == 201
        assert second.status_code == 200
        assert second.json() == first.json()

    async def test_same_id_other_content_conflicts(self, client: httpx.AsyncClient) -> None:
        event = _event()
        await client.post("/v1/events", json=event, headers=as_worker())
        response = await client.post(
            "/v1/events", json={**event, "type": "transfer.declined"}, headers=as_worker()
        )
        assert_problem(response, 409, "event-id-reused")
        fetched = await client.get(f"/v1/events/{event['id']}", headers=as_worker())
        assert fetched.json()["type"] == "transfer.completed"

    async def test_unknown_type_is_malformed(self, client: httpx.AsyncClient) -> None:
        event = _event(type="transfer.teleported")
        body = assert_problem(
            await client.post("/v1/events", json=event, headers=as_worker()), 422, "invalid-request"
        )
        assert body["errors"]
        assert (
            await client.get(f"/v1/events/{event['id']}", headers=as_worker())
        ).status_code == 404

    async def test_unknown_field_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/events", json=_event(priority="high"), headers=as_worker()
        )
        assert_problem(response, 422, "invalid-request")


class TestGetEvent:
    async def test_missing(self, client: httpx.AsyncClient) -> None:
        response = await client.get(f"/v1/events/{uuid.uuid4()}", headers=as_worker())
        assert_problem(response, 404, "event-not-found")

    async def test_malformed_id(self, client: httpx.AsyncClient) -> None:
        response = await client.get("/v1/events/not-a-uuid", headers=as_worker())
        assert_problem(response, 422, "invalid-request")
