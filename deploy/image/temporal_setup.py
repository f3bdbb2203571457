"""One-shot job: make a Temporal cluster ready for Sagabank. Safe to run again.

Registers the namespace when it is missing, then the custom search attributes the saga
writes (contracts.transfers.SEARCH_ATTRIBUTES) the way `sagabank up` does for an external
Temporal. Compose runs it as the service `temporal-setup`, Kubernetes as the Job of that
name, both from the sagabank image. It connects as every component does
(kit.temporal_connection): the standard TEMPORAL_* settings (TLS, API key, profile), the
launcher's SAGABANK_TEMPORAL_ADDRESS and SAGABANK_TEMPORAL_NAMESPACE over them; one of
SAGABANK_TEMPORAL_ADDRESS and TEMPORAL_ADDRESS is required here.
"""

import argparse
import asyncio
import os
import time
from datetime import timedelta

import structlog
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest, RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.envconfig import ClientConnectConfig
from temporalio.service import RPCError, RPCStatusCode

from kit.logging import configure_logging
from kit.process import exit_without_finalising
from kit.temporal_connection import described, temporal_connect_config
from sagabank.config import LauncherSettings
from sagabank.localstack.temporal import ensure_search_attributes

log = structlog.get_logger()

RPC_TIMEOUT_SECONDS = 10.0
RETRY_PAUSE_MAX_SECONDS = 5.0
RETENTION_DAYS_MAX = 3650


async def ensure_namespace(client: Client, namespace: str, *, retention_days: int) -> bool:
    """Register `namespace` unless it exists; True when this call registered it."""
    timeout = timedelta(seconds=RPC_TIMEOUT_SECONDS)
    try:
        await client.workflow_service.describe_namespace(
            DescribeNamespaceRequest(namespace=namespace), timeout=timeout
        )
        return False
    except RPCError as error:
        if error.status != RPCStatusCode.NOT_FOUND:
            raise
    try:
        await client.workflow_service.register_namespace(
            RegisterNamespaceRequest(
                namespace=namespace,
                description="Sagabank transfers",
                workflow_execution_retention_period=Duration(seconds=retention_days * 86400),
            ),
            timeout=timeout,
        )
    except RPCError as registering:
        if registering.status != RPCStatusCode.ALREADY_EXISTS:  # another run won the race
            raise
    return True


async def prepare(
    connection: ClientConnectConfig, *, retention_days: int, deadline_seconds: float
) -> None:
    """Retry until done or the deadline: Temporal may still be starting, and a namespace
    just registered reaches every frontend only after its cache refreshes (seconds)."""
    deadline = time.monotonic() + deadline_seconds
    pause_seconds = 0.5
    registered = False  # by this run, maybe in an attempt before the one that succeeds
    namespace = connection["namespace"]
    while True:
        try:
            client = await asyncio.wait_for(
                Client.connect(**connection), timeout=RPC_TIMEOUT_SECONDS
            )
            if await ensure_namespace(client, namespace, retention_days=retention_days):
                registered = True
            added = await ensure_search_attributes(client, namespace)
        except (RPCError, RuntimeError, TimeoutError, OSError) as error:
            if time.monotonic() + pause_seconds > deadline:
                raise
            log.warning(
                "temporal_setup.retrying",
                error=f"{type(error).__name__}: {error}",
                pause_seconds=pause_seconds,
            )
            await asyncio.sleep(pause_seconds)
            pause_seconds = min(pause_seconds * 2, RETRY_PAUSE_MAX_SECONDS)
            continue
        log.info(
            "temporal_setup.done",
            temporal=described(connection),
            namespace_registered=registered,
            search_attributes_added=added,
        )
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--retention-days",
        type=int,
        default=30,
        help="how long Temporal keeps a closed transfer's history (new namespace only)",
    )
    parser.add_argument(
        "--deadline-seconds", type=float, default=180.0, help="give up after this long"
    )
    options = parser.parse_args(argv)
    if not 1 <= options.retention_days <= RETENTION_DAYS_MAX:
        parser.error(f"--retention-days must be within 1..{RETENTION_DAYS_MAX}")
    if not 0 < options.deadline_seconds <= 3600:
        parser.error("--deadline-seconds must be within (0, 3600]")
    configure_logging(service="temporal-setup")
    settings = LauncherSettings()
    if settings.temporal_address is None and not os.environ.get("TEMPORAL_ADDRESS"):
        parser.error(
            "set SAGABANK_TEMPORAL_ADDRESS or TEMPORAL_ADDRESS (host:port of the Temporal frontend)"
        )
    # The launcher's namespace has a default of its own: only one set explicitly wins
    # over TEMPORAL_NAMESPACE.
    namespace_set = "temporal_namespace" in settings.model_fields_set
    connection = temporal_connect_config(
        address=settings.temporal_address,
        namespace=settings.temporal_namespace if namespace_set else None,
    )
    asyncio.run(
        prepare(
            connection,
            retention_days=options.retention_days,
            deadline_seconds=options.deadline_seconds,
        )
    )
    return 0


if __name__ == "__main__":
    exit_without_finalising(main)
