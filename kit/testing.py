"""Helpers for service tests: drive an app in-process, lifespan included."""

import base64
import enum
import hmac
import importlib
import json
import pkgutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from types import ModuleType
from typing import Any, Final

import httpx
from fastapi import FastAPI
from temporalio.converter import DataConverter

from contracts.auth import (
    CUSTOMER_SCOPES,
    OPERATOR_SCOPES,
    WORKER_SCOPES,
    PrincipalKind,
    Scope,
)
from contracts.problem import PROBLEM_CONTENT_TYPE, CommonProblem
from kit.auth import StaticKeySource, TokenVerifier
from kit.errors import ProblemError
from kit.payloads import data_converter
from kit.sealing import parse_key_ring
from kit.token_signing import SigningKey, mint_token


@asynccontextmanager
async def app_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client wired to `app` in-process, with its lifespan started and stopped."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, object]:
    """Assert an RFC 9457 answer with this status and `urn:sagabank:problem:<slug>` type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_CONTENT_TYPE)
    body: dict[str, object] = response.json()
    assert body["type"] == f"urn:sagabank:problem:{slug}", body
    assert body["status"] == status
    assert body["title"]
    return body


# Subpackages of a service that hold no code it runs: never imported in search of problems.
_NOT_SERVICE_CODE = frozenset({"tests", "migrations"})


def _modules(package_name: str) -> Iterator[ModuleType]:
    package = importlib.import_module(package_name)
    yield package
    for module in pkgutil.iter_modules(package.__path__):
        name = f"{package_name}.{module.name}"
        if module.ispkg and module.name not in _NOT_SERVICE_CODE:
            yield from _modules(name)
        elif not module.ispkg and module.name != "__main__":
            yield importlib.import_module(name)


def problem_classes(package_name: str) -> list[type[ProblemError]]:
    """Every problem class the package's code defines with a slug of its own (an abstract
    base such as accounts' `OAuthError` sets none), its tests apart."""
    names = {module.__name__ for module in _modules(package_name)}
    seen: list[type[ProblemError]] = []
    pending: list[type[ProblemError]] = [ProblemError]
    while pending:
        error = pending.pop()
        if error not in seen:
            seen.append(error)
            pending.extend(error.__subclasses__())
    return [error for error in seen if error.__module__ in names and "slug" in vars(error)]


def assert_problem_registry(package_name: str, problems: type[enum.StrEnum] | None) -> None:
    """Assert that each of the package's problem classes takes its slug from `problems` (its
    service's enum; None for the kit) or `CommonProblem`, and that each member of `problems`
    is the slug of exactly one (a `CommonProblem` may be the slug of several)."""
    registries: tuple[type[enum.StrEnum], ...] = (CommonProblem,)
    if problems is not None:
        registries = (problems, CommonProblem)
        # A slug in both would leave it unclear which registry owns it.
        assert not set(problems) & set(CommonProblem), set(problems) & set(CommonProblem)
    classes = problem_classes(package_name)
    for error in classes:
        assert isinstance(error.slug, registries), (
            f"{error.__module__}.{error.__qualname__}.slug = {error.slug!r}: "
            f"take it from {' or '.join(registry.__name__ for registry in registries)}"
        )
    for problem in problems or ():
        answering = [error.__qualname__ for error in classes if error.slug == problem]
        assert len(answering) == 1, f"{problem!r} is the slug of {answering or 'no class'}"


# The audience of a test issuer's tokens and of its verifier: a service's tests check its
# scopes and ownership, whatever audience its tokens name (the issuer's own tests check that
# a token names exactly its scopes' services, the system tests that a service refuses others).
TEST_AUDIENCE: Final = "sagabank:test"


class TestIssuer:
    """Mints tokens the way the accounts service does, with keys made for the test.

    Give `issuer.verifier` to an app (`app.state.token_verifier`) and `issuer.headers(...)`
    to the requests; `issuer.forgeries(...)` are the attacks every endpoint must refuse.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, *, issuer: str = "sagabank-test", audience: str = TEST_AUDIENCE) -> None:
        self.issuer = issuer
        self.audience = audience
        self.key = SigningKey.generate()
        self.key_source = StaticKeySource({self.key.kid: self.key.public_jwk()})
        self.verifier = TokenVerifier(self.key_source, issuer=issuer, audience=audience)

    def token(
        self,
        subject: str,
        kind: PrincipalKind,
        scopes: frozenset[str] | set[str] | frozenset[Scope],
        *,
        key: SigningKey | None = None,
        lifetime_seconds: int = 900,
        **claims: Any,
    ) -> str:
        return mint_token(
            key or self.key,
            subject=subject,
            kind=kind,
            scopes={str(scope) for scope in scopes},
            issuer=self.issuer,
            audience=self.audience,
            lifetime_seconds=lifetime_seconds,
            extra_claims=claims,
        )

    def headers(
        self,
        subject: str,
        kind: PrincipalKind,
        scopes: frozenset[str] | set[str] | frozenset[Scope],
    ) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(subject, kind, scopes)}"}

    def customer(self, customer_id: str) -> dict[str, str]:
        return self.headers(customer_id, PrincipalKind.customer, CUSTOMER_SCOPES)

    def operator(self, operator_id: str = "operator-1") -> dict[str, str]:
        return self.headers(operator_id, PrincipalKind.operator, OPERATOR_SCOPES)

    def worker(self) -> dict[str, str]:
        return self.headers("worker", PrincipalKind.service, WORKER_SCOPES)

    def forgeries(
        self,
        subject: str,
        kind: PrincipalKind,
        scopes: frozenset[str] | set[str] | frozenset[Scope],
    ) -> dict[str, dict[str, str]]:
        """Headers for each attack in the security matrix, keyed by a readable name.

        Each is refused with 401 by a correct verifier. (The missing-scope and
        foreign-object cells depend on the endpoint, so tests add them themselves.)
        """
        valid = self.token(subject, kind, scopes)
        header_b64, payload_b64, _signature = valid.split(".")
        payload = json.loads(_b64decode(payload_b64))
        tampered_payload = _b64encode(
            json.dumps({**payload, "sub": f"{subject}-x", "scope": "audit:read"}).encode()
        )
        none_header = _b64encode(
            json.dumps({"alg": "none", "typ": "JWT", "kid": self.key.kid}).encode()
        )
        hs_header = _b64encode(
            json.dumps({"alg": "HS256", "typ": "JWT", "kid": self.key.kid}).encode()
        )
        hs_signature = _b64encode(
            hmac.new(self.key.public_pem, f"{hs_header}.{payload_b64}".encode(), "sha256").digest()
        )
        tokens = {
            "malformed": "not-a-jwt",
            "expired": self.token(subject, kind, scopes, lifetime_seconds=-3600),
            "alg-none": f"{none_header}.{payload_b64}.",
            "hs256-with-public-key": f"{hs_header}.{payload_b64}.{hs_signature}",
            "wrong-audience": self.token(subject, kind, scopes, aud="someone-else"),
            "wrong-issuer": self.token(subject, kind, scopes, iss="https://evil.invalid"),
            "no-exp": self.token(subject, kind, scopes, exp=None),
            "unknown-kid": self.token(subject, kind, scopes, key=SigningKey.generate()),
            "tampered-payload": f"{header_b64}.{tampered_payload}.{_signature}",
        }
        cells = {name: {"Authorization": f"Bearer {token}"} for name, token in tokens.items()}
        cells["no-token"] = {}
        return cells


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


# The ring Temporal payloads are sealed under in tests (never in production): the worker,
# the transactions service and the test environments' clients share it.
TEST_PAYLOAD_KEYS = "test:" + base64.b64encode(b"sagabank-test-only-payload-key!!").decode()


def converter_for_tests() -> DataConverter:
    """The converter of the tests' Temporal clients and workers (kit.payloads, test keys)."""
    return data_converter(parse_key_ring(TEST_PAYLOAD_KEYS))
