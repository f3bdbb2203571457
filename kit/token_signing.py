"""RS256 signing keys and token minting: used by the issuer (accounts) and by tests.

Only the accounts service holds private keys in production; every other service sees the
public halves through the JWKS.
"""

import hashlib
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jose import jwk, jwt
from jose.backends.cryptography_backend import CryptographyRSAKey

from contracts.auth import PRINCIPAL_KIND_CLAIM, TOKEN_ALGORITHM, PrincipalKind

RSA_KEY_BITS = 2048


@dataclass(frozen=True)
class SigningKey:
    """One RSA key pair with its key id (derived from the public key, so it is stable)."""

    kid: str
    private_pem: bytes
    public_pem: bytes
    # Parsed once: loading an RSA private key checks it (~40 ms of CPU), and signing with
    # the PEM would load it again for every token.
    private_key: rsa.RSAPrivateKey = field(repr=False, compare=False)

    @classmethod
    def generate(cls) -> "SigningKey":
        private = rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_BITS)
        private_pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return cls._of(private, private_pem)

    @classmethod
    def from_private_pem(cls, private_pem: bytes) -> "SigningKey":
        private = serialization.load_pem_private_key(private_pem, password=None)
        assert isinstance(private, rsa.RSAPrivateKey), "signing keys are RSA"
        return cls._of(private, private_pem)

    @classmethod
    def _of(cls, private: rsa.RSAPrivateKey, private_pem: bytes) -> "SigningKey":
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        kid = hashlib.sha256(public_pem).hexdigest()[:16]
        return cls(kid=kid, private_pem=private_pem, public_pem=public_pem, private_key=private)

    def public_jwk(self) -> dict[str, Any]:
        key: dict[str, Any] = jwk.construct(self.public_pem, TOKEN_ALGORITHM).to_dict()
        key.update({"kid": self.kid, "use": "sig", "alg": TOKEN_ALGORITHM})
        return key


def mint_token(
    key: SigningKey,
    *,
    subject: str,
    kind: PrincipalKind,
    scopes: frozenset[str] | set[str],
    issuer: str,
    audience: str | Sequence[str],
    lifetime_seconds: int,
    now: float | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed access token. `extra_claims` may override any claim (tests forge with it)."""
    issued_at = int(now if now is not None else time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience if isinstance(audience, str) else list(audience),
        "sub": subject,
        "iat": issued_at,
        "exp": issued_at + lifetime_seconds,
        "jti": str(uuid.uuid4()),
        "scope": " ".join(sorted(scopes)),
        PRINCIPAL_KIND_CLAIM: kind.value,
    }
    claims.update(extra_claims or {})
    token: str = jwt.encode(
        {name: value for name, value in claims.items() if value is not None},
        CryptographyRSAKey(key.private_key, TOKEN_ALGORITHM),
        algorithm=TOKEN_ALGORITHM,
        headers={"kid": key.kid},
    )
    return token
