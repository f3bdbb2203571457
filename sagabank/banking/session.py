"""A customer's conversation with the bank: requests to its services with the profile's
token (renewed with the refresh token when it has expired or is refused), and the API's
problem+json turned into an `ApiProblem`."""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr, ValidationError

from contracts.auth import REVOCATION_PATH, TOKEN_PATH, TokenResponse
from sagabank.bankclient import HTTP_TIMEOUT_SECONDS_DEFAULT, BankError
from sagabank.banking import profiles
from sagabank.banking.profiles import Credentials

# The most items a list command gathers, page by page (each page at most PAGE_SIZE).
ITEMS_MAX_DEFAULT = 1000
PAGE_SIZE = 100
_PAGES_MAX = 100
_BODY_EXCERPT_LENGTH_MAX = 300


class ApiProblem(BankError):
    """The bank refused: `problem` is its RFC 9457 object (one is made up if it sent none);
    `advice`, when given, tells the person what to do instead."""

    def __init__(self, problem: dict[str, Any], *, advice: str | None = None) -> None:
        title = str(problem.get("title") or "refused")
        detail = problem.get("detail") or problem.get("error_description")
        message = f"{title}: {detail}" if detail else title
        super().__init__(f"{message}; {advice}" if advice else message, exit_code=1)
        self.problem = problem


def _problem_of(response: httpx.Response) -> ApiProblem:
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        body = {
            "type": "about:blank",
            "title": response.reason_phrase or f"HTTP {response.status_code}",
            "status": response.status_code,
            "detail": response.text[:_BODY_EXCERPT_LENGTH_MAX] or None,
        }
    body.setdefault("status", response.status_code)
    return ApiProblem(body)


def _send(http: httpx.Client, request: httpx.Request) -> httpx.Response:
    try:
        return http.send(request)
    except httpx.HTTPError as error:
        raise BankError(
            f"cannot reach {request.url.scheme}://{request.url.netloc.decode()}: "
            f"{type(error).__name__} (is the bank running? is the profile's --url right?)"
        ) from None


def _decoded(response: httpx.Response) -> Any:
    if response.status_code >= 400:
        raise _problem_of(response)
    return response.json() if response.content else None


class BankSession:
    """One profile's bank and, when logged in, its customer's tokens."""

    def __init__(self, profile: str, urls: dict[str, str], http: httpx.Client) -> None:
        self.profile = profile
        self.urls = urls
        self.http = http
        self._credentials: Credentials | None = None

    def url(self, service: str, path: str) -> str:
        return f"{self.urls[service].rstrip('/')}{path}"

    def call(
        self,
        method: str,
        service: str,
        path: str,
        *,
        authenticated: bool = True,
        **arguments: Any,
    ) -> Any:
        """The decoded JSON of a 2xx answer (None when empty); ApiProblem otherwise."""
        request = self.http.build_request(method, self.url(service, path), **arguments)
        if authenticated:
            request.headers["Authorization"] = f"Bearer {self._access_token()}"
        response = _send(self.http, request)
        if response.status_code == 401 and authenticated:
            # Revoked or signed by a key the bank has since retired: one renewal, then give up.
            request.headers["Authorization"] = f"Bearer {self._access_token(renew=True)}"
            response = _send(self.http, request)
        return _decoded(response)

    def send(self, request: httpx.Request) -> Any:
        """Send a request as it is (its own credentials, if any); as `call` answers."""
        return _decoded(_send(self.http, request))

    def pages(
        self, service: str, path: str, params: dict[str, str], items_max: int
    ) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list, up to items_max."""
        given = 0
        cursor: str | None = None
        for _ in range(_PAGES_MAX):
            page_params = {**params, "limit": str(min(PAGE_SIZE, items_max - given))}
            if cursor is not None:
                page_params["cursor"] = cursor
            page = self.call("GET", service, path, params=page_params)
            for item in page["items"]:
                yield item
                given += 1
            cursor = page.get("next_cursor")
            if cursor is None or given >= items_max:
                return

    def _access_token(self, *, renew: bool = False) -> str:
        credentials = self._credentials or profiles.load_credentials(self.profile)
        if credentials is None:
            raise BankError(
                f"not logged in (profile {self.profile}): run `sagabank login`", exit_code=1
            )
        if renew or credentials.expired:
            credentials = self._renew(credentials)
        self._credentials = credentials
        return credentials.access_token

    def _renew(self, credentials: Credentials) -> Credentials:
        if credentials.refresh_token is None:
            raise BankError("the session has expired: run `sagabank login`", exit_code=1)
        form = {"grant_type": "refresh_token", "refresh_token": credentials.refresh_token}
        try:
            renewed = self.token(form, credentials.email)
        except ApiProblem as problem:
            raise BankError(
                f"the session has ended ({problem}): run `sagabank login`", exit_code=1
            ) from None
        profiles.save_credentials(self.profile, renewed)
        return renewed

    def token(self, form: dict[str, str], email: str | None) -> Credentials:
        """Credentials from the issuer's token endpoint, for this form."""
        answer = self.call("POST", "accounts", TOKEN_PATH, authenticated=False, data=form)
        try:
            issued = TokenResponse.model_validate(answer)
        except ValidationError:
            raise BankError(f"{self.url('accounts', TOKEN_PATH)} answered no token") from None
        expires_at = datetime.now(UTC) + timedelta(seconds=issued.expires_in)
        return Credentials(
            email=email,
            access_token=issued.access_token,
            refresh_token=issued.refresh_token,
            expires_at=expires_at,
        )

    def login(self, email: str, password: SecretStr) -> Credentials:
        """Sign in with the password grant (a bank that serves it) and keep the tokens."""
        form = {
            "grant_type": "password",
            "username": email,
            "password": password.get_secret_value(),
        }
        try:
            credentials = self.token(form, email)
        except ApiProblem as problem:
            if problem.problem.get("error") != "unsupported_grant_type":
                raise
            # Deployed banks turn the password grant off (decision 0039).
            advice = "sign in in the browser instead: `sagabank login` without --password-stdin"
            raise ApiProblem(problem.problem, advice=advice) from None
        return self.keep(credentials)

    def keep(self, credentials: Credentials) -> Credentials:
        """Store the profile's new credentials (mode 0600) and use them from now on."""
        profiles.save_credentials(self.profile, credentials)
        self._credentials = credentials
        return credentials

    def logout(self) -> bool:
        """Revoke the refresh token (its whole family) and delete the credentials file;
        False when there was nothing to log out of."""
        credentials = profiles.load_credentials(self.profile)
        if credentials is None:
            return False
        if credentials.refresh_token is not None:
            form = {"token": credentials.refresh_token, "token_type_hint": "refresh_token"}
            self.call("POST", "accounts", REVOCATION_PATH, authenticated=False, data=form)
        profiles.forget_credentials(self.profile)
        return True


def open_session(profile: str, given_urls: dict[str, str]) -> BankSession:
    """A session on the profile's bank; the caller closes `session.http`."""
    urls = profiles.bank_urls(profile, given_urls)
    http = httpx.Client(timeout=HTTP_TIMEOUT_SECONDS_DEFAULT, follow_redirects=False)
    return BankSession(profile, urls, http)


def ndjson(record: Any) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False)
