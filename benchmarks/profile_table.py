"""Top costs of a process from a py-spy raw (collapsed) profile, per transfer.

A collapsed profile has one line per distinct stack: `frame;frame;...;frame count`, the
outermost frame first, each frame `function (path:line)`. py-spy counts only threads that
are running (not waiting in epoll or a lock), so a stack's share of the samples is its
share of the process's Python CPU; multiplied by the CPU the process measurably spent per
transfer, it is CPU ms per transfer. Native threads (Temporal's Rust core in the worker)
are not sampled: their CPU hides in the gap between sampled and measured seconds.

    .venv/bin/python benchmarks/profile_table.py PROFILE_DIR   # what saga.py --profile wrote

PROFILE_DIR holds `<component>.txt` per process and `cpu.json` ({"transfers": N,
"rate_hz": R, "cpu_seconds": {component: seconds}}), both written by `saga.py --profile`.
"""

import argparse
import json
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# What a frame belongs to, by the first pattern its path matches (in this order). Standard
# library frames are charged to their nearest caller that is not standard library: json's
# encoder under structlog is logging's cost, asyncio's loop under uvicorn is the server's.
GROUPS = (
    ("OpenTelemetry", re.compile(r"/(opentelemetry|wrapt)/")),
    ("prometheus", re.compile(r"/prometheus_client/")),
    ("structlog/logging", re.compile(r"/(structlog|orjson)/|/kit/logging\.py")),
    ("pydantic", re.compile(r"/pydantic(_core|_settings)?/")),
    ("SQLAlchemy", re.compile(r"/sqlalchemy/|<sqlalchemy generated")),
    ("asyncpg", re.compile(r"/asyncpg/")),
    ("jose/RS256", re.compile(r"/(jose|cryptography|rsa|ecdsa)/")),
    ("httpx", re.compile(r"/(httpx|httpcore|h11|anyio)/")),
    ("temporalio SDK", re.compile(r"/temporalio/")),
    ("uvicorn/starlette/fastapi", re.compile(r"/(uvicorn|starlette|fastapi|slowapi|limits)/")),
    ("google.protobuf", re.compile(r"/google/protobuf/")),
    (
        "our code",
        re.compile(r"/(kit|contracts|accounts|transactions|fraud|notifications|workflows)/"),
    ),
)
OUR_ROOTS = (
    "/kit/",
    "/contracts/",
    "/accounts/",
    "/transactions/",
    "/fraud/",
    "/notifications/",
    "/workflows/",
    "/sagabank/",
)
STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages)|^<frozen |^<string>")
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
STDLIB_GROUP = "Python stdlib (asyncio, ...)"
OTHER_GROUP = "other"
# The synthetic root frames py-spy adds (`process 123:"..."`, `thread (0x...)`).
SYNTHETIC = re.compile(r"^(process \d+|thread \()")


@dataclass(frozen=True)
class Frame:
    function: str
    path: str

    @property
    def module(self) -> str:
        """The path from the package on: `opentelemetry/instrumentation/asgi/__init__.py`."""
        marker = "site-packages/"
        if marker in self.path:
            return self.path.split(marker, 1)[1]
        for root in OUR_ROOTS:
            if root in self.path:
                return root.strip("/") + "/" + self.path.split(root, 1)[1]
        return self.path.rsplit("/lib/", 1)[-1]

    @property
    def group(self) -> str | None:
        """Its group; None for the standard library (charged to the caller)."""
        for name, pattern in GROUPS:
            if pattern.search(self.path):
                return name
        return None if STDLIB.search(self.path) else OTHER_GROUP


@dataclass
class Profile:
    """Sample counts of one process: self and inclusive, by function and by group."""

    samples: int
    self_by_group: Counter[str]
    inclusive_by_group: Counter[str]
    self_by_function: Counter[str]
    inclusive_by_function: Counter[str]


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text)
    if match is None:
        return Frame(text, text)
    return Frame(match["function"], match["path"])


def read_profile(path: Path) -> Profile:
    """Counts of a py-spy `--format raw` file."""
    profile = Profile(0, Counter(), Counter(), Counter(), Counter())
    for line in path.read_text(errors="replace").splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [parse_frame(f) for f in stack_text.split(";") if not SYNTHETIC.match(f)]
        if not frames:
            continue
        profile.samples += count
        groups = [frame.group for frame in frames]
        # The leaf's group, or that of its nearest caller outside the standard library.
        leaf_group = next((g for g in reversed(groups) if g is not None), STDLIB_GROUP)
        profile.self_by_group[leaf_group] += count
        for group in {g for g in groups if g is not None}:
            profile.inclusive_by_group[group] += count
        names = [f"{frame.function} ({frame.module})" for frame in frames]
        profile.self_by_function[names[-1]] += count
        for name in set(names):
            profile.inclusive_by_function[name] += count
    return profile


# Frames on more of the samples than this (the process's entry point, the event loop, the
# ASGI stack's outer layers) are left out of the inclusive table: they say nothing.
INCLUSIVE_SHARE_SHOWN_MAX = 0.5


def table(
    title: str,
    counts: Counter[str],
    samples: int,
    cpu_ms_per_transfer: float,
    top: int,
    share_max: float = 1.0,
) -> list[str]:
    lines = [f"  {title:<78} {'share':>6} {'ms/transfer':>12}"]
    shown = [(name, count) for name, count in counts.most_common() if count / samples <= share_max]
    for name, count in shown[:top]:
        share = count / samples
        lines.append(f"  {name[:78]:<78} {share:>6.1%} {share * cpu_ms_per_transfer:>12.2f}")
    return lines


def report(directory: Path, top: int = 12) -> str:
    """The top-costs tables of every profile in `directory`, as text."""
    cpu = json.loads((directory / "cpu.json").read_text())
    transfers, rate_hz = int(cpu["transfers"]), float(cpu["rate_hz"])
    lines: list[str] = []
    for path in sorted(directory.glob("*.txt")):
        component = path.stem
        profile = read_profile(path)
        if profile.samples == 0:
            lines.append(f"\n{component}: no samples")
            continue
        cpu_ms = float(cpu["cpu_seconds"].get(component, 0.0)) * 1000 / transfers
        sampled_ms = profile.samples / rate_hz * 1000 / transfers
        lines.append(
            f"\n{component}: {cpu_ms:.1f} CPU ms per transfer measured, {sampled_ms:.1f} "
            f"sampled ({profile.samples} samples at {rate_hz:.0f} Hz)"
        )
        lines += table("self, by group", profile.self_by_group, profile.samples, cpu_ms, top)
        lines += table(
            "inclusive, by group", profile.inclusive_by_group, profile.samples, cpu_ms, top
        )
        lines += table("self, by function", profile.self_by_function, profile.samples, cpu_ms, top)
        lines += table(
            f"inclusive, by function (those on at most {INCLUSIVE_SHARE_SHOWN_MAX:.0%})",
            profile.inclusive_by_function,
            profile.samples,
            cpu_ms,
            top,
            INCLUSIVE_SHARE_SHOWN_MAX,
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("directory", type=Path, help="what saga.py --profile DIR wrote")
    parser.add_argument("--top", type=int, default=12, help="rows per table")
    arguments = parser.parse_args()
    print(report(arguments.directory, arguments.top))


if __name__ == "__main__":
    main()
