"""`sagabank up` hands the standard OTEL_* variables to every component it starts, each
named for itself even when the operator names the bank (one environment, five processes)."""

import io
from pathlib import Path

import pytest

from sagabank.config import SERVICES, LauncherSettings
from sagabank.launcher import Launcher

OTEL = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector.example:4318",
    "OTEL_EXPORTER_OTLP_HEADERS": "authorization=Bearer%20t",
    "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
    "OTEL_TRACES_SAMPLER_ARG": "0.25",
    "OTEL_RESOURCE_ATTRIBUTES": "deployment.environment=laptop",
}
DATABASE_URL = "postgresql://app@127.0.0.1:5433/db"


def _environments(tmp_path: Path) -> dict[str, dict[str, str]]:
    launcher = Launcher(LauncherSettings(state_dir=tmp_path / "state"), out=io.StringIO())
    launcher.state_dir.mkdir(parents=True)
    environments = {service: launcher._service_env(service, DATABASE_URL) for service in SERVICES}
    environments["worker"] = launcher.worker_env()
    environments["codec"] = launcher.codec_env()
    environments["console"] = launcher.console_env()
    return environments


def test_every_component_gets_the_standard_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in OTEL.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    for component, env in _environments(tmp_path).items():
        for name, value in OTEL.items():
            assert env[name] == value, (component, name)
        # Unnamed, each component names itself (kit.tracing: sagabank-<component>).
        assert "OTEL_SERVICE_NAME" not in env, component


def test_an_operators_service_name_becomes_a_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SERVICE_NAME", "bank-of-alice")
    environments = _environments(tmp_path)
    names = {component: env["OTEL_SERVICE_NAME"] for component, env in environments.items()}
    assert names == {
        "accounts": "bank-of-alice-accounts",
        "transactions": "bank-of-alice-transactions",
        "fraud": "bank-of-alice-fraud",
        "notifications": "bank-of-alice-notifications",
        "worker": "bank-of-alice-worker",
        "codec": "bank-of-alice-codec",
        "console": "bank-of-alice-console",
    }


def test_a_service_name_among_the_resource_attributes_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.setenv("OTEL_RESOURCE_ATTRIBUTES", "team=payments,service.name=ledgerly")
    environments = _environments(tmp_path)
    assert environments["fraud"]["OTEL_SERVICE_NAME"] == "ledgerly-fraud"
    assert environments["worker"]["OTEL_SERVICE_NAME"] == "ledgerly-worker"
