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

# The project's own packages: where a frame's module path starts, and the group "our code".
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
    ("our code", re.compile("|".join(re.escape(root) for root in OUR_ROOTS))),
)
STDLIB = re.compile(r"/lib/python3\.\d+/(?!site-packages)|^<frozen |^<string>")
FRAME = re.compile(r"^(?P<function>.*) \((?P<path>[^()]*?)(?::\d+)?\)$")
STDLIB_GROUP = "Python stdlib (asyncio, ...)"
OTHER_GROUP = "other"
# The synthetic root frames py-spy adds (`process 123:"..."`, `thread (0x...)`).
SYNTHETIC = re.compile(r"^(process \d+|thread \()")


# Observability's own code, by the piece that runs it: a sample whose leaf (stdlib charged
# to its caller) is observability code is charged to the innermost of these on its stack.
# The query spans' tracer is kit/tracing.py's parent-only wrapper (_Child...) around the SDK's.
PIECES = (
    (
        "database query spans",
        re.compile(r"/instrumentation/asyncpg/|^_Child[\w.]+ .*/kit/tracing\.py"),
    ),
    ("ASGI/FastAPI server spans", re.compile(r"/instrumentation/(asgi|fastapi)/")),
    ("FastAPI native telemetry", re.compile(r"/fastapi/telemetry/")),
    ("httpx client spans", re.compile(r"/instrumentation/httpx/")),
    ("Temporal TracingInterceptor", re.compile(r"/temporalio/contrib/opentelemetry")),
    ("structlog/logging", re.compile(r"/structlog/|/kit/logging\.py")),
    (
        "prometheus metrics",
        re.compile(r"/prometheus_client/|/kit/metrics(_http)?\.py|/workflows/worker_metrics\.py"),
    ),
)
OBSERVABILITY = re.compile(r"/opentelemetry/|/wrapt/|/fastapi/telemetry/")
PIECE_UNKNOWN = "other OpenTelemetry"


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
    self_by_piece: Counter[str]


def parse_frame(text: str) -> Frame:
    match = FRAME.match(text)
    if match is None:
        return Frame(text, text)
    return Frame(match["function"], match["path"])


def read_profile(path: Path) -> Profile:
    """Counts of a py-spy `--format raw` file."""
    profile = Profile(0, Counter(), Counter(), Counter(), Counter(), Counter())
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
        piece = observability_piece(frames)
        if piece is not None:
            profile.self_by_piece[piece] += count
        names = [f"{frame.function} ({frame.module})" for frame in frames]
        profile.self_by_function[names[-1]] += count
        for name in set(names):
            profile.inclusive_by_function[name] += count
    return profile


# Frames on more of the samples than this (the process's entry point, the event loop, the
# ASGI stack's outer layers) are left out of the inclusive table: they say nothing.
INCLUSIVE_SHARE_SHOWN_MAX = 0.5


def observability_piece(frames: list[Frame]) -> str | None:
    """The observability piece a stack's self time is charged to; None if it is not
    observability code's own time."""
    leaf = next((i for i in range(len(frames) - 1, -1, -1) if frames[i].group is not None), None)
    if leaf is None:
        return None
    path = frames[leaf].path
    leaf_text = f"{frames[leaf].function} {path}"
    if not OBSERVABILITY.search(path) and not any(p.search(leaf_text) for _, p in PIECES):
        return None
    for frame in reversed(frames[: leaf + 1]):
        for name, pattern in PIECES:
            if pattern.search(f"{frame.function} {frame.path}"):
                return name
    return PIECE_UNKNOWN


def markdown(directory: Path) -> str:
    """Two markdown tables, CPU ms per transfer by process: self time by group, and
    observability's own time by piece."""
    cpu = json.loads((directory / "cpu.json").read_text())
    transfers = int(cpu["transfers"])
    paths = sorted(directory.glob("*.txt"))
    profiles = {path.stem: read_profile(path) for path in paths}
    cpu_ms = {c: float(cpu["cpu_seconds"].get(c, 0.0)) * 1000 / transfers for c in profiles}
    lines: list[str] = []
    for title, attribute in (
        ("self time, by group", "self_by_group"),
        ("observability's own time, by piece", "self_by_piece"),
    ):
        totals: dict[str, float] = {}
        cells: dict[tuple[str, str], float] = {}
        for component, profile in profiles.items():
            counts: Counter[str] = getattr(profile, attribute)
            for name, count in counts.items():
                value = count / max(profile.samples, 1) * cpu_ms[component]
                cells[(name, component)] = value
                totals[name] = totals.get(name, 0.0) + value
        lines.append(f"\n| {title} | " + " | ".join(profiles) + " | all |")
        lines.append("|---" * (len(profiles) + 2) + "|")
        for name, total in sorted(totals.items(), key=lambda item: -item[1]):
            row = " | ".join(f"{cells.get((name, c), 0.0):.1f}" for c in profiles)
            lines.append(f"| {name} | {row} | {total:.1f} |")
        measured = " | ".join(f"{cpu_ms[c]:.1f}" for c in profiles)
        if title.startswith("self"):
            lines.append(f"| measured CPU | {measured} | {sum(cpu_ms.values()):.1f} |")
    return "\n".join(lines)


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
    parser.add_argument(
        "--markdown", action="store_true", help="one table by group and one by piece, all processes"
    )
    arguments = parser.parse_args()
    if arguments.markdown:
        print(markdown(arguments.directory))
    else:
        print(report(arguments.directory, arguments.top))


if __name__ == "__main__":
    main()
