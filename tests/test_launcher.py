"""`sagabank up` as a person uses it: it starts everything, and Ctrl-C leaves nothing behind."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from sagabank.localstack.postgres import free_port
from tests.bank import CONSOLE, SERVICES, bank_environment, start_bank

pytestmark = pytest.mark.system


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _worker_pid(state_dir: Path) -> int | None:
    try:
        state = json.loads((state_dir / "up.json").read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid = state["children"].get("worker")
    return pid if isinstance(pid, int) else None


def _runs_the_worker(pid: int) -> bool:
    """The process has become the worker: between its fork and its exec, a child still
    shows the launcher's own command line."""
    try:
        return _alive(pid) and "worker" in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def _kill_worker_and_wait_for_its_restart(state_dir: Path) -> None:
    crashed = _worker_pid(state_dir)
    assert crashed is not None
    os.kill(crashed, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while True:
        current = _worker_pid(state_dir)
        if current is not None and current != crashed and _runs_the_worker(current):
            return
        assert time.monotonic() < deadline, "the launcher did not restart the killed worker"
        time.sleep(0.1)


def test_sigint_stops_every_child(short_tmp_path: Path) -> None:
    """Also: a worker killed with SIGKILL is restarted, and the bank stays up."""
    bank = start_bank(short_tmp_path / "state")
    try:
        bank.wait_until_ready(240)
        for service in (*SERVICES, CONSOLE):
            assert httpx.get(f"{bank.url(service)}/readyz", timeout=5).status_code == 200
        assert httpx.get(bank.temporal_ui_url, timeout=5).status_code == 200
        _kill_worker_and_wait_for_its_restart(bank.state_dir)
        children = psutil.Process(bank.process.pid).children(recursive=True)
        commands = " ".join(" ".join(child.cmdline()) for child in children)
        for expected in (
            "postgres",
            "temporal",
            "serve accounts",
            "serve transactions",
            "serve fraud",
            "serve notifications",
            "serve console",
            "worker",
        ):
            assert expected in commands, f"{expected} not among the launcher's children"
    finally:
        returncode = bank.stop()

    assert returncode == 0, bank.output()[-4000:]
    deadline = time.monotonic() + 10
    while any(_alive(child.pid) for child in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [child.pid for child in children if _alive(child.pid)]
    assert survivors == [], f"processes survived SIGINT: {survivors}"
    assert not (short_tmp_path / "state" / "up.json").exists()


def test_port_in_use_is_named(tmp_path: Path) -> None:
    names = ("postgres", "temporal", "temporal_ui", "codec", *SERVICES, CONSOLE)
    ports = {name: free_port() for name in names}
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as squatter:
        squatter.bind(("127.0.0.1", ports["accounts"]))
        squatter.listen()
        result = subprocess.run(
            [sys.executable, "-m", "sagabank", "up"],
            env=bank_environment(tmp_path / "state", ports),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"port {ports['accounts']} (accounts) is already in use" in result.stdout
    assert "SAGABANK_ACCOUNTS_PORT" in result.stdout


def test_help_explains_each_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sagabank", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    for command in ("up", "down", "status", "serve", "worker", "migrate", "token", "audit"):
        assert f"  {command} " in result.stdout
