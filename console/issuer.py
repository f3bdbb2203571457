"""The console as an OAuth2 public client of the issuer (accounts): the authorization code
flow with PKCE (RFC 7636, S256), renewal, revocation (RFC 7009) and the staff profile."""

import base64
import hashlib
from typing import Final
from urllib.parse import urlencode

import httpx
from pydantic import ValidationError

from contracts.auth import AUTHORIZE_PATH, REVOCATION_PATH, TOKEN_PATH, TokenResponse
from contracts.staff import STAFF_PROFILE_PATH, StaffProfile

CODE_CHALLENGE_METHOD: Final = "S256"


def code_challenge(code_verifier: str) -> str:
    """RFC 7636 4.2: base64url (no padding) of the verifier's SHA-256."""
    digest = hashlib.sha256(code_verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class IssuerRefused(Exception):
    """The issuer refused or could not be reached; the message is for the log, not the page."""


class Issuer:
    """Builds the authorize URL the browser goes to; calls the token, revocation and profile
    endpoints over `http` (the issuer's internal URL)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        public_url: str,
        client_id: str,
        redirect_uri: str,
        scopes: list[str],
    ) -> None:
        self.http = http
        self.public_url = public_url.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.scopes = scopes

    def authorize_url(self, *, state: str, code_verifier: str) -> str:
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": self.redirect_uri,
                "scope": " ".join(self.scopes),
                "state": state,
                "code_challenge": code_challenge(code_verifier),
                "code_challenge_method": CODE_CHALLENGE_METHOD,
            }
        )
        return f"{self.public_url}{AUTHORIZE_PATH}?{query}"

    async def exchange_code(self, *, code: str, code_verifier: str) -> TokenResponse:
        return await self._token(
            {
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self.redirect_uri,
                "client_id": self.client_id,
                "code_verifier": code_verifier,
            }
        )

    async def renew(self, refresh_token: str) -> TokenResponse:
        return await self._token(
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": self.client_id,
            }
        )

    async def revoke(self, token: str) -> None:
        try:
            response = await self.http.post(REVOCATION_PATH, data={"token": token})
        except httpx.HTTPError as error:
            raise IssuerRefused(f"revocation: {type(error).__name__}") from error
        if response.status_code != 200:
            raise IssuerRefused(f"revocation answered {response.status_code}")

    async def profile(self, access_token: str) -> StaffProfile:
        try:
            response = await self.http.get(
                STAFF_PROFILE_PATH, headers={"Authorization": f"Bearer {access_token}"}
            )
        except httpx.HTTPError as error:
            raise IssuerRefused(f"profile: {type(error).__name__}") from error
        if response.status_code != 200:
            raise IssuerRefused(f"profile answered {response.status_code}")
        try:
            return StaffProfile.model_validate_json(response.content)
        except ValidationError as error:
            raise IssuerRefused("profile: not a staff profile") from error

    async def _token(self, form: dict[str, str]) -> TokenResponse:
        try:
            response = await self.http.post(TOKEN_PATH, data=form)
        except httpx.HTTPError as error:
            raise IssuerRefused(f"token: {type(error).__name__}") from error
        if response.status_code != 200:
            raise IssuerRefused(f"token answered {response.status_code}")
        try:
            return TokenResponse.model_validate_json(response.content)
        except ValidationError as error:
            raise IssuerRefused("token: not a token response") from error
