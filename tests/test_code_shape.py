"""The code's shape, kept: no function in product code is longer than 70 lines.

Product code is every package the image ships (the services, the saga, the kit, the wire
contracts, the `sagabank` command) and the image's scripts; tests, migrations and the
benchmark scripts are left out. A longer function is a story to break into named steps.
"""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = (
    "accounts",
    "console",
    "contracts",
    "fraud",
    "kit",
    "notifications",
    "sagabank",
    "transactions",
    "workflows",
    "deploy/image",
)
FUNCTION_LINES_MAX = 70


def product_files() -> list[Path]:
    files = []
    for folder in PRODUCT:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "tests" in parts or "migrations" in parts:
                continue
            files.append(path)
    return files


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            assert node.end_lineno is not None
            length = node.end_lineno - node.lineno + 1
            if length > FUNCTION_LINES_MAX:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({length} lines)")
    return found


def test_the_product_code_is_read_somewhere() -> None:
    assert len(product_files()) > 50


def test_no_product_function_is_longer_than_70_lines() -> None:
    too_long = [found for path in product_files() for found in long_functions(path)]
    assert too_long == []


# The services whose routes take their typed resources (kit.resources) and the kit's own
# dependencies.
RESOURCES_PACKAGES = ("accounts", "fraud", "kit", "notifications", "transactions")


def app_state_reads(path: Path) -> list[str]:
    """Each `<x>.app.state` in `path`: a route or dependency reaching into app.state."""
    tree = ast.parse(path.read_text(), filename=str(path))
    return [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "state"
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "app"
    ]


def test_no_route_reads_app_state_but_through_a_kit_getter() -> None:
    # The shell's own state, each read by its one kit getter: the token verifier (kit.auth),
    # the limiter (kit.ratelimit), the resources, the database and the audit checkpoints.
    allowed = {"kit/auth.py", "kit/ratelimit.py", "kit/resources.py", "kit/db.py", "kit/audit.py"}
    reads = [
        found
        for path in product_files()
        if path.relative_to(ROOT).parts[0] in RESOURCES_PACKAGES
        and str(path.relative_to(ROOT)) not in allowed
        for found in app_state_reads(path)
    ]
    assert reads == []
