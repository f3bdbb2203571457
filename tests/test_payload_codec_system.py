"""`sagabank up` seals the saga's payloads on the Temporal server, and its web UI decodes
them through the codec endpoint the launcher runs and names to it."""

import json
import uuid

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.converter import DataConverter

from contracts.transfers import workflow_id
from tests.bank import Bank
from tests.flows import funded_pair, request_transfer, wait_for_status

pytestmark = pytest.mark.system


async def test_the_ui_reads_through_the_codec_what_the_server_stores_sealed(
    bank: Bank, http: httpx.AsyncClient
) -> None:
    payer, source, _, target = await funded_pair(http, bank, 1_000_00)
    transfer_id = await request_transfer(http, bank, payer, source, target, 12_34)
    assert (await wait_for_status(http, bank, payer, transfer_id, set()))["status"] == "completed"

    # The server's copy, read by a client without the codec: not JSON, no account id.
    plain = await Client.connect(bank.temporal_address, data_converter=DataConverter.default)
    handle = plain.get_workflow_handle(workflow_id(uuid.UUID(transfer_id)))
    history = await handle.fetch_history()
    (stored,) = history.events[0].workflow_execution_started_event_attributes.input.payloads
    assert source.encode() not in stored.data
    with pytest.raises((UnicodeDecodeError, json.JSONDecodeError)):
        json.loads(stored.data)

    # The UI is told where the codec endpoint is...
    ui_settings = (await http.get(f"{bank.temporal_ui_url}/api/v1/settings")).json()
    assert ui_settings["Codec"]["Endpoint"] == bank.codec_url

    # ...and the endpoint answers the UI's page (CORS) with the payload in the clear.
    response = await http.post(
        f"{bank.codec_url}/decode",
        content=json_format.MessageToJson(Payloads(payloads=[stored])),
        headers={
            "content-type": "application/json",
            "x-namespace": "default",
            "origin": bank.temporal_ui_url,
        },
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == bank.temporal_ui_url
    (decoded,) = json_format.Parse(response.text, Payloads()).payloads
    arguments = json.loads(decoded.data)
    assert arguments["source_account_id"] == source
    assert arguments["amount_minor"] == 12_34
