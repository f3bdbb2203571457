"""Talking to a running bank from the command line: where its services are, and tokens.

The commands run synchronously (one person, a few requests), with every client's timeout
stated. Failures are `BankError`s worded for the person at the terminal; nothing here
ever prints a secret or a token except where the command exists to print one.
"""

from pathlib import Path

import httpx
from pydantic import SecretStr, ValidationError

from contracts.auth import TOKEN_PATH, TokenResponse
from sagabank.config import SERVICES, LauncherSettings

HTTP_TIMEOUT_SECONDS_DEFAULT = 10.0
_DETAIL_LENGTH_MAX = 300


class BankError(Exception):
    """Why a command could not do its work; `exit_code` 1 = refused, 2 = could not ask."""

    def __init__(self, message: str, *, exit_code: int = 2) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def service_urls(settings: LauncherSettings) -> dict[str, str]:
    """Base URLs of a bank started from this state directory (its up.json), else the
    URLs the settings name (e.g. a compose bank on the same ports)."""
    from sagabank.launcher import read_state

    state = read_state(Path(settings.state_dir))
    recorded = state.get("services") if state is not None else None
    urls = {service: settings.service_url(service) for service in SERVICES}
    if isinstance(recorded, dict):
        urls.update(
            {
                name: url.rstrip("/")
                for name, url in recorded.items()
                if name in SERVICES and isinstance(url, str)
            }
        )
    return urls


def _refusal(response: httpx.Response) -> str:
    """`invalid_client: detail` from the issuer's problem (no secret is ever echoed there)."""
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}"
    if not isinstance(body, dict):
        return f"HTTP {response.status_code}"
    code = body.get("error")
    detail = body.get("detail") or body.get("title") or ""
    text = ": ".join(str(part) for part in (code, detail) if part)
    return (text or f"HTTP {response.status_code}")[:_DETAIL_LENGTH_MAX]


def request_token(
    accounts_url: str,
    form: dict[str, str],
    *,
    auth: httpx.Auth | None = None,
    timeout_seconds: float = HTTP_TIMEOUT_SECONDS_DEFAULT,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """POST the form to the token endpoint; the access token, or a BankError."""
    url = f"{accounts_url.rstrip('/')}{TOKEN_PATH}"
    try:
        with httpx.Client(
            timeout=timeout_seconds, follow_redirects=False, transport=transport
        ) as http:
            response = http.post(
                url,
                data=form,
                auth=auth or httpx.USE_CLIENT_DEFAULT,
                headers={"Accept": "application/json"},
            )
    except httpx.HTTPError as error:
        raise BankError(
            f"cannot reach the token endpoint {url}: {type(error).__name__} "
            "(is the bank running? `sagabank status`)"
        ) from None
    if response.status_code != 200:
        raise BankError(
            f"the token endpoint refused ({response.status_code}): {_refusal(response)}",
            exit_code=1,
        )
    try:
        return TokenResponse.model_validate_json(response.content).access_token
    except ValidationError:
        raise BankError(f"{url} answered something else than a token") from None


def operator_token(
    accounts_url: str,
    client_id: str,
    client_secret: SecretStr,
    *,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """An operator's access token (client_credentials, HTTP Basic client authentication)."""
    return request_token(
        accounts_url,
        {"grant_type": "client_credentials"},
        auth=httpx.BasicAuth(client_id, client_secret.get_secret_value()),
        transport=transport,
    )


def launcher_operator_token(accounts_url: str, settings: LauncherSettings | None = None) -> str:
    """The operator client's token, with the id and secret `sagabank up` registered it with
    (SAGABANK_OPERATOR_CLIENT_ID / _SECRET)."""
    settings = settings or LauncherSettings()
    return operator_token(
        accounts_url, settings.operator_client_id, settings.operator_client_secret
    )


def customer_token(
    accounts_url: str,
    email: str,
    password: SecretStr,
    *,
    transport: httpx.BaseTransport | None = None,
) -> str:
    """A customer's access token (password grant)."""
    return request_token(
        accounts_url,
        {"grant_type": "password", "username": email, "password": password.get_secret_value()},
        transport=transport,
    )
