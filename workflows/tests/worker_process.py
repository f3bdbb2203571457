"""The worker as a deployment runs it: `python -m workflows.worker` in a process of its own."""

import asyncio
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager


@asynccontextmanager
async def worker_process(
    environment: Mapping[str, str],
) -> AsyncIterator[asyncio.subprocess.Process]:
    """The worker started with `environment`, its stderr piped; killed when the block ends
    if it has not exited by then (also when the test fails)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "workflows.worker",
        env=dict(environment),
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
