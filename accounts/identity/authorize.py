"""Rules of the authorization endpoint (RFC 6749 4.1, RFC 7636), with no web framework and
no database: which client and redirect URI a request names, what else it asks, where an
answer may go and what the sign-in page's headers allow.

A request naming no registered public client, or a redirect URI not registered for it
exactly (save a native app's loopback port, RFC 8252 7.3), is answered on the issuer's own
page (`ClientRefused`): redirecting it would make the issuer an open redirector (RFC 6749
4.1.2.1). Every other error goes back to the client's redirect URI
(`AuthorizationRefused`).
"""

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlencode, urlsplit

from accounts.identity import rules
from accounts.identity.errors import OAuthInvalidRequest, OAuthInvalidScope
from contracts.auth import CUSTOMER_SCOPES, OPERATOR_SCOPES, Scope

SIGNS_IN_CUSTOMERS: Final = "customers"
SIGNS_IN_STAFF: Final = "staff"
STATE_LENGTH_MAX: Final = 1000
# The one method accepted: `plain` would hand the verifier to whoever sees the request.
CODE_CHALLENGE_METHOD: Final = "S256"
# Registered without a port, these accept any (RFC 8252 7.3); `localhost` is not among them:
# a name may resolve elsewhere, and RFC 8252 8.3 says to use the IP literal.
_PORTLESS_LOOPBACK_ORIGINS: Final = ("http://127.0.0.1", "http://[::1]")
_PORT: Final = re.compile(r"[1-9][0-9]{0,4}")
_PORT_MAX: Final = 65535
_REQUEST_LIMITS: Final = {
    "response_type": 100,
    "scope": rules.SCOPE_LENGTH_MAX,
    "state": STATE_LENGTH_MAX,
    "code_challenge": rules.PKCE_LENGTH_MAX + 1,
    "code_challenge_method": 100,
}


class ClientRefused(Exception):
    """No registered public client, or a redirect URI not registered for it: an error page
    on the issuer, never a redirect."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


class AuthorizationRefused(Exception):
    """An error the client hears about at its redirect URI (RFC 6749 4.1.2.1)."""

    def __init__(self, error: str, description: str, *, redirect_uri: str, state: str | None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.redirect_uri = redirect_uri
        self.state = state

    @property
    def location(self) -> str:
        answer = {"error": self.error, "error_description": self.description}
        return redirect_location(self.redirect_uri, answer, state=self.state)


@dataclass(frozen=True)
class PublicClient:
    """A registered public client as the authorization endpoint sees it."""

    client_id: str
    redirect_uris: tuple[str, ...]
    # The client's ceiling: no token it gets carries another scope.
    scopes: frozenset[Scope]
    signs_in: str

    @property
    def signs_in_staff(self) -> bool:
        return self.signs_in == SIGNS_IN_STAFF


@dataclass(frozen=True)
class AuthorizationRequest:
    """A valid authorization request: where the code goes and what it will be bound to."""

    client: PublicClient
    redirect_uri: str
    state: str | None
    code_challenge: str
    # What may be granted before knowing who signs in: asked ∩ the client's ceiling ∩ the
    # scopes of the people it signs in. Never empty.
    offered_scopes: frozenset[Scope]


def single_value(params: Mapping[str, list[str]], name: str) -> str | None:
    """The parameter's one value, None when absent; a repeated one is no value at all."""
    values = params.get(name, [])
    if len(values) > 1:
        raise ClientRefused(f"the parameter {name} is repeated")
    return values[0] if values else None


def client_reference(params: Mapping[str, list[str]]) -> tuple[str, str]:
    """The client id and redirect URI a request names, both required (we register
    several URIs per client, so the request must say which: RFC 6749 3.1.2.3)."""
    client_id = single_value(params, "client_id")
    redirect_uri = single_value(params, "redirect_uri")
    if not client_id or len(client_id) > rules.CLIENT_ID_LENGTH_MAX:
        raise ClientRefused("the request names no client")
    if not redirect_uri or len(redirect_uri) > rules.REDIRECT_URI_LENGTH_MAX:
        raise ClientRefused("the request names no redirect URI")
    return client_id, redirect_uri


def check_redirect_uri(client: PublicClient | None, redirect_uri: str) -> PublicClient:
    """The client, if it is a registered public client and `redirect_uri` one of its URIs,
    character for character (RFC 9700 2.1: no prefix, port or query leeway), save the port
    of a loopback IP literal registered without one (RFC 8252 7.3)."""
    if client is None:
        raise ClientRefused("no public client is registered with this id")
    if redirect_uri in client.redirect_uris:
        return client
    if not any(loopback_port_matches(uri, redirect_uri) for uri in client.redirect_uris):
        raise ClientRefused("this redirect URI is not registered for the client")
    return client


def loopback_port_matches(registered: str, requested: str) -> bool:
    """Whether `requested` is `registered` with a port added, `registered` being plain http
    to 127.0.0.1 or [::1] with no port: a native app listens on a port the system chose
    (RFC 8252 7.3, 8.3). Compared as text, so nothing but the port can differ: no user
    info, other host, path, query or fragment; `localhost` is a name, never relaxed."""
    for origin in _PORTLESS_LOOPBACK_ORIGINS:
        rest = registered.removeprefix(origin)
        if rest != registered and rest[:1] in ("", "/", "?"):
            after_origin = requested.removeprefix(f"{origin}:")
            if after_origin == requested or not after_origin.endswith(rest):
                return False
            port = after_origin[: len(after_origin) - len(rest)]
            # ASCII digits (str.isdigit admits others), no leading zero, a port one can bind.
            return _PORT.fullmatch(port) is not None and int(port) <= _PORT_MAX
    return False


def parse_authorization_request(
    params: Mapping[str, list[str]], *, client: PublicClient, redirect_uri: str
) -> AuthorizationRequest:
    """The rest of the request, once client and redirect URI are known good; an error
    here goes back to the client (`AuthorizationRefused`, with the state if readable)."""
    states = params.get("state", [])
    state = states[0] if len(states) == 1 and len(states[0]) <= STATE_LENGTH_MAX else None

    def refused(error: str, description: str) -> AuthorizationRefused:
        return AuthorizationRefused(error, description, redirect_uri=redirect_uri, state=state)

    try:
        fields = rules.single_fields(params, _REQUEST_LIMITS)
    except OAuthInvalidRequest as error:
        raise refused("invalid_request", error.detail or "invalid request") from None
    response_type = fields.get("response_type")
    if not response_type:
        raise refused("invalid_request", "response_type is required")
    if response_type != "code":
        raise refused("unsupported_response_type", "only response_type=code is served")
    method = fields.get("code_challenge_method")
    if method != CODE_CHALLENGE_METHOD:
        raise refused("invalid_request", "PKCE is required: code_challenge_method=S256")
    challenge = fields.get("code_challenge", "")
    problem = rules.pkce_refusal(challenge, "code_challenge")
    if problem is not None:
        raise refused("invalid_request", problem)
    try:
        offered = offered_scopes(client, fields.get("scope"))
    except OAuthInvalidScope as error:
        raise refused("invalid_scope", error.detail or "invalid scope") from None
    return AuthorizationRequest(client, redirect_uri, state, challenge, offered)


def offered_scopes(client: PublicClient, scope: str | None) -> frozenset[Scope]:
    """Asked (or, unasked, everything) ∩ the client's ceiling ∩ what the people it signs
    in may hold; fewer than asked is granted (RFC 6749 3.3), none at all is invalid_scope."""
    people = OPERATOR_SCOPES if client.signs_in_staff else CUSTOMER_SCOPES
    available = client.scopes & people
    asked = available if scope is None else rules.parse_scopes(scope)
    offered = asked & available
    if not offered:
        raise OAuthInvalidScope("no scope asked for is available through this client")
    return offered


def redirect_location(redirect_uri: str, answer: Mapping[str, str], *, state: str | None) -> str:
    """`redirect_uri` with the answer (and the state, echoed) added to its query."""
    parameters = dict(answer) | ({} if state is None else {"state": state})
    separator = "&" if urlsplit(redirect_uri).query else "?"
    return f"{redirect_uri}{separator}{urlencode(parameters)}"


def origin_of(uri: str) -> str:
    """scheme://host[:port] of an absolute URI (no user info: a CSP source has none)."""
    parts = urlsplit(uri)
    host = parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    port = "" if parts.port is None else f":{parts.port}"
    return f"{parts.scheme}://{host}{port}"


def sign_in_policy(redirect_uri: str | None) -> str:
    """The sign-in page's Content-Security-Policy: nothing but the issuer's stylesheet and
    the form. Chromium applies form-action to the redirect that follows the form's post,
    so the redirect URI's origin is allowed too; without one, no form may be sent."""
    form_action = "'none'" if redirect_uri is None else f"'self' {origin_of(redirect_uri)}"
    return "; ".join(
        (
            "default-src 'none'",
            "style-src 'self'",
            "img-src 'self'",
            f"form-action {form_action}",
            "frame-ancestors 'none'",
            "base-uri 'none'",
        )
    )
