"""Signing keys: a key is parsed once, when it is made, not again for every token."""

from collections.abc import Callable
from typing import Any

import pytest
from jose import jwt
from jose.backends import cryptography_backend

from contracts.auth import TOKEN_ALGORITHM, PrincipalKind
from kit.token_signing import SigningKey, mint_token

TOKENS = 3
# The token library's own reference to cryptography's PEM loader (untyped in its stubs).
_LOADER = "load_pem_private_key"


def _counting_loads(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every private key the token library parses from PEM from now on."""
    loaded: list[bytes] = []
    load: Callable[..., Any] = getattr(cryptography_backend, _LOADER)

    def counting(data: bytes, *arguments: Any, **options: Any) -> Any:
        loaded.append(data)
        return load(data, *arguments, **options)

    monkeypatch.setattr(cryptography_backend, _LOADER, counting)
    return loaded


def test_minting_signs_with_the_key_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Loading an RSA private key validates it, ~40 ms of CPU: once per token would cost the
    # issuer (and every test minting tokens) more than the signature itself.
    key = SigningKey.from_private_pem(SigningKey.generate().private_pem)
    loaded = _counting_loads(monkeypatch)

    tokens = [
        mint_token(
            key,
            subject=f"customer-{number}",
            kind=PrincipalKind.customer,
            scopes={"accounts:read"},
            issuer="https://issuer.test",
            audience="accounts",
            lifetime_seconds=60,
        )
        for number in range(TOKENS)
    ]

    assert loaded == []
    for number, token in enumerate(tokens):
        assert jwt.get_unverified_header(token)["kid"] == key.kid
        claims = jwt.decode(token, key.public_pem.decode(), TOKEN_ALGORITHM, audience="accounts")
        assert claims["sub"] == f"customer-{number}"


def test_a_key_read_back_from_its_pem_is_the_same_key() -> None:
    key = SigningKey.generate()

    read_back = SigningKey.from_private_pem(key.private_pem)

    assert read_back == key
    assert read_back.kid == key.kid
