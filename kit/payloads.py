"""Temporal payloads sealed under a key ring, and the codec endpoint the Temporal UI calls.

Every Temporal client of the bank and the worker use `data_converter(ring)`: pydantic's
converter, then `KeyRingPayloadCodec`, which seals each payload (AES-256-GCM, kit.sealing)
under the newest key of the ring. The Temporal server then stores ciphertext; search
attributes are not payloads and stay in the clear (docs/decisions/0022). The ring is
configured as `<PREFIX>_PAYLOAD_KEYS`, in kit.sealing's `id:base64key,...` format.
"""

import dataclasses
from collections.abc import Sequence
from typing import Final

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from google.protobuf import json_format
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, PayloadCodec

from kit.errors import InvalidRequest
from kit.problems import install_problem_handlers
from kit.sealing import KeyRing, SealedValueUnreadable

# The metadata Temporal's samples use for encrypted payloads: the UI and CLI show it as is.
ENCODING: Final = b"binary/encrypted"
KEY_ID_METADATA: Final = "encryption-key-id"
# Binds a sealed payload to its use: a value sealed for a database row does not open here.
ASSOCIATED_DATA: Final = b"sagabank temporal payload"
# The codec endpoint's body limit; the server's own payload limit is 2 MiB per payload.
CODEC_BODY_MAX_BYTES: Final = 4 * 1024 * 1024


class KeyRingPayloadCodec(PayloadCodec):
    """Seals payloads under the ring's newest key; opens those sealed under any of its keys
    and passes unsealed ones through (histories from before the codec)."""

    def __init__(self, ring: KeyRing) -> None:
        self._ring = ring

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [
            Payload(
                metadata={
                    "encoding": ENCODING,
                    KEY_ID_METADATA: self._ring.newest_key_id.encode("ascii"),
                },
                data=self._ring.seal(
                    payload.SerializeToString(deterministic=True), associated_data=ASSOCIATED_DATA
                ),
            )
            for payload in payloads
        ]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self._decode_one(payload) for payload in payloads]

    def _decode_one(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload
        try:
            opened = self._ring.open(payload.data, associated_data=ASSOCIATED_DATA)
        except SealedValueUnreadable as error:
            key_id = payload.metadata.get(KEY_ID_METADATA, b"?").decode("ascii", "replace")
            # A ValueError fails the workflow task (retried), never the workflow itself.
            raise ValueError(f"no key of the payload ring opens key {key_id}'s payload") from error
        decoded = Payload()
        decoded.ParseFromString(opened)
        return decoded


def data_converter(ring: KeyRing) -> DataConverter:
    """The converter of every Temporal client and worker of the bank: pydantic, then sealed."""
    return dataclasses.replace(pydantic_data_converter, payload_codec=KeyRingPayloadCodec(ring))


def create_codec_app(ring: KeyRing, *, allowed_origins: Sequence[str]) -> FastAPI:
    """The Temporal codec server protocol: POST /decode and /encode (also under a namespace
    prefix) take and answer `{"payloads": [...]}` in proto3 JSON; CORS for `allowed_origins`
    (the Temporal UI's origin, whose pages call it from the operator's browser)."""
    codec = KeyRingPayloadCodec(ring)
    app = FastAPI(title="Sagabank payload codec", docs_url=None, redoc_url=None, openapi_url=None)
    install_problem_handlers(app)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=list(allowed_origins),
        allow_methods=["POST"],
        allow_headers=["content-type", "x-namespace", "authorization"],
        allow_credentials=True,
    )

    async def transform(request: Request, encode: bool) -> Response:
        payloads = await _payloads_of(request)
        try:
            transformed = await (codec.encode if encode else codec.decode)(payloads.payloads)
        except ValueError as error:  # a payload no key of the ring opens
            raise InvalidRequest(str(error)) from error
        body = json_format.MessageToJson(Payloads(payloads=transformed), indent=None)
        return Response(body, media_type="application/json")

    @app.post("/decode")
    @app.post("/{namespace}/decode")
    async def decode(request: Request) -> Response:
        return await transform(request, encode=False)

    @app.post("/encode")
    @app.post("/{namespace}/encode")
    async def encode(request: Request) -> Response:
        return await transform(request, encode=True)

    return app


async def _payloads_of(request: Request) -> Payloads:
    body = await request.body()
    if len(body) > CODEC_BODY_MAX_BYTES:
        raise InvalidRequest(f"the body exceeds {CODEC_BODY_MAX_BYTES} bytes")
    try:
        return json_format.Parse(body, Payloads())
    except json_format.ParseError as error:
        raise InvalidRequest('the body is not Payloads JSON: {"payloads": [...]}') from error
