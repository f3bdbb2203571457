"""Where a Temporal client connects, read the standard way (`temporalio.envconfig`).

Every Temporal client of the bank (the worker, the transactions service, the launcher and
the image's scripts) builds its `Client.connect` arguments here: Temporal's own variables
(TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_*, TEMPORAL_PROFILE
of the TOML file at TEMPORAL_CONFIG_FILE), so Temporal Cloud or a TLS-secured cluster is
configuration only. A component's own address and namespace settings (WORKER_TEMPORAL_*,
TRANSACTIONS_TEMPORAL_*, SAGABANK_TEMPORAL_*), when set, win over them; the local dev
server's address and the `default` namespace apply when neither is set.
"""

from collections.abc import Mapping
from typing import Final

from temporalio.envconfig import ClientConfigProfile, ClientConnectConfig
from temporalio.service import TLSConfig

TEMPORAL_ADDRESS_DEFAULT: Final = "127.0.0.1:7233"
TEMPORAL_NAMESPACE_DEFAULT: Final = "default"


class TemporalSettingsError(ValueError):
    """The Temporal connection settings cannot work: a bad profile, an unreadable
    certificate, or an API key that would travel without TLS."""


def temporal_connect_config(
    *,
    address: str | None,
    namespace: str | None,
    environ: Mapping[str, str] | None = None,
) -> ClientConnectConfig:
    """`Client.connect` keyword arguments from the standard settings and the component's own.

    `environ` is the environment to read (the process's when None). Raises
    TemporalSettingsError for settings that cannot connect, before any connection.
    """
    try:
        profile = ClientConfigProfile.load(override_env_vars=environ)
        # Reads the certificate files named by the profile: a missing one fails here.
        config = profile.to_client_connect_config()
    except Exception as error:
        # An unreadable file is an OSError; the SDK's native ConfigError (a bad profile)
        # has no stable public name to catch: both are settings errors.
        raise TemporalSettingsError(f"Temporal connection settings: {error}") from error
    config["target_host"] = address or config.get("target_host") or TEMPORAL_ADDRESS_DEFAULT
    config["namespace"] = namespace or config.get("namespace") or TEMPORAL_NAMESPACE_DEFAULT
    if config.get("api_key") is not None and config.get("tls") is False:
        raise TemporalSettingsError(
            "Temporal connection settings: an API key is set but TLS is disabled "
            "(TEMPORAL_TLS=false); the key would travel in clear"
        )
    return config


def described(config: ClientConnectConfig) -> dict[str, object]:
    """What a log line may say about a connection: where, and how it authenticates,
    never the key or the certificates themselves."""
    tls = config.get("tls", False)
    return {
        "address": config.get("target_host"),
        "namespace": config.get("namespace"),
        "tls": tls is not False,
        "client_certificate": isinstance(tls, TLSConfig) and tls.client_cert is not None,
        "api_key": config.get("api_key") is not None,
    }
