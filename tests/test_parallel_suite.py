"""The suite runs on every core (pytest-xdist, `--dist loadgroup`), and tests that share an
expensive fixture stay on one worker: else each worker would start a bank of its own."""

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COLLECT_TIMEOUT_SECONDS = 120.0
SYSTEM_BANK_GROUP = "system-bank"
# A module of its own with a module-scoped fixture: all its tests in one group.
PROBE = "tests/parallel_probe.py"
TESTS_PER_KIND = 6
# Use the shared bank directly (`bank`) or through fixtures (`api`, `bank_temporal`).
SHARED_BANK_MODULES = (
    "tests/test_walking_skeleton.py",
    "tests/test_audit_system.py",
    "tests/test_payload_codec_system.py",
)
# A bank of its own (module scope); a database shared by a module's matrix.
SHARED_FIXTURE_MODULES = ("tests/test_edges_system.py", "fraud/tests/test_security.py")
# accounts' own `bank` fixture is a function-scoped test helper, not the system bank.
UNGROUPED_MODULES = ("accounts/tests/test_accounts.py", "tests/test_code_shape.py")
# Collects as `make test` does and writes {node id: [xdist_group names]} to the file argv[1].
_COLLECT_GROUPS = """
import json, sys
import pytest

class Groups:
    def pytest_collection_finish(self, session):
        groups = {
            item.nodeid: [mark.args[0] for mark in item.iter_markers("xdist_group")]
            for item in session.items
        }
        with open(sys.argv[1], "w") as out:
            json.dump(groups, out)

arguments = ["--collect-only", "-q", "-n", "0", "-p", "no:cacheprovider", *sys.argv[2:]]
sys.exit(pytest.main(arguments, plugins=[Groups()]))
"""


@pytest.fixture(scope="module")
def groups(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[str]]:
    """The xdist groups of the modules named above, as `pytest` collects them."""
    out = tmp_path_factory.mktemp("groups") / "groups.json"
    paths = [*SHARED_BANK_MODULES, *SHARED_FIXTURE_MODULES, *UNGROUPED_MODULES]
    result = subprocess.run(
        [sys.executable, "-c", _COLLECT_GROUPS, str(out), *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=COLLECT_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    collected: dict[str, list[str]] = json.loads(out.read_text())
    return collected


def _in_module(groups: dict[str, list[str]], module: str) -> dict[str, list[str]]:
    found = {nodeid: names for nodeid, names in groups.items() if nodeid.startswith(module)}
    assert found, f"nothing collected from {module}"
    return found


def test_addopts_run_on_every_core_in_groups() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    addopts = pyproject["tool"]["pytest"]["ini_options"]["addopts"].split()
    assert "-n" in addopts
    assert addopts[addopts.index("-n") + 1] == "auto"
    assert "--dist" in addopts
    assert addopts[addopts.index("--dist") + 1] == "loadgroup"


def test_pytest_xdist_runs_a_group_on_one_worker() -> None:
    # pytest-xdist 3.8 tells workers' groups to its scheduler through node ids, which pytest
    # 9.2 no longer lets a plugin change: every test then goes to any worker, and each
    # worker starts a bank of its own (pytest-xdist issue 1386; pyproject pins pytest).
    environment = {name: value for name, value in os.environ.items() if "PYTEST" not in name}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-n", "2", PROBE],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=COLLECT_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    workers = {
        match["test"]: match["worker"]
        for match in re.finditer(r"\[(?P<worker>gw\d+)\] .*PASSED (?P<test>\S+)", result.stdout)
    }
    assert len(workers) == 2 * TESTS_PER_KIND, result.stdout[-4000:]
    assert len(set(workers.values())) == 1, workers


def test_every_user_of_the_shared_bank_is_in_one_group(groups: dict[str, list[str]]) -> None:
    for module in SHARED_BANK_MODULES:
        for nodeid, names in _in_module(groups, module).items():
            assert names == [SYSTEM_BANK_GROUP], nodeid


def test_a_module_scoped_fixture_keeps_its_module_on_one_worker(
    groups: dict[str, list[str]],
) -> None:
    for module in SHARED_FIXTURE_MODULES:
        names = {tuple(names) for names in _in_module(groups, module).values()}
        assert names == {(module,)}, module


def test_other_tests_go_to_any_worker(groups: dict[str, list[str]]) -> None:
    for module in UNGROUPED_MODULES:
        for nodeid, names in _in_module(groups, module).items():
            assert names == [], nodeid
