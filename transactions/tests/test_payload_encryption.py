"""The saga's payloads on the Temporal server are sealed: a client without the key ring
reads ciphertext, one with it (and the codec endpoint) reads the transfer."""

import json

from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from contracts.transfers import TransferWorkflowInput
from kit.payloads import data_converter
from kit.sealing import parse_key_ring
from transactions.config import Settings
from transactions.tests.support import (
    FakeAccounts,
    build_app,
    client_of,
    key_header,
    transfer_body,
    workflow_handle,
)

PAYLOAD_KEYS = (
    "p2:"
    + "MjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjIyMjI="
    + ",p1:"
    + ("MTExMTExMTExMTExMTExMTExMTExMTExMTExMTExMTE=")
)


def readable_json(payload: Payload) -> bool:
    try:
        json.loads(payload.data)
    except ValueError:
        return False
    return True


async def test_workflow_input_and_memo_are_sealed_on_the_server(
    settings: Settings, temporal_dev_env: WorkflowEnvironment
) -> None:
    address = temporal_dev_env.client.service_client.config.target_host
    sealing = settings.model_copy(
        update={"temporal_address": address, "payload_keys": SecretStr(PAYLOAD_KEYS)}
    )
    # No client handed in: the service connects with its own converter, as in production.
    app = build_app(sealing, accounts=FakeAccounts())
    body = transfer_body(description="rent for flat 3B")
    async with client_of(app) as client:
        response = await client.post("/v1/transfers", json=body, headers=key_header())
    assert response.status_code == 202, response.text
    transfer_id = response.json()["id"]

    # A client WITHOUT the codec sees what the server stores.
    plain = await Client.connect(address, data_converter=DataConverter.default)
    history = await workflow_handle(plain, transfer_id).fetch_history()
    started = history.events[0].workflow_execution_started_event_attributes
    (stored,) = started.input.payloads
    assert not readable_json(stored), stored.data[:200]
    assert body["source_account_id"].encode() not in stored.data
    assert b"rent for flat" not in stored.data
    memo = started.memo.fields["description"]
    assert not readable_json(memo)
    assert b"rent for flat" not in memo.data

    # With the ring (the one the worker and every client use) the input decodes.
    (arguments,) = await data_converter(parse_key_ring(PAYLOAD_KEYS)).decode(
        [stored], [TransferWorkflowInput]
    )
    assert str(arguments.source_account_id) == body["source_account_id"]
    assert arguments.description == "rent for flat 3B"
    await workflow_handle(plain, transfer_id).terminate("test over")
