"""Temporal payloads sealed under a key ring, and the codec endpoint the Temporal UI calls."""

import base64
import json

import httpx
import pytest
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.converter import DataConverter

from kit.payloads import (
    ENCODING,
    KeyRingPayloadCodec,
    create_codec_app,
    data_converter,
)
from kit.sealing import KeyRing, SealingKey

UI_ORIGIN = "http://127.0.0.1:8233"


def ring(*key_ids: str) -> KeyRing:
    return KeyRing([SealingKey(key_id, key_id.encode().ljust(32, b"k")) for key_id in key_ids])


def plain_payload(value: object) -> Payload:
    (payload,) = DataConverter.default.payload_converter.to_payloads([value])
    return payload


class TestCodec:
    async def test_encoded_payloads_are_not_readable(self) -> None:
        original = plain_payload({"customer_id": "alice", "description": "rent for May"})

        (encoded,) = await KeyRingPayloadCodec(ring("k2")).encode([original])

        assert encoded.metadata["encoding"] == ENCODING
        assert encoded.metadata["encryption-key-id"] == b"k2"
        assert b"alice" not in encoded.data
        assert b"rent" not in encoded.data
        with pytest.raises((UnicodeDecodeError, json.JSONDecodeError)):
            json.loads(encoded.data)

    async def test_decode_gives_back_the_payload(self) -> None:
        codec = KeyRingPayloadCodec(ring("k1"))
        original = plain_payload({"amount_minor": 1250, "currency": "EUR"})

        (decoded,) = await codec.decode(await codec.encode([original]))

        assert decoded == original

    async def test_an_old_key_still_decodes_after_rotation(self) -> None:
        (sealed_before,) = await KeyRingPayloadCodec(ring("k1")).encode([plain_payload("x")])
        rotated = KeyRingPayloadCodec(ring("k2", "k1"))

        (decoded,) = await rotated.decode([sealed_before])
        (sealed_after,) = await rotated.encode([plain_payload("x")])

        assert decoded == plain_payload("x")
        assert sealed_after.metadata["encryption-key-id"] == b"k2"

    async def test_a_payload_without_the_marker_passes_through(self) -> None:
        # Histories recorded before the codec (and the SDK's own unencoded payloads).
        original = plain_payload({"status": "pending"})

        assert await KeyRingPayloadCodec(ring("k1")).decode([original]) == [original]

    async def test_a_foreign_key_does_not_decode(self) -> None:
        (sealed,) = await KeyRingPayloadCodec(ring("k1")).encode([plain_payload("x")])

        with pytest.raises(ValueError, match="k1"):
            await KeyRingPayloadCodec(ring("other")).decode([sealed])

    async def test_the_converter_round_trips_pydantic_values(self) -> None:
        converter = data_converter(ring("k1"))

        payloads = await converter.encode([{"amount_minor": 5}])

        assert payloads[0].metadata["encoding"] == ENCODING
        assert await converter.decode(payloads, [dict]) == [{"amount_minor": 5}]


def payloads_json(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


async def post(app_ring: KeyRing, path: str, body: str, **headers: str) -> httpx.Response:
    app = create_codec_app(app_ring, allowed_origins=[UI_ORIGIN])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
        return await http.post(
            path,
            content=body,
            headers={"content-type": "application/json", "x-namespace": "default", **headers},
        )


class TestCodecEndpoint:
    async def test_decode_answers_the_payloads_in_the_clear(self) -> None:
        keys = ring("k1")
        (sealed,) = await KeyRingPayloadCodec(keys).encode([plain_payload({"a": 1})])

        response = await post(keys, "/decode", payloads_json(sealed))

        assert response.status_code == 200, response.text
        (decoded,) = json_format.Parse(response.text, Payloads()).payloads
        assert json.loads(decoded.data) == {"a": 1}
        assert base64.b64decode(response.json()["payloads"][0]["metadata"]["encoding"]) == (
            b"json/plain"
        )

    async def test_encode_seals_under_the_newest_key(self) -> None:
        response = await post(ring("k2", "k1"), "/encode", payloads_json(plain_payload("x")))

        assert response.status_code == 200, response.text
        (sealed,) = json_format.Parse(response.text, Payloads()).payloads
        assert sealed.metadata["encryption-key-id"] == b"k2"
        assert await KeyRingPayloadCodec(ring("k1", "k2")).decode([sealed]) == [plain_payload("x")]

    async def test_a_namespace_path_prefix_is_accepted(self) -> None:
        # The CLI's `--codec-endpoint http://host/{namespace}` form.
        response = await post(ring("k1"), "/default/decode", payloads_json(plain_payload(1)))

        assert response.status_code == 200, response.text

    async def test_bad_json_is_a_problem(self) -> None:
        response = await post(ring("k1"), "/decode", "{not json")

        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"

    async def test_a_payload_no_key_opens_is_a_problem(self) -> None:
        (sealed,) = await KeyRingPayloadCodec(ring("gone")).encode([plain_payload("x")])

        response = await post(ring("k1"), "/decode", payloads_json(sealed))

        assert response.status_code == 422
        assert "gone" in response.json()["detail"]

    async def test_cors_preflight_allows_the_ui_origin_only(self) -> None:
        app = create_codec_app(ring("k1"), allowed_origins=[UI_ORIGIN])
        transport = httpx.ASGITransport(app=app)
        preflight = {
            "access-control-request-method": "POST",
            "access-control-request-headers": "content-type,x-namespace",
        }
        async with httpx.AsyncClient(transport=transport, base_url="http://codec") as http:
            allowed = await http.options("/decode", headers={"origin": UI_ORIGIN, **preflight})
            foreign = await http.options(
                "/decode", headers={"origin": "https://evil.example", **preflight}
            )

        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == UI_ORIGIN
        assert "access-control-allow-origin" not in foreign.headers
