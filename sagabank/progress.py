"""A progress line for long commands (`ledger check`, `audit --export`): on a terminal, one
line on stderr rewritten in place with what is done and the time taken; anywhere else
(a pipe, a file, a test) nothing at all, so scripts read exactly what they read before."""

import sys
import threading
import time
from types import TracebackType
from typing import TextIO

# How often the line is redrawn: often enough to look alive, rarely enough to cost nothing.
REDRAW_INTERVAL_SECONDS = 0.2
_CLEAR_LINE = "\r\x1b[K"


class Progress:
    """`with Progress("checking the ledger") as progress: ... progress.note("1,000 rows")`."""

    def __init__(self, label: str, *, stream: TextIO | None = None) -> None:
        self.label = label
        self._stream = stream if stream is not None else sys.stderr
        self._live = self._stream.isatty()
        self._note = ""
        self._started = time.monotonic()
        self._stopped = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._redraw_until_stopped, daemon=True)

    def __enter__(self) -> "Progress":
        self._started = time.monotonic()
        if self._live:
            self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if not self._live:
            return
        self._stopped.set()
        self._thread.join()
        with self._lock:
            self._stream.write(_CLEAR_LINE)
            self._stream.flush()

    def note(self, text: str) -> None:
        """What is done so far, shown after the label (nothing when not on a terminal)."""
        with self._lock:
            self._note = text

    def _redraw_until_stopped(self) -> None:
        while not self._stopped.wait(REDRAW_INTERVAL_SECONDS):
            with self._lock:
                elapsed_seconds = time.monotonic() - self._started
                note = f": {self._note}" if self._note else ""
                self._stream.write(f"{_CLEAR_LINE}{self.label}{note} ({elapsed_seconds:.1f} s)")
                self._stream.flush()
