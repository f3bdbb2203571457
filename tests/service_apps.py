"""The four services' applications, built for a test: their OpenAPI documents need
neither a database nor a started lifespan; their routes need both (`database_urls`)."""

import base64
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from fastapi import FastAPI

from accounts.config import Settings as AccountsSettings
from accounts.main import create_app as create_accounts_app
from contracts.auth import JWKS_PATH
from fraud.config import Settings as FraudSettings
from fraud.main import create_app as create_fraud_app
from kit.auth import TokenVerifier
from kit.token_signing import SigningKey
from notifications.config import Settings as NotificationsSettings
from notifications.main import create_app as create_notifications_app
from transactions.config import Settings as TransactionsSettings
from transactions.main import create_app as create_transactions_app

SERVICES: Final = ("accounts", "transactions", "fraud", "notifications")
# Where the apps' settings say the issuer is, as `sagabank up` tells every service.
ISSUER_URL: Final = "http://127.0.0.1:8001"
# Never connected to: an app that is only built opens no connection.
UNREACHABLE_DATABASE_URL: Final = "postgresql://nobody@127.0.0.1:1/nothing"
_SECRETS_KEYS: Final = "test:" + base64.b64encode(b"sagabank-test-only-secrets-key!!").decode()


def write_signing_keys(directory: Path) -> Path:
    """A signing keys directory for the issuer, with one new key."""
    path = directory / "primary.pem"
    path.write_bytes(SigningKey.generate().private_pem)
    path.chmod(0o600)
    return directory


def service_apps(
    signing_keys_dir: Path,
    *,
    database_urls: Mapping[str, str] | None = None,
    token_verifier: TokenVerifier | None = None,
) -> dict[str, FastAPI]:
    """Each service's app by name, trusting the issuer at ISSUER_URL (or `token_verifier`),
    with no background job of its own running."""
    urls = database_urls or dict.fromkeys(SERVICES, UNREACHABLE_DATABASE_URL)
    common = {"auth_jwks_url": f"{ISSUER_URL}{JWKS_PATH}", "log_json": True}
    accounts = AccountsSettings.model_validate(
        common
        | {"database_url": urls["accounts"], "signing_keys_dir": signing_keys_dir}
        | {"hold_sweep_enabled": False, "invariant_check_enabled": False}
    )
    transactions = TransactionsSettings.model_validate(
        common | {"database_url": urls["transactions"], "secrets_keys": _SECRETS_KEYS}
    )
    fraud = FraudSettings.model_validate(common | {"database_url": urls["fraud"]})
    notifications = NotificationsSettings.model_validate(
        common
        | {"database_url": urls["notifications"], "secrets_keys": _SECRETS_KEYS}
        | {"dispatcher_enabled": False}
    )
    return {
        "accounts": create_accounts_app(accounts, token_verifier=token_verifier),
        "transactions": create_transactions_app(transactions, token_verifier=token_verifier),
        "fraud": create_fraud_app(fraud, token_verifier=token_verifier),
        "notifications": create_notifications_app(notifications, token_verifier=token_verifier),
    }
