"""A Python client generated from each service's OpenAPI (openapi-python-client, as an
integrator would) generates without a warning and type-checks under mypy --strict; a spec
that generates badly fails here (docs/decisions/0040)."""

import ast
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import pytest

from tests.service_apps import SERVICES, service_apps, write_signing_keys

GENERATE_TIMEOUT_SECONDS: Final = 120.0
TYPE_CHECK_TIMEOUT_SECONDS: Final = 180.0
BIN: Final = Path(sys.executable).parent
# The audit export streams NDJSON, which the generator has no type for (it would warn and
# leave the response out): the generated call answers its bytes instead.
GENERATOR_CONFIG: Final = (
    "content_type_overrides:\n  application/x-ndjson: application/octet-stream\n"
)
# client.py is the generator's fixed template, the same whatever the spec: its __exit__
# passes `*args: object` on to httpx's typed parameters. Everything generated from our
# specs (api/, models/) is checked with every strict flag.
MYPY_CONFIG: Final = """[mypy]
strict = True
python_version = 3.11
cache_dir = .mypy_cache
{template_overrides}"""


@dataclass(frozen=True)
class Generated:
    outputs: dict[str, subprocess.CompletedProcess[str]]
    type_check: subprocess.CompletedProcess[str]
    packages: dict[str, Path]


def package_name(service: str) -> str:
    return f"sagabank_{service}_client"


def generate_all(directory: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    """Each service's client generated from its spec in `directory`, all at once."""
    (directory / "generator.yaml").write_text(GENERATOR_CONFIG)
    # The generator formats its output with ruff: ours, from the same environment.
    environment = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    running = {
        service: subprocess.Popen(
            [
                str(BIN / "openapi-python-client"),
                "generate",
                *("--path", f"{service}.json", "--output-path", package_name(service)),
                *("--meta", "none", "--config", "generator.yaml"),
            ],
            cwd=directory,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for service in SERVICES
    }
    outputs = {}
    for service, process in running.items():
        output, _ = process.communicate(timeout=GENERATE_TIMEOUT_SECONDS)
        outputs[service] = subprocess.CompletedProcess(process.args, process.returncode, output)
    return outputs


def type_check(directory: Path) -> subprocess.CompletedProcess[str]:
    """mypy --strict over the four generated packages at once (one run shares the analysis
    of httpx and attrs)."""
    overrides = "".join(
        f"[mypy-{package_name(service)}.client]\ndisable_error_code = arg-type\n"
        for service in SERVICES
    )
    (directory / "mypy.ini").write_text(MYPY_CONFIG.format(template_overrides=overrides))
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini"]
        + [package_name(service) for service in SERVICES],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=TYPE_CHECK_TIMEOUT_SECONDS,
        check=False,
    )


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Generated:
    directory = tmp_path_factory.mktemp("generated-clients")
    apps = service_apps(write_signing_keys(tmp_path_factory.mktemp("keys")))
    for service, app in apps.items():
        (directory / f"{service}.json").write_text(json.dumps(app.openapi()))
    outputs = generate_all(directory)
    packages = {service: directory / package_name(service) for service in SERVICES}
    checked = type_check(directory)
    return Generated(outputs, checked, packages)


@pytest.mark.parametrize("service", SERVICES)
def test_each_spec_generates_a_client_without_a_warning(generated: Generated, service: str) -> None:
    result = generated.outputs[service]
    assert result.returncode == 0, result.stdout
    # The generator still exits 0 when it leaves a part out: any warning fails the spec.
    assert "warning" not in result.stdout.lower(), result.stdout
    assert "error" not in result.stdout.lower(), result.stdout
    assert (generated.packages[service] / "client.py").is_file()


def test_the_generated_clients_type_check_strictly(generated: Generated) -> None:
    assert generated.type_check.returncode == 0, generated.type_check.stdout


def test_a_generated_call_is_named_for_its_operation_and_typed(generated: Generated) -> None:
    """`create_transfer.sync` takes the request model and answers the transfer or a Problem
    (problem+json on every error status), and needs an authenticated client."""
    module = generated.packages["transactions"] / "api" / "transfers" / "create_transfer.py"
    [sync] = [
        node
        for node in ast.parse(module.read_text()).body
        if isinstance(node, ast.FunctionDef) and node.name == "sync"
    ]
    parameters = {
        argument.arg: ast.unparse(argument.annotation)
        for argument in sync.args.kwonlyargs
        if argument.annotation is not None
    }
    assert parameters == {
        "client": "AuthenticatedClient",
        "body": "TransferCreate",
        "idempotency_key": "None | str | Unset",
        "prefer": "None | str | Unset",
    }
    assert sync.returns is not None
    assert ast.unparse(sync.returns) == "Problem | Transfer | None"
