"""Temporal connection settings read the standard way (temporalio.envconfig), with a
component's own address and namespace settings over them."""

import subprocess
from pathlib import Path

import pytest
from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import Client
from temporalio.service import TLSConfig
from temporalio.testing import WorkflowEnvironment

from kit.temporal_connection import (
    TEMPORAL_ADDRESS_DEFAULT,
    TEMPORAL_NAMESPACE_DEFAULT,
    TemporalSettingsError,
    described,
    temporal_connect_config,
)

# No profile file: the SDK would otherwise read the user's ~/.config/temporalio/temporal.toml.
NO_PROFILE_FILE = str(Path(__file__).parent / "no-such-temporal.toml")
CLOUD_ADDRESS = "sagabank.a1b2c.tmprl.cloud:7233"
CLOUD_NAMESPACE = "sagabank.a1b2c"


@pytest.fixture(scope="module")
def client_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed client certificate and its key, as PEM files."""
    directory = tmp_path_factory.mktemp("tls")
    certificate, key = directory / "client.pem", directory / "client.key"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=sagabank-worker", "-keyout", str(key), "-out", str(certificate)),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return certificate, key


class TestPlain:
    def test_nothing_set_is_the_local_dev_server(self) -> None:
        config = temporal_connect_config(
            address=None, namespace=None, environ={"TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE}
        )

        assert config == {
            "target_host": TEMPORAL_ADDRESS_DEFAULT,
            "namespace": TEMPORAL_NAMESPACE_DEFAULT,
        }

    def test_standard_variables(self) -> None:
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": "temporal.internal:7233",
            "TEMPORAL_NAMESPACE": "bank",
        }

        config = temporal_connect_config(address=None, namespace=None, environ=environ)

        assert config == {"target_host": "temporal.internal:7233", "namespace": "bank"}

    def test_component_settings_win_over_the_standard_variables(self) -> None:
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": "elsewhere:7233",
            "TEMPORAL_NAMESPACE": "elsewhere",
        }

        config = temporal_connect_config(
            address="temporal:7233", namespace="sagabank", environ=environ
        )

        assert config == {"target_host": "temporal:7233", "namespace": "sagabank"}


class TestTls:
    def test_client_certificates(self, client_certificate: tuple[Path, Path]) -> None:
        certificate, key = client_certificate
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": CLOUD_ADDRESS,
            "TEMPORAL_NAMESPACE": CLOUD_NAMESPACE,
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(certificate),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(key),
        }

        config = temporal_connect_config(address=None, namespace=None, environ=environ)

        tls = config["tls"]
        assert isinstance(tls, TLSConfig)
        assert tls.client_cert == certificate.read_bytes()
        assert tls.client_private_key == key.read_bytes()
        assert "api_key" not in config
        assert described(config) == {
            "address": CLOUD_ADDRESS,
            "namespace": CLOUD_NAMESPACE,
            "tls": True,
            "client_certificate": True,
            "api_key": False,
        }

    def test_own_certificate_authority_and_server_name(
        self, client_certificate: tuple[Path, Path]
    ) -> None:
        authority, _ = client_certificate
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": "temporal.bank.internal:7233",
            "TEMPORAL_TLS": "true",
            "TEMPORAL_TLS_SERVER_CA_CERT_PATH": str(authority),
            "TEMPORAL_TLS_SERVER_NAME": "temporal-frontend",
        }

        tls = temporal_connect_config(address=None, namespace=None, environ=environ)["tls"]

        assert isinstance(tls, TLSConfig)
        assert tls.server_root_ca_cert == authority.read_bytes()
        assert tls.domain == "temporal-frontend"
        assert tls.client_cert is None

    def test_a_missing_certificate_file_is_a_settings_error(self, tmp_path: Path) -> None:
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": CLOUD_ADDRESS,
            "TEMPORAL_TLS_CLIENT_CERT_PATH": str(tmp_path / "absent.pem"),
            "TEMPORAL_TLS_CLIENT_KEY_PATH": str(tmp_path / "absent.key"),
        }

        with pytest.raises(TemporalSettingsError, match="absent"):
            temporal_connect_config(address=None, namespace=None, environ=environ)


class TestApiKey:
    def test_api_key_turns_tls_on(self) -> None:
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": CLOUD_ADDRESS,
            "TEMPORAL_NAMESPACE": CLOUD_NAMESPACE,
            "TEMPORAL_API_KEY": "secret-api-key",
        }

        config = temporal_connect_config(address=None, namespace=None, environ=environ)

        assert config == {
            "target_host": CLOUD_ADDRESS,
            "namespace": CLOUD_NAMESPACE,
            "api_key": "secret-api-key",
            "tls": True,
        }
        assert "secret-api-key" not in str(described(config))

    def test_api_key_never_travels_in_clear(self) -> None:
        environ = {
            "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
            "TEMPORAL_ADDRESS": CLOUD_ADDRESS,
            "TEMPORAL_API_KEY": "secret-api-key",
            "TEMPORAL_TLS": "false",
        }

        with pytest.raises(TemporalSettingsError, match="TLS"):
            temporal_connect_config(address=None, namespace=None, environ=environ)


class TestProfiles:
    def test_profile_from_the_config_file(self, tmp_path: Path) -> None:
        config_file = tmp_path / "temporal.toml"
        config_file.write_text(
            '[profile.cloud]\naddress = "' + CLOUD_ADDRESS + '"\n'
            'namespace = "' + CLOUD_NAMESPACE + '"\napi_key = "from-the-file"\n',
            encoding="utf-8",
        )
        environ = {"TEMPORAL_CONFIG_FILE": str(config_file), "TEMPORAL_PROFILE": "cloud"}

        config = temporal_connect_config(address=None, namespace=None, environ=environ)

        assert config["target_host"] == CLOUD_ADDRESS
        assert config["namespace"] == CLOUD_NAMESPACE
        assert config["api_key"] == "from-the-file"
        assert config["tls"] is True

    def test_unknown_profile_is_a_settings_error(self) -> None:
        with pytest.raises(TemporalSettingsError, match="nowhere"):
            temporal_connect_config(
                address=None,
                namespace=None,
                environ={"TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE, "TEMPORAL_PROFILE": "nowhere"},
            )


async def test_connects_to_the_dev_server(temporal_dev_env: WorkflowEnvironment) -> None:
    target = temporal_dev_env.client.service_client.config.target_host
    environ = {
        "TEMPORAL_CONFIG_FILE": NO_PROFILE_FILE,
        "TEMPORAL_ADDRESS": target,
        "TEMPORAL_NAMESPACE": "default",
    }
    config = temporal_connect_config(address=None, namespace=None, environ=environ)

    client = await Client.connect(**config)

    described_namespace = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace="default")
    )
    assert described_namespace.namespace_info.name == "default"
