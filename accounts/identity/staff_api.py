"""The admin endpoint for staff (scope `staff:manage`): add, disable, list. What
`sagabank staff` calls; the actor is the token's subject. And a member's own profile,
read with their own token."""

from typing import Annotated

from fastapi import APIRouter, Depends, status

from accounts.identity import staff
from accounts.identity.errors import (
    NotStaffToken,
    PasswordHashingBusy,
    StaffExists,
    StaffNotFound,
    StaffSecretsNotConfigured,
)
from accounts.identity.resources import Resources
from contracts.auth import PrincipalKind, Scope
from contracts.staff import (
    STAFF_DISABLE_PATH,
    STAFF_PATH,
    STAFF_PROFILE_PATH,
    StaffCreate,
    StaffDisable,
    StaffEnrolmentOut,
    StaffList,
    StaffMemberOut,
    StaffProfile,
)
from kit.auth import Principal, authenticate, require_scopes
from kit.db import ServiceDatabase
from kit.errors import InvalidRequest
from kit.params import Now
from kit.problems import problem_responses

router = APIRouter(tags=["staff"])

StaffManager = Annotated[Principal, Depends(require_scopes(Scope.staff_manage))]
AnyCaller = Annotated[Principal, Depends(authenticate)]


def _out(member: staff.StaffMember) -> StaffMemberOut:
    return StaffMemberOut(
        id=member.id,
        email=member.email,
        display_name=member.display_name,
        role=member.role,
        created_at=member.created_at,
        disabled_at=member.disabled_at,
    )


@router.post(
    STAFF_PATH,
    status_code=status.HTTP_201_CREATED,
    summary="Add a staff member; answers the otpauth:// URI of their TOTP secret, once",
    responses=problem_responses(
        InvalidRequest, StaffExists, StaffSecretsNotConfigured, PasswordHashingBusy
    ),
)
async def add_staff(
    body: StaffCreate,
    principal: StaffManager,
    resources: Resources,
    database: ServiceDatabase,
    now: Now,
) -> StaffEnrolmentOut:
    if resources.staff_key_ring is None:
        raise StaffSecretsNotConfigured("set ACCOUNTS_SECRETS_KEYS to enrol staff")
    enrolment = await staff.add_staff(
        database.sessions,
        resources.issuer,
        resources.staff_key_ring,
        email=body.email,
        role=body.role,
        display_name=body.display_name,
        password=body.password.get_secret_value(),
        actor_id=principal.subject,
        now=now,
    )
    return StaffEnrolmentOut(staff=_out(enrolment.member), otpauth_uri=enrolment.otpauth_uri)


@router.post(
    STAFF_DISABLE_PATH,
    summary="Disable a staff member: they can no longer sign in (disabling again is a no-op)",
    responses=problem_responses(InvalidRequest, StaffNotFound),
)
async def disable_staff(
    body: StaffDisable, principal: StaffManager, database: ServiceDatabase, now: Now
) -> StaffMemberOut:
    member = await staff.disable_staff(
        database.sessions, email=body.email, actor_id=principal.subject, now=now
    )
    if member is None:
        raise StaffNotFound("no staff member has this email")
    return _out(member)


@router.get(STAFF_PATH, summary="Every staff member, disabled ones too, by email")
async def list_staff(principal: StaffManager, database: ServiceDatabase) -> StaffList:
    return StaffList(staff=[_out(member) for member in await staff.list_staff(database.sessions)])


@router.get(
    STAFF_PROFILE_PATH,
    summary="The signed-in staff member's own profile (a staff token only)",
    responses=problem_responses(NotStaffToken),
)
async def get_staff_profile(principal: AnyCaller, database: ServiceDatabase) -> StaffProfile:
    staff_id = staff.staff_id_of(principal.subject)
    if principal.kind is not PrincipalKind.operator or staff_id is None:
        raise NotStaffToken("this is a staff member's own profile: sign in as one")
    member = await staff.get_member(database.sessions, staff_id)
    if member is None or member.disabled_at is not None:
        raise NotStaffToken("this staff member is disabled")
    return StaffProfile(
        id=member.id,
        email=member.email,
        display_name=member.display_name,
        role=member.role,
        scopes=sorted(scope.value for scope in member.scopes),
    )
