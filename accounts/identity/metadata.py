"""RFC 8414 authorization server metadata: what a client needs to find the issuer's
endpoints and what they support, without configuration of its own."""

from fastapi import APIRouter, Request

from accounts.identity.authorize import CODE_CHALLENGE_METHOD
from accounts.identity.resources import Resources
from accounts.identity.rules import GrantType
from contracts.auth import METADATA_PATH, AuthorizationServerMetadata, Scope

router = APIRouter()


@router.get(
    METADATA_PATH,
    tags=["identity"],
    summary="The issuer's endpoints and capabilities (RFC 8414)",
    response_model=AuthorizationServerMetadata,
    response_model_exclude_none=True,
)
async def get_authorization_server_metadata(
    request: Request, resources: Resources
) -> AuthorizationServerMetadata:
    # Absolute URLs as this request reached us: behind a trusted proxy uvicorn's
    # forwarded headers make them the public ones.
    return AuthorizationServerMetadata(
        issuer=resources.issuer.issuer,
        authorization_endpoint=str(request.url_for("authorize")),
        token_endpoint=str(request.url_for("issue_token")),
        jwks_uri=str(request.url_for("get_jwks")),
        revocation_endpoint=str(request.url_for("revoke_refresh_token")),
        # The code flow only (no implicit grant: RFC 9700 2.1.2), always with PKCE S256.
        response_types_supported=["code"],
        code_challenge_methods_supported=[CODE_CHALLENGE_METHOD],
        grant_types_supported=[
            grant.value for grant in GrantType if resources.issuer.serves(grant)
        ],
        token_endpoint_auth_methods_supported=["client_secret_basic", "client_secret_post"],
        # Possession of the refresh token is the proof (accounts.identity.revocation).
        revocation_endpoint_auth_methods_supported=["none"],
        scopes_supported=sorted(scope.value for scope in Scope),
    )
