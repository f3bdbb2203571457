"""Start and stop the whole bank exactly as `make run` does (`sagabank up`), for system tests."""

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from sagabank.localstack.postgres import free_port

SERVICES = ("accounts", "transactions", "fraud", "notifications")
READY_LINE = "Sagabank is ready"


@dataclass
class Bank:
    process: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path
    ports: dict[str, int]

    def url(self, service: str) -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def temporal_address(self) -> str:
        return f"127.0.0.1:{self.ports['temporal']}"

    @property
    def temporal_ui_url(self) -> str:
        return f"http://localhost:{self.ports['temporal_ui']}"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_until_ready(self, timeout_seconds: float) -> None:
        deadline = time.monotonic() + timeout_seconds
        while READY_LINE not in self.output():
            if self.process.poll() is not None:
                raise AssertionError(f"sagabank up exited early:\n{self.output()[-6000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(f"not ready in {timeout_seconds}s:\n{self.output()[-6000:]}")
            time.sleep(0.2)

    def stop(self, timeout_seconds: float = 60.0) -> int:
        """SIGINT (a Ctrl-C) and wait; SIGKILL the launcher if it does not finish in time."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=timeout_seconds)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=timeout_seconds)
        return self.process.returncode


def bank_environment(state_dir: Path, ports: dict[str, int]) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SAGABANK_STATE_DIR": str(state_dir),
            "SAGABANK_POSTGRES_PORT": str(ports["postgres"]),
            "SAGABANK_TEMPORAL_PORT": str(ports["temporal"]),
            "SAGABANK_TEMPORAL_UI_PORT": str(ports["temporal_ui"]),
            "SAGABANK_LOG_JSON": "true",
            **{f"SAGABANK_{name.upper()}_PORT": str(ports[name]) for name in SERVICES},
        }
    )
    # The bank under test is the embedded one, whatever the developer's shell points at.
    for variable in ("SAGABANK_DATABASE_URL", "SAGABANK_TEMPORAL_ADDRESS"):
        env.pop(variable, None)
    return env


def start_bank(state_dir: Path, ports: dict[str, int] | None = None) -> Bank:
    """Launch `sagabank up` on free ports with its state under `state_dir`."""
    names = ("postgres", "temporal", "temporal_ui", *SERVICES)
    ports = ports or {name: free_port() for name in names}
    state_dir.mkdir(parents=True, exist_ok=True)
    log_path = state_dir / "up.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "sagabank", "up"],
            env=bank_environment(state_dir, ports),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    return Bank(process=process, state_dir=state_dir, log_path=log_path, ports=ports)
