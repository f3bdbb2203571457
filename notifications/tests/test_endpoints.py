"""Webhook endpoints: owned by a customer, their URL checked, their secret shown once."""

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx

from kit.testing import app_client, assert_problem
from notifications.tests.conftest import AppFactory
from notifications.tests.support import PUBLIC_HOST, Clock, as_customer

URL = f"https://{PUBLIC_HOST}/sagabank"


async def create(
    client: httpx.AsyncClient, customer_id: str = "alice", **overrides: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {"url": URL, "event_types": ["transfer.completed"], **overrides}
    response = await client.post(
        "/v1/webhook-endpoints", headers=as_customer(customer_id), json=body
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


class TestCreateEndpoint:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        created = await create(
            client,
            event_types=["transfer.declined", "transfer.completed", "transfer.completed"],
            description="payroll system",
        )
        assert created["customer_id"] == "alice"
        assert created["url"] == URL
        # Without duplicates, in the order the event types are listed in the contract.
        assert created["event_types"] == ["transfer.completed", "transfer.declined"]
        assert created["enabled"] is True
        assert created["secret"].startswith("whsec_")
        fetched = await client.get(
            f"/v1/webhook-endpoints/{created['id']}", headers=as_customer("alice")
        )
        assert fetched.status_code == 200
        assert "secret" not in fetched.json(), "the secret is shown once, at creation"

    async def test_each_endpoint_has_its_own_secret(self, client: httpx.AsyncClient) -> None:
        first, second = await create(client), await create(client)
        assert first["secret"] != second["secret"]

    async def test_anonymous(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/webhook-endpoints", json={"url": URL, "event_types": ["transfer.completed"]}
        )
        assert_problem(response, 401, "unauthorized")

    async def test_no_event_types_is_malformed(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            headers=as_customer("alice"),
            json={"url": URL, "event_types": []},
        )
        assert_problem(response, 422, "invalid-request")

    async def test_unknown_field_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            headers=as_customer("alice"),
            json={"url": URL, "event_types": ["transfer.completed"], "enabled": False},
        )
        assert_problem(response, 422, "invalid-request")

    async def test_http_refused_in_production(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            headers=as_customer("alice"),
            json={"url": f"http://{PUBLIC_HOST}/x", "event_types": ["transfer.completed"]},
        )
        body = assert_problem(response, 400, "webhook-url-not-allowed")
        assert "https" in str(body["detail"])

    async def test_unresolvable_name_refused(self, client: httpx.AsyncClient) -> None:
        response = await client.post(
            "/v1/webhook-endpoints",
            headers=as_customer("alice"),
            json={"url": "https://nowhere.example.test/", "event_types": ["transfer.completed"]},
        )
        assert_problem(response, 400, "webhook-url-not-allowed")

    async def test_limit_per_customer(self, make_app: AppFactory) -> None:
        async with app_client(
            make_app(dispatcher_enabled=False, webhook_endpoints_per_customer_max=2)
        ) as client:
            await create(client)
            await create(client)
            response = await client.post(
                "/v1/webhook-endpoints",
                headers=as_customer("alice"),
                json={"url": URL, "event_types": ["transfer.completed"]},
            )
            assert_problem(response, 409, "webhook-endpoint-limit-reached")
            await create(client, customer_id="bob")  # the cap is per customer


class TestListEndpoints:
    async def test_only_the_owners_oldest_first_paginated(
        self, client: httpx.AsyncClient, clock: Clock
    ) -> None:
        ids = []
        for _ in range(3):
            ids.append((await create(client))["id"])
            clock.advance(1)
        await create(client, customer_id="mallory")
        first = await client.get(
            "/v1/webhook-endpoints", headers=as_customer("alice"), params={"limit": 2}
        )
        assert first.status_code == 200
        page = first.json()
        assert [item["id"] for item in page["items"]] == ids[:2]
        second = await client.get(
            "/v1/webhook-endpoints",
            headers=as_customer("alice"),
            params={"limit": 2, "cursor": page["next_cursor"]},
        )
        assert [item["id"] for item in second.json()["items"]] == ids[2:]
        assert second.json()["next_cursor"] is None

    async def test_limit_capped(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/v1/webhook-endpoints", headers=as_customer("alice"), params={"limit": 501}
        )
        assert_problem(response, 422, "invalid-request")

    async def test_malformed_cursor(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            "/v1/webhook-endpoints", headers=as_customer("alice"), params={"cursor": "not-a-cursor"}
        )
        assert_problem(response, 422, "invalid-cursor")


class TestGetEndpoint:
    async def test_foreign_object(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.get(
            f"/v1/webhook-endpoints/{created['id']}", headers=as_customer("mallory")
        )
        assert_problem(response, 404, "webhook-endpoint-not-found")

    async def test_missing(self, client: httpx.AsyncClient) -> None:
        response = await client.get(
            f"/v1/webhook-endpoints/{uuid.uuid4()}", headers=as_customer("alice")
        )
        assert_problem(response, 404, "webhook-endpoint-not-found")


class TestUpdateEndpoint:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        created = await create(client, description="old")
        response = await client.patch(
            f"/v1/webhook-endpoints/{created['id']}",
            headers=as_customer("alice"),
            json={"event_types": ["transfer.created", "transfer.expired"], "description": None},
        )
        assert response.status_code == 200, response.text
        updated = response.json()
        assert updated["event_types"] == ["transfer.created", "transfer.expired"]
        assert updated["description"] is None
        assert updated["url"] == URL, "fields not sent stay as they were"

    async def test_url_checked_again(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.patch(
            f"/v1/webhook-endpoints/{created['id']}",
            headers=as_customer("alice"),
            json={"url": "https://169.254.169.254/latest/meta-data/"},
        )
        assert_problem(response, 400, "webhook-url-not-allowed")
        fetched = await client.get(
            f"/v1/webhook-endpoints/{created['id']}", headers=as_customer("alice")
        )
        assert fetched.json()["url"] == URL

    async def test_foreign_object(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.patch(
            f"/v1/webhook-endpoints/{created['id']}",
            headers=as_customer("mallory"),
            json={"description": "mine now"},
        )
        assert_problem(response, 404, "webhook-endpoint-not-found")


class TestDeleteEndpoint:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        path = f"/v1/webhook-endpoints/{created['id']}"
        response = await client.delete(path, headers=as_customer("alice"))
        assert response.status_code == 204
        assert_problem(
            await client.get(path, headers=as_customer("alice")),
            404,
            "webhook-endpoint-not-found",
        )

    async def test_foreign_object(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        path = f"/v1/webhook-endpoints/{created['id']}"
        response = await client.delete(path, headers=as_customer("mallory"))
        assert_problem(response, 404, "webhook-endpoint-not-found")
        assert (await client.get(path, headers=as_customer("alice"))).status_code == 200


class TestDisableEnable:
    async def test_valid(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        path = f"/v1/webhook-endpoints/{created['id']}"
        disabled = await client.post(f"{path}/disable", headers=as_customer("alice"))
        assert disabled.status_code == 200
        assert disabled.json()["enabled"] is False
        assert disabled.json()["disabled_reason"] == "disabled"
        enabled = await client.post(f"{path}/enable", headers=as_customer("alice"))
        assert enabled.json()["enabled"] is True
        assert enabled.json()["disabled_reason"] is None

    async def test_foreign_object(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        path = f"/v1/webhook-endpoints/{created['id']}"
        response = await client.post(f"{path}/disable", headers=as_customer("mallory"))
        assert_problem(response, 404, "webhook-endpoint-not-found")
        assert (await client.get(path, headers=as_customer("alice"))).json()["enabled"]


class TestRotateSecret:
    async def test_valid(self, client: httpx.AsyncClient, clock: Clock) -> None:
        created = await create(client)
        response = await client.post(
            f"/v1/webhook-endpoints/{created['id']}/rotate-secret",
            headers=as_customer("alice"),
            json={"grace_seconds": 3600},
        )
        assert response.status_code == 200, response.text
        rotated = response.json()
        assert rotated["secret"].startswith("whsec_")
        assert rotated["secret"] != created["secret"]
        expires_at = datetime.fromisoformat(rotated["previous_secrets_expire_at"])
        assert expires_at == clock.now + timedelta(hours=1)

    async def test_grace_bounded(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.post(
            f"/v1/webhook-endpoints/{created['id']}/rotate-secret",
            headers=as_customer("alice"),
            json={"grace_seconds": 8 * 24 * 3600},
        )
        assert_problem(response, 422, "invalid-request")

    async def test_foreign_object(self, client: httpx.AsyncClient) -> None:
        created = await create(client)
        response = await client.post(
            f"/v1/webhook-endpoints/{created['id']}/rotate-secret",
            headers=as_customer("mallory"),
        )
        assert_problem(response, 404, "webhook-endpoint-not-found")
