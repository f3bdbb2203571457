"""`sagabank up` and Temporal's standard TEMPORAL_* settings: they describe an external
cluster, so they reach the components only when the launcher uses one."""

import io
from pathlib import Path

import pytest

from kit.temporal_connection import temporal_connect_config
from sagabank.config import LauncherSettings
from sagabank.launcher import Launcher

CLOUD = {
    "TEMPORAL_ADDRESS": "sagabank.a1b2c.tmprl.cloud:7233",
    "TEMPORAL_NAMESPACE": "sagabank.a1b2c",
    "TEMPORAL_API_KEY": "cloud-api-key",
}


def _temporal_environments(launcher: Launcher) -> dict[str, dict[str, str]]:
    launcher.state_dir.mkdir(parents=True)
    return {
        "transactions": launcher._service_env("transactions", "postgresql://app@h/db"),
        "worker": launcher.worker_env(),
    }


def test_the_dev_server_ignores_a_cloud_in_the_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CLOUD.items():
        monkeypatch.setenv(name, value)
    launcher = Launcher(LauncherSettings(state_dir=tmp_path / "state"), out=io.StringIO())

    for component, env in _temporal_environments(launcher).items():
        assert not {name for name in env if name in CLOUD}, component
        prefix = component.upper()
        connection = temporal_connect_config(
            address=env[f"{prefix}_TEMPORAL_ADDRESS"],
            namespace=env[f"{prefix}_TEMPORAL_NAMESPACE"],
            environ=env,
        )
        assert connection == {"target_host": "127.0.0.1:7233", "namespace": "default"}
    assert launcher.temporal_connection() == {
        "target_host": "127.0.0.1:7233",
        "namespace": "default",
    }


def test_the_dev_server_ignores_the_users_profile_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    profile_file = home / ".config" / "temporalio" / "temporal.toml"
    profile_file.parent.mkdir(parents=True)
    profile_file.write_text(
        '[profile.default]\naddress = "cloud.example:7233"\napi_key = "from-home"\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TEMPORAL_CONFIG_FILE", raising=False)
    launcher = Launcher(LauncherSettings(state_dir=tmp_path / "state"), out=io.StringIO())

    env = _temporal_environments(launcher)["worker"]

    assert temporal_connect_config(address=None, namespace=None, environ=env) == {
        "target_host": "127.0.0.1:7233",
        "namespace": "default",
    }


def test_an_external_cluster_gets_the_standard_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in CLOUD.items():
        monkeypatch.setenv(name, value)
    settings = LauncherSettings(
        state_dir=tmp_path / "state",
        temporal_address=CLOUD["TEMPORAL_ADDRESS"],
        temporal_namespace=CLOUD["TEMPORAL_NAMESPACE"],
    )
    launcher = Launcher(settings, out=io.StringIO())

    for component, env in _temporal_environments(launcher).items():
        assert env["TEMPORAL_API_KEY"] == CLOUD["TEMPORAL_API_KEY"], component
    assert launcher.temporal_connection()["api_key"] == CLOUD["TEMPORAL_API_KEY"]
