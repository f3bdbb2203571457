"""Password hashing inside a memory budget: as many argon2 hashes at once as the budget
holds, the rest refused at once (503 with Retry-After), none queued."""

import asyncio
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Final, TypeVar

import structlog
from argon2 import PasswordHasher

from accounts.identity.errors import PasswordHashingBusy

log = structlog.get_logger()

_KIB_PER_MIB: Final = 1024
# A hash takes a tenth of a second or so: a slot is likely free again within a second.
RETRY_AFTER_SECONDS: Final = 1

Result = TypeVar("Result")


def hash_memory_mib(hasher: PasswordHasher) -> int:
    """What one hash or verification by `hasher` allocates (argon2's memory cost)."""
    return math.ceil(hasher.memory_cost / _KIB_PER_MIB)


class PasswordHashing:
    """Runs argon2 off the event loop, at most `slots` at once, `slots` being what
    `memory_budget_mib` holds. `close()` when done: it owns threads."""

    def __init__(self, hasher: PasswordHasher, *, memory_budget_mib: int) -> None:
        self.slots = memory_budget_mib // hash_memory_mib(hasher)
        if self.slots < 1:
            raise ValueError(
                f"a password hashing memory budget of {memory_budget_mib} MiB holds no hash "
                f"of {hash_memory_mib(hasher)} MiB"
            )
        self._in_use = 0
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, function: Callable[..., Result], *arguments: object) -> Result:
        """`function(*arguments)` on a hashing thread; PasswordHashingBusy when every slot
        is taken."""
        if self._in_use >= self.slots:
            log.warning("password_hashing.saturated", slots=self.slots)
            raise PasswordHashingBusy(
                "Too many sign-ins at once; try again shortly.",
                retry_after_seconds=RETRY_AFTER_SECONDS,
            )
        if self._executor is None:
            # Exactly `slots` threads: even a hash whose request was cancelled (its slot
            # given back while its thread runs on) never makes more than `slots` at once.
            self._executor = ThreadPoolExecutor(self.slots, thread_name_prefix="argon2")
        self._in_use += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, function, *arguments)
        finally:
            self._in_use -= 1

    def close(self) -> None:
        """Stop the hashing threads; a later `run` starts new ones."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None
