"""What the worker hands Temporal is sealed; the codec endpoint the UI calls opens it."""

import json

import httpx
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.converter import DataConverter
from temporalio.testing import WorkflowEnvironment

from contracts.transfers import TransferStatus
from kit.payloads import ENCODING, create_codec_app
from kit.sealing import parse_key_ring
from kit.testing import TEST_PAYLOAD_KEYS
from workflows.tests.saga import FakeServices, new_transfer, saga_worker, start_transfer

UI_ORIGIN = "http://127.0.0.1:8233"


async def test_the_codec_endpoint_decodes_what_the_worker_encoded(
    temporal_dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    fakes = FakeServices(new_transfer())
    async with saga_worker(temporal_dev_env, task_queue, fakes):
        handle = await start_transfer(temporal_dev_env, task_queue, fakes.transfer)
        assert (await handle.result()).status is TransferStatus.completed

    # The result the worker recorded, as the server stores it (a client without the codec).
    address = temporal_dev_env.client.service_client.config.target_host
    plain = await Client.connect(address, data_converter=DataConverter.default)
    history = await plain.get_workflow_handle(handle.id).fetch_history()
    completed = history.events[-1].workflow_execution_completed_event_attributes
    (stored,) = completed.result.payloads
    assert stored.metadata["encoding"] == ENCODING
    assert b"completed" not in stored.data

    app = create_codec_app(parse_key_ring(TEST_PAYLOAD_KEYS), allowed_origins=[UI_ORIGIN])
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://codec"
    ) as http:
        response = await http.post(
            "/decode",
            content=json_format.MessageToJson(Payloads(payloads=[stored])),
            headers={"content-type": "application/json", "origin": UI_ORIGIN},
        )

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == UI_ORIGIN
    (decoded,) = json_format.Parse(response.text, Payloads()).payloads
    assert json.loads(decoded.data)["status"] == "completed"
