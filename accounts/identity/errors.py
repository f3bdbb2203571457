"""Every error a caller of the token issuer can cause: RFC 6749 section 5.2 codes, as
problem+json with `error`, and registration's conflict."""

from typing import ClassVar

from contracts.accounts import AccountsProblem
from contracts.problem import CommonProblem
from kit.errors import ProblemError, ServiceUnavailable


class OAuthError(ProblemError):
    """An error of the token endpoint; `error` carries the RFC 6749 code."""

    error_code: ClassVar[str] = "invalid_request"

    def __init__(self, detail: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail, headers=headers, error=self.error_code)


class OAuthInvalidRequest(OAuthError):
    """The token (or revocation) request lacks a parameter its grant needs, or sends one twice, too
    long or malformed (`error` is invalid_request): send each once, as RFC 6749 and 7636 say."""

    status = 400
    slug = AccountsProblem.oauth_invalid_request
    title = "Invalid token request"
    error_code = "invalid_request"


class OAuthInvalidClient(OAuthError):
    """Client authentication failed: no client credentials where the grant needs them, malformed
    Basic credentials, or a wrong client id or secret (`error` is invalid_client)."""

    status = 401
    slug = AccountsProblem.oauth_invalid_client
    title = "Client authentication failed"
    error_code = "invalid_client"

    def __init__(self, detail: str) -> None:
        # RFC 6749 5.2: a 401 names the authentication scheme the client may use.
        super().__init__(detail, headers={"WWW-Authenticate": 'Basic realm="sagabank"'})


class OAuthInvalidGrant(OAuthError):
    """The grant does not verify (`error` is invalid_grant): a wrong username or password, or a
    refresh token or authorization code that is unknown, used, expired or revoked; sign in again."""

    status = 400
    slug = AccountsProblem.oauth_invalid_grant
    title = "Invalid grant"
    error_code = "invalid_grant"


class OAuthUnsupportedGrantType(OAuthError):
    """The issuer does not serve this grant type, or it is turned off in this deployment (`error` is
    unsupported_grant_type): use one its metadata lists in `grant_types_supported`."""

    status = 400
    slug = AccountsProblem.oauth_unsupported_grant_type
    title = "Unsupported grant type"
    error_code = "unsupported_grant_type"


class OAuthInvalidScope(OAuthError):
    """The `scope` parameter is empty, names an unknown scope, or asks for a scope the client or
    subject may not have (`error` is invalid_scope): ask for fewer scopes."""

    status = 400
    slug = AccountsProblem.oauth_invalid_scope
    title = "Invalid scope"
    error_code = "invalid_scope"


class CustomerExists(ProblemError):
    """A customer already registered with this email: sign in, or register with another email."""

    status = 409
    slug = AccountsProblem.customer_exists
    title = "A customer with this email exists"


class PasswordHashingBusy(ServiceUnavailable):
    """Every password hashing slot is taken: the caller retries after `Retry-After`."""

    title = "Too many sign-ins at once"


class StaffExists(ProblemError):
    """A staff member (perhaps disabled) already has this email: add the new one under another
    email."""

    status = 409
    slug = AccountsProblem.staff_exists
    title = "A staff member with this email exists"


class StaffNotFound(ProblemError):
    """No staff member has this email: check the email, or add the staff member first."""

    status = 404
    slug = AccountsProblem.staff_not_found
    title = "No staff member has this email"


class NotStaffToken(ProblemError):
    """A valid token, but not a staff member's own (a customer's, a client's)."""

    status = 403
    slug = CommonProblem.forbidden
    title = "Not a staff member's token"


class StaffSecretsNotConfigured(ProblemError):
    """ACCOUNTS_SECRETS_KEYS is unset: no TOTP secret can be sealed or opened."""

    status = 503
    slug = AccountsProblem.staff_secrets_not_configured
    title = "Staff sign-in is not configured"
