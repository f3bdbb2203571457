"""The sagabank image's HEALTHCHECK: one probe for every component the image runs.

It reads the command line of the container's main process (PID 1 unless --pid names
another) to learn which component runs there, then:

- `sagabank serve <service> [--host H] [--port N]`: GET /healthz on that port, or
  /readyz with --ready (database reachable, schema at head or newer);
- `sagabank worker`: Temporal saw a poller from this host on the worker's task queue
  (workflow and activity tasks) within POLLER_SEEN_WITHIN_SECONDS, asked with the
  worker's own WORKER_* settings;
- `sagabank migrate ...` and temporal_setup.py: healthy, a one-shot job has nothing to
  probe.

Exit status 0 healthy, 1 not: what Docker's HEALTHCHECK and Kubernetes exec probes read.
"""

import argparse
import asyncio
import socket
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from kit.process import exit_without_finalising

HTTP_TIMEOUT_SECONDS = 2.0
TEMPORAL_TIMEOUT_SECONDS = 4.0
# An idle worker's long poll returns after about a minute and is renewed at once, so a
# live worker is seen at least that often; past this it is stuck or cut off.
POLLER_SEEN_WITHIN_SECONDS = 150.0
ONE_SHOT_SCRIPTS = frozenset({"temporal_setup.py"})
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})  # noqa: S104 - recognised, not bound


def command_of(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def sagabank_arguments(command: list[str]) -> list[str] | None:
    """The arguments after `sagabank` (console script or `python -m sagabank`), else None."""
    for index, part in enumerate(command):
        if Path(part).name == "sagabank":
            return command[index + 1 :]
    return None


def option_value(arguments: list[str], name: str) -> str | None:
    for index, part in enumerate(arguments):
        if part == name and index + 1 < len(arguments):
            return arguments[index + 1]
        if part.startswith(f"{name}="):
            return part.split("=", 1)[1]
    return None


def service_url(arguments: list[str], path: str) -> str:
    """The URL of `path` on the service that `sagabank serve ...` (`arguments`) runs."""
    from sagabank.cli import DEFAULT_PORTS

    assert arguments[0] == "serve", arguments
    port = option_value(arguments, "--port") or str(DEFAULT_PORTS[arguments[1]])
    host = option_value(arguments, "--host") or "127.0.0.1"
    if host in _WILDCARD_HOSTS:
        host = "127.0.0.1"
    elif ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}{path}"


def probe_http(url: str) -> tuple[bool, str]:
    try:
        response = httpx.get(url, timeout=HTTP_TIMEOUT_SECONDS)
    except httpx.HTTPError as error:
        return False, f"{url}: {type(error).__name__} {error}"
    return response.status_code == 200, f"{url} answered {response.status_code}"


async def probe_worker(hostname: str) -> tuple[bool, str]:
    from temporalio.api.enums.v1 import TaskQueueKind, TaskQueueType
    from temporalio.api.taskqueue.v1 import TaskQueue
    from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
    from temporalio.client import Client

    from kit.temporal_connection import temporal_connect_config
    from workflows.config import Settings

    settings = Settings()  # the worker's own environment, so both ask the same Temporal
    connection = temporal_connect_config(
        address=settings.temporal_address, namespace=settings.temporal_namespace
    )
    client = await asyncio.wait_for(Client.connect(**connection), timeout=TEMPORAL_TIMEOUT_SECONDS)
    now = datetime.now(UTC)
    seen_within = timedelta(seconds=POLLER_SEEN_WITHIN_SECONDS)
    for name, queue_type in (
        ("workflow", TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW),
        ("activity", TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY),
    ):
        response = await client.workflow_service.describe_task_queue(
            DescribeTaskQueueRequest(
                namespace=client.namespace,
                task_queue=TaskQueue(
                    name=settings.task_queue, kind=TaskQueueKind.TASK_QUEUE_KIND_NORMAL
                ),
                task_queue_type=queue_type,
            ),
            timeout=timedelta(seconds=TEMPORAL_TIMEOUT_SECONDS),
        )
        # The SDK's default identity is "<pid>@<hostname>"; the hostname names the
        # container (or pod), so another replica's poller does not count for this one.
        fresh = [
            poller
            for poller in response.pollers
            if poller.identity.endswith(f"@{hostname}")
            and now - poller.last_access_time.ToDatetime(tzinfo=UTC) < seen_within
        ]
        if not fresh:
            return False, (
                f"no {name} poller from {hostname} on task queue {settings.task_queue!r} "
                f"within {POLLER_SEEN_WITHIN_SECONDS:.0f}s"
            )
    return True, f"{hostname} polls task queue {settings.task_queue!r}"


def probe(arguments: list[str], *, ready: bool) -> tuple[bool, str]:
    match arguments:
        case ["serve", _, *_]:
            return probe_http(service_url(arguments, "/readyz" if ready else "/healthz"))
        case ["worker", *_]:
            try:
                return asyncio.run(probe_worker(socket.gethostname()))
            except Exception as error:  # any failure to ask Temporal means "not healthy"
                return False, f"worker probe failed: {type(error).__name__}: {error}"
        case ["migrate", *_]:
            return True, "a one-shot migration has nothing to probe"
    return False, f"no probe for `sagabank {' '.join(arguments)}`"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pid", type=int, default=1, help="the process to probe (default 1)")
    parser.add_argument("--ready", action="store_true", help="services: /readyz, not /healthz")
    options = parser.parse_args(argv)
    try:
        command = command_of(options.pid)
    except OSError as error:
        healthy, message = False, f"cannot read the command of process {options.pid}: {error}"
    else:
        arguments = sagabank_arguments(command)
        if arguments is not None:
            healthy, message = probe(arguments, ready=options.ready)
        elif any(Path(part).name in ONE_SHOT_SCRIPTS for part in command):
            healthy, message = True, "a one-shot job has nothing to probe"
        else:
            healthy, message = False, f"not a sagabank component: {' '.join(command)!r}"
    sys.stdout.write(f"{'healthy' if healthy else 'unhealthy'}: {message}\n")
    return 0 if healthy else 1


if __name__ == "__main__":
    exit_without_finalising(main)
