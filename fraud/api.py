"""HTTP routes of the fraud service.

Three routers, by caller: `internal_router` for the saga's worker (scores, outcomes),
`operator_router` for reviewers, `admin_router` for operators tuning and auditing the
rules. Every route names the scopes it needs with a typed dependency; no customer scope
opens any of them (customers reach fraud only through their transfers' saga).

- fraud:score (the worker): score a transfer, report its outcome, read its score;
- reviews:write (reviewers): the review queue; reviewers may also read a score and the
  live ruleset, which explain why a transfer waits for them;
- accounts:admin (operators): rule statistics, features, shadow comparisons, the live
  ruleset, and changing the deny-list;
- accounts:admin or audit:read: reading the deny-list, which auditors check as part of
  the trail of deny-list changes (the audit events themselves need audit:read).
"""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Response, status

from contracts.auth import Scope
from contracts.common import LIMIT_DEFAULT, Page
from contracts.fraud import (
    ACCOUNT_FEATURES_PATH,
    DENY_LIST_PATH,
    OUTCOMES_PATH,
    REVIEWS_PATH,
    RULE_STATS_PATH,
    RULESET_CURRENT_PATH,
    SCORES_PATH,
    SHADOW_COMPARISON_PATH,
    SHADOW_SCORES_PATH,
    AccountFeatures,
    DenyListEntry,
    DenyListEntryCreate,
    OutcomeReport,
    ReviewItem,
    RulesetDescription,
    RuleStatsReport,
    Score,
    ScoreRequest,
    ShadowComparison,
    ShadowScore,
)
from contracts.money import CurrencyCode
from fraud import service
from fraud.db import AutocommitSession, Session
from fraud.errors import (
    DenyListEntryNotFound,
    InvalidPeriod,
    ListedByMismatch,
    OutcomeConflict,
    OutcomeScoreMismatch,
    ScoreNotFound,
    ScoreRequestMismatch,
    TimezoneRequired,
)
from fraud.resources import Resources
from kit.auth import Principal, require_any_scope, require_scopes
from kit.errors import Forbidden, Unauthorized
from kit.pagination import InvalidCursor
from kit.params import AuditActor, Cursor, Limit, Now
from kit.problems import problem_responses

# Every route answers these two before anything else.
_AUTH_PROBLEMS = problem_responses(Unauthorized, Forbidden)
internal_router = APIRouter(responses=_AUTH_PROBLEMS)
operator_router = APIRouter(responses=_AUTH_PROBLEMS)
admin_router = APIRouter(tags=["admin"], responses=_AUTH_PROBLEMS)


FraudScore = Annotated[Principal, Depends(require_scopes(Scope.fraud_score))]
ScoreRead = Annotated[Principal, Depends(require_any_scope(Scope.fraud_score, Scope.reviews_write))]
ReviewsWrite = Annotated[Principal, Depends(require_scopes(Scope.reviews_write))]
RulesetRead = Annotated[
    Principal, Depends(require_any_scope(Scope.reviews_write, Scope.accounts_admin))
]
AccountsAdmin = Annotated[Principal, Depends(require_scopes(Scope.accounts_admin))]
DenyListRead = Annotated[
    Principal, Depends(require_any_scope(Scope.accounts_admin, Scope.audit_read))
]
RulesetVersion = Annotated[
    str | None, Query(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
]
PeriodStart = Annotated[
    datetime | None, Query(description="Scored at or after (default: 30 days before `until`)")
]
PeriodEnd = Annotated[datetime | None, Query(description="Scored at or before (default: now)")]


# -- the saga's worker -------------------------------------------------------------------


@internal_router.post(
    SCORES_PATH,
    tags=["scores"],
    status_code=status.HTTP_201_CREATED,
    summary="Score a transfer (idempotent on its transfer id)",
    responses={
        200: {"model": Score, "description": "Scored earlier; the stored score, unchanged"},
        **problem_responses(ScoreRequestMismatch),
    },
)
async def score_transfer(
    _principal: FraudScore,
    body: ScoreRequest,
    session: AutocommitSession,
    resources: Resources,
    now: Now,
    response: Response,
) -> Score:
    score, created = await service.score_transfer(
        session,
        request=body,
        ruleset=resources.ruleset,
        shadow_ruleset=resources.shadow_ruleset,
        now=now,
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return score


@internal_router.get(
    f"{SCORES_PATH}/{{transfer_id}}",
    tags=["scores"],
    summary="Get the score of one transfer",
    responses=problem_responses(ScoreNotFound),
)
async def get_score(_principal: ScoreRead, transfer_id: uuid.UUID, session: Session) -> Score:
    return await service.get_score(session, transfer_id=transfer_id)


@internal_router.post(
    OUTCOMES_PATH,
    tags=["outcomes"],
    status_code=status.HTTP_201_CREATED,
    summary="Record how a transfer ended (idempotent on its transfer id)",
    description=(
        "Feeds the source account's features and the rule statistics, and takes the "
        "transfer off the review queue. The same report again answers 200 and changes "
        "nothing; another outcome for the same transfer is a conflict."
    ),
    responses={
        200: {"model": OutcomeReport, "description": "Recorded earlier; nothing changed"},
        **problem_responses(OutcomeConflict, OutcomeScoreMismatch, TimezoneRequired),
    },
)
async def record_outcome(
    _principal: FraudScore, body: OutcomeReport, session: Session, now: Now, response: Response
) -> OutcomeReport:
    outcome, created = await service.record_outcome(session, report=body, now=now)
    if not created:
        response.status_code = status.HTTP_200_OK
    return outcome


# -- reviewers ---------------------------------------------------------------------------


@operator_router.get(
    REVIEWS_PATH,
    tags=["reviews"],
    summary="Transfers waiting for review, oldest first, with the reasons that stopped them",
    responses=problem_responses(InvalidCursor),
)
async def list_reviews(
    _principal: ReviewsWrite, session: Session, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> Page[ReviewItem]:
    return await service.list_reviews(session, limit=limit, cursor=cursor)


@operator_router.get(
    RULESET_CURRENT_PATH,
    tags=["rulesets"],
    summary="The ruleset scoring new transfers: version, thresholds, rules and points",
)
async def get_current_ruleset(_principal: RulesetRead, resources: Resources) -> RulesetDescription:
    return service.describe_ruleset(resources.ruleset)


# -- operators: rules, features, deny-list, shadow ---------------------------------------


@admin_router.get(
    RULE_STATS_PATH,
    summary="Per rule: how often it fired and how those transfers ended (precision)",
    responses=problem_responses(InvalidPeriod, TimezoneRequired),
)
async def get_rule_stats(
    _principal: AccountsAdmin,
    session: Session,
    now: Now,
    ruleset_version: RulesetVersion = None,
    since: PeriodStart = None,
    until: PeriodEnd = None,
) -> RuleStatsReport:
    return await service.rule_stats(
        session, ruleset_version=ruleset_version, since=since, until=until, now=now
    )


@admin_router.get(
    ACCOUNT_FEATURES_PATH,
    summary="The features scoring a transfer from this account would read right now",
)
async def get_account_features(
    _principal: AccountsAdmin,
    account_id: uuid.UUID,
    currency: Annotated[CurrencyCode, Query()],
    session: Session,
    resources: Resources,
    now: Now,
    target_account_id: uuid.UUID | None = None,
) -> AccountFeatures:
    return await service.account_features(
        session,
        account_id=account_id,
        currency=currency,
        target_account_id=target_account_id,
        ruleset=resources.ruleset,
        now=now,
    )


@admin_router.get(
    DENY_LIST_PATH,
    summary="Accounts on the deny-list, in the order they were listed",
    responses=problem_responses(InvalidCursor),
)
async def list_deny_list(
    _principal: DenyListRead, session: Session, limit: Limit = LIMIT_DEFAULT, cursor: Cursor = None
) -> Page[DenyListEntry]:
    return await service.list_denied(session, limit=limit, cursor=cursor)


@admin_router.put(
    f"{DENY_LIST_PATH}/{{account_id}}",
    status_code=status.HTTP_201_CREATED,
    summary="Put an account on the deny-list (idempotent; effective for the next score)",
    description=(
        "`listed_by` must be the caller's own id (the token's subject): an entry is signed "
        "by whoever makes it. Audited as `deny_list.entry_added` when it lists the account."
    ),
    responses={
        200: {"model": DenyListEntry, "description": "Already listed; the entry"},
        **problem_responses(ListedByMismatch),
    },
)
async def deny_account(
    _principal: AccountsAdmin,
    actor: AuditActor,
    account_id: uuid.UUID,
    body: DenyListEntryCreate,
    session: Session,
    now: Now,
    response: Response,
) -> DenyListEntry:
    entry, created = await service.deny_account(
        session, account_id=account_id, entry=body, now=now, audit=actor
    )
    if not created:
        response.status_code = status.HTTP_200_OK
    return entry


@admin_router.delete(
    f"{DENY_LIST_PATH}/{{account_id}}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Take an account off the deny-list",
    description="Audited as `deny_list.entry_removed`, with the entry as it was.",
    responses=problem_responses(DenyListEntryNotFound),
)
async def allow_account(
    _principal: AccountsAdmin, actor: AuditActor, account_id: uuid.UUID, session: Session, now: Now
) -> None:
    await service.allow_account(session, account_id=account_id, now=now, audit=actor)


@admin_router.get(
    SHADOW_COMPARISON_PATH,
    summary="Live and shadow decisions side by side: how often the shadow ruleset agrees",
    responses=problem_responses(InvalidPeriod, TimezoneRequired),
)
async def compare_shadow_ruleset(
    _principal: AccountsAdmin,
    session: Session,
    now: Now,
    resources: Resources,
    ruleset_version: RulesetVersion = None,
    since: PeriodStart = None,
    until: PeriodEnd = None,
) -> ShadowComparison:
    # Without a version, the shadow ruleset running now (or every one, if none runs).
    shadow = resources.shadow_ruleset
    version = ruleset_version or (None if shadow is None else shadow.version)
    return await service.compare_shadow(
        session, ruleset_version=version, since=since, until=until, now=now
    )


@admin_router.get(
    SHADOW_SCORES_PATH,
    summary="The shadow rulesets' verdicts on one transfer, beside its live decision",
    responses=problem_responses(ScoreNotFound),
)
async def list_shadow_scores(
    _principal: AccountsAdmin, transfer_id: uuid.UUID, session: Session
) -> list[ShadowScore]:
    return await service.list_shadow_scores(session, transfer_id=transfer_id)
