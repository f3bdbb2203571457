"""The outgoing HTTP client (kit.http) against a real socket: what one request costs."""

import asyncio
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

from kit.http import create_client

_RESPONSE = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
WAIT_SECONDS_MAX = 10.0


class _ImportRecorder(importlib.abc.MetaPathFinder):
    """Notes every module the import system goes looking for (finds none itself)."""

    def __init__(self) -> None:
        self.searched: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.searched.append(fullname)
        return None


class _Server:
    """Answers every request on a connection with `{}` until the client hangs up."""

    def __init__(self) -> None:
        self.hung_up = asyncio.Event()

    async def answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(_RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self.hung_up.set()


async def test_a_request_searches_for_no_module() -> None:
    """httpcore runs `import sniffio` for every lock it creates, several per request; were
    sniffio not installed, each would search sys.path again: about 1 CPU ms a request."""
    answering = _Server()
    server = await asyncio.start_server(answering.answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    recorder = _ImportRecorder()
    async with server:
        async with create_client(f"http://127.0.0.1:{port}") as client:
            (await client.get("/warm")).raise_for_status()  # connection and lazy imports
            sys.meta_path.insert(0, recorder)
            try:
                for _ in range(3):
                    (await client.get("/v1/anything")).raise_for_status()
            finally:
                sys.meta_path.remove(recorder)
        await asyncio.wait_for(answering.hung_up.wait(), WAIT_SECONDS_MAX)
    assert recorder.searched == []
