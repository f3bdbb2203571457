"""`sagabank login` in the browser: the authorization code flow with PKCE S256 (RFC 7636)
and a loopback redirect (RFC 8252): the command listens on 127.0.0.1, on a port the system
picks, for the one answer the issuer's sign-in page sends back (docs/decisions/0044)."""

import base64
import hashlib
import hmac
import html
import secrets
import socketserver
import time
import webbrowser
from collections.abc import Iterator
from contextlib import contextmanager
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from typing import Final
from urllib.parse import parse_qs, urlencode, urlsplit

import click

from contracts.auth import AUTHORIZE_PATH, CLI_CLIENT_ID, CLI_REDIRECT_URI, CUSTOMER_SCOPES
from sagabank.bankclient import BankError
from sagabank.banking.profiles import Credentials
from sagabank.banking.session import BankSession

LOOPBACK_HOST: Final = "127.0.0.1"
CALLBACK_PATH: Final = urlsplit(CLI_REDIRECT_URI).path
SIGN_IN_TIMEOUT_SECONDS_DEFAULT: Final = 300.0
# A client that opens a connection and sends nothing holds the listener this long at most.
_REQUEST_READ_TIMEOUT_SECONDS: Final = 5.0
# Requests for other paths (a browser's /favicon.ico, a port scan) are answered 404 and
# waited past, up to this many; the callback's answer ends the wait whatever it says.
_REQUESTS_MAX: Final = 20
_CALLBACK_FIELDS_MAX: Final = 10
_DESCRIPTION_LENGTH_MAX: Final = 300
_AGAIN: Final = "nothing was stored; run `sagabank login` again"
assert urlsplit(CLI_REDIRECT_URI).hostname == LOOPBACK_HOST


class SignInFailed(BankError):
    """The browser's sign-in did not end with a code for this login."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=1)


def pkce_pair() -> tuple[str, str]:
    """A new code verifier (86 characters of the URL-safe alphabet, RFC 7636 4.1) and its
    S256 challenge."""
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(authorize_url: str, *, redirect_uri: str, state: str, challenge: str) -> str:
    """The issuer's sign-in page for this login: every customer scope, PKCE S256."""
    query = {
        "response_type": "code",
        "client_id": CLI_CLIENT_ID,
        "redirect_uri": redirect_uri,
        "scope": " ".join(sorted(CUSTOMER_SCOPES)),
        "state": state,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return f"{authorize_url}?{urlencode(query)}"


def code_of_answer(query: str, *, state: str) -> str:
    """The code the issuer's answer (the callback's query) carries for this login; else
    SignInFailed: another login's or a forged answer (its state), or a refusal."""
    try:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=_CALLBACK_FIELDS_MAX)
    except ValueError:
        params = {}
    answer = {name: values[0] for name, values in params.items() if len(values) == 1}
    # Compared in constant time: a page that could time it could guess the state.
    if not hmac.compare_digest(answer.get("state", "").encode(), state.encode()):
        raise SignInFailed(f"the answer that came back is not this login's (its state): {_AGAIN}")
    error = answer.get("error")
    if error is not None:
        description = answer.get("error_description", "")[:_DESCRIPTION_LENGTH_MAX]
        said = f"{error}: {description}" if description else error
        raise SignInFailed(f"the bank did not sign you in ({said}); {_AGAIN}")
    code = answer.get("code")
    if not code:
        raise SignInFailed(f"the answer that came back carries no code; {_AGAIN}")
    return code


class _Listener(socketserver.TCPServer):
    """One login's loopback listener: it keeps the outcome of the callback's request.
    (http.server.HTTPServer would look its address up in DNS first: no need here.)"""

    def __init__(self, state: str) -> None:
        super().__init__((LOOPBACK_HOST, 0), _CallbackHandler)
        self.state = state
        self.outcome: str | SignInFailed | None = None

    @property
    def redirect_uri(self) -> str:
        return f"http://{LOOPBACK_HOST}:{self.server_address[1]}{CALLBACK_PATH}"


class _CallbackHandler(BaseHTTPRequestHandler):
    timeout = _REQUEST_READ_TIMEOUT_SECONDS
    server: _Listener

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != CALLBACK_PATH:
            self._page(HTTPStatus.NOT_FOUND, "Nothing here: this is sagabank login's listener.")
            return
        try:
            self.server.outcome = code_of_answer(parts.query, state=self.server.state)
        except SignInFailed as failed:
            self.server.outcome = failed
            self._page(HTTPStatus.BAD_REQUEST, f"Not signed in: {failed}.")
            return
        self._page(HTTPStatus.OK, "Signed in: sagabank login has your tokens.")

    def _page(self, status: HTTPStatus, message: str) -> None:
        body = (
            '<!doctype html>\n<html lang="en"><meta charset="utf-8"><title>sagabank login'
            f"</title>\n<p>{html.escape(message)}</p>\n<p>You can close this tab.</p>\n</html>\n"
        ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        # The address bar holds the code: no page may load, no referrer may carry it.
        self.send_header("Content-Security-Policy", "default-src 'none'")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: stderr is the person's, and the request line holds the code."""


@contextmanager
def _listening(state: str) -> Iterator[_Listener]:
    listener = _Listener(state)
    try:
        yield listener
    finally:
        listener.server_close()


def _wait_for_code(listener: _Listener, *, timeout_seconds: float) -> str:
    deadline = time.monotonic() + timeout_seconds
    for _ in range(_REQUESTS_MAX):
        remaining_seconds = deadline - time.monotonic()
        if remaining_seconds <= 0:
            break
        listener.timeout = remaining_seconds
        listener.handle_request()
        if isinstance(listener.outcome, SignInFailed):
            raise listener.outcome
        if listener.outcome is not None:
            return listener.outcome
    raise SignInFailed(f"no answer from the browser within {timeout_seconds:g} s; {_AGAIN}")


def _open_browser(url: str) -> bool:
    """Show `url` in the person's browser; False when there is none to show it."""
    try:
        browser = webbrowser.get()
    except webbrowser.Error:
        return False
    # A console browser (lynx, w3m: webbrowser's GenericBrowser) would take this terminal
    # and block this process, whose listener it needs, until it quits: the URL is printed.
    if type(browser) is webbrowser.GenericBrowser:
        return False
    return browser.open(url)


def browser_sign_in(
    session: BankSession, *, open_browser: bool, timeout_seconds: float
) -> Credentials:
    """Sign in on the issuer's page in a browser of this machine and redeem the code that
    comes back to the listener: the customer's credentials (not stored yet)."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(32)
    with _listening(state) as listener:
        redirect_uri = listener.redirect_uri
        url = authorization_url(
            session.url("accounts", AUTHORIZE_PATH),
            redirect_uri=redirect_uri,
            state=state,
            challenge=challenge,
        )
        click.echo(
            f"Sign in to the bank in a browser on this machine (waiting {timeout_seconds:g} s):"
            f"\n{url}",
            err=True,
        )
        if open_browser and not _open_browser(url):
            click.echo("(no browser to open here: open the URL above yourself)", err=True)
        code = _wait_for_code(listener, timeout_seconds=timeout_seconds)
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "client_id": CLI_CLIENT_ID,
        "code_verifier": verifier,
    }
    return session.token(form, None)
