"""Staff wire contracts: the admin endpoint `sagabank staff` calls (scope `staff:manage`)."""

from datetime import datetime
from typing import Final
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from contracts.auth import StaffRole
from contracts.examples import EXAMPLE_STAFF_ID, EXAMPLE_TIME, example_of

STAFF_PATH: Final = "/v1/admin/staff"
STAFF_DISABLE_PATH: Final = "/v1/admin/staff/disable"
# Plausible, no more: an address is proven by its owner signing in, not by a pattern.
EMAIL_PATTERN: Final = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
# A staff member's password: long enough to be a passphrase, short enough for argon2.
STAFF_PASSWORD_LENGTH_MIN: Final = 12
STAFF_PASSWORD_LENGTH_MAX: Final = 256


class StaffCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "grace@bank.example",
                    "role": "reviewer",
                    "display_name": "Grace Hopper",
                    "password": "a long passphrase of five words",
                }
            ]
        },
    )

    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)
    role: StaffRole
    display_name: str | None = Field(default=None, min_length=1, max_length=100)
    password: SecretStr = Field(
        min_length=STAFF_PASSWORD_LENGTH_MIN, max_length=STAFF_PASSWORD_LENGTH_MAX
    )


class StaffDisable(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"email": "grace@bank.example"}]}
    )

    email: str = Field(min_length=3, max_length=254, pattern=EMAIL_PATTERN)


class StaffMemberOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_STAFF_ID,
                    "email": "grace@bank.example",
                    "display_name": "Grace Hopper",
                    "role": "reviewer",
                    "created_at": EXAMPLE_TIME,
                    "disabled_at": None,
                }
            ]
        }
    )

    id: UUID
    email: str
    display_name: str | None
    role: StaffRole
    created_at: datetime
    disabled_at: datetime | None


class StaffEnrolmentOut(BaseModel):
    """A new member and the otpauth:// URI their authenticator app takes: shown this once."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "staff": example_of(StaffMemberOut),
                    "otpauth_uri": "otpauth://totp/Sagabank:grace%40bank.example?secret=JBSWY3DPEHPK3PXP&issuer=Sagabank",
                }
            ]
        }
    )

    staff: StaffMemberOut
    otpauth_uri: str


class StaffList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"staff": [example_of(StaffMemberOut)]}]}
    )

    staff: list[StaffMemberOut]


# The signed-in staff member's own profile (an access token whose subject is staff): what
# the operator console shows as "signed in as", read with the member's own token.
STAFF_PROFILE_PATH: Final = "/v1/staff/me"
# A staff member's token names them `staff:<id>`: the actor the audit trails record and the
# reviewer id a verdict carries, so every decision names the person who made it.
STAFF_SUBJECT_PREFIX: Final = "staff:"


class StaffProfile(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": EXAMPLE_STAFF_ID,
                    "email": "grace@bank.example",
                    "display_name": "Grace Hopper",
                    "role": "reviewer",
                    "scopes": ["reviews:write", "transfers:read"],
                }
            ]
        }
    )

    id: UUID
    email: str
    display_name: str | None
    role: StaffRole
    # The scopes the role holds today (a token may carry fewer, never more).
    scopes: list[str]
