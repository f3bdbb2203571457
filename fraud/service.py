"""Use cases of the fraud service."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.audit import AuditEventCreate
from contracts.common import Page
from contracts.fraud import (
    AccountFeatures,
    DecisionPair,
    DenyListEntry,
    DenyListEntryCreate,
    FraudDecision,
    FraudRuleCode,
    OutcomeReport,
    ReviewItem,
    RuleDescription,
    RulesetDescription,
    RuleStats,
    RuleStatsReport,
    Score,
    ScoreReason,
    ScoreRequest,
    ShadowComparison,
    ShadowScore,
)
from fraud import repository, scoring
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
from fraud.metrics import FRAUD_DECISIONS, FRAUD_RULE_HITS
from fraud.models import DeniedAccountRow, OutcomeRow, ScoreRow, ShadowScoreRow
from fraud.ruleset import Ruleset
from kit.audit import Actor, change_event
from kit.pagination import keyset_page

log = structlog.get_logger()

# Statistics and comparisons read at most this far back in one request.
PERIOD_MAX = timedelta(days=366)
PERIOD_DEFAULT = timedelta(days=30)
# A transfer is scored by one live ruleset and, at most, a few shadow ones over time.
SHADOW_SCORES_LIMIT = 20


# -- scoring -----------------------------------------------------------------------------


def _to_contract(row: ScoreRow) -> Score:
    return Score(
        transfer_id=row.transfer_id,
        score=row.score,
        decision=FraudDecision(row.decision),
        reasons=[ScoreReason.model_validate(reason) for reason in row.reasons],
        ruleset_version=row.ruleset_version,
        created_at=row.created_at,
    )


def _mismatched_fields(
    row: ScoreRow | OutcomeRow, request: ScoreRequest | OutcomeReport
) -> list[str]:
    stored = {
        "source_account_id": row.source_account_id,
        "target_account_id": row.target_account_id,
        "amount_minor": row.amount_minor,
        "currency": row.currency,
    }
    return [name for name, value in stored.items() if getattr(request, name) != value]


def _replay(row: ScoreRow, request: ScoreRequest) -> Score:
    mismatched = _mismatched_fields(row, request)
    if mismatched:
        raise ScoreRequestMismatch(
            f"transfer {request.transfer_id} was scored with other "
            f"{', '.join(mismatched)}; a transfer's details cannot change",
            fields=mismatched,
        )
    return _to_contract(row)


def _age_seconds(first_seen_at: datetime | None, now: datetime) -> int | None:
    if first_seen_at is None:
        return None
    # An outcome stamped a moment ahead of this clock is an account seen just now.
    return max(0, int((now - first_seen_at).total_seconds()))


def _typical(snapshot: repository.FeatureSnapshot, currency: str) -> scoring.TypicalAmount | None:
    if snapshot.amount_currency != currency or snapshot.amount_sample_size == 0:
        return None
    assert snapshot.amount_median_minor is not None, "a history has a median"
    assert snapshot.amount_spread_minor is not None, "a history has a spread"
    return scoring.TypicalAmount(
        median_minor=snapshot.amount_median_minor,
        spread_minor=snapshot.amount_spread_minor,
        sample_size=snapshot.amount_sample_size,
    )


def _features(
    snapshot: repository.FeatureSnapshot, *, currency: str, now: datetime
) -> scoring.Features:
    return scoring.Features(
        transfers_last_hour=snapshot.transfers_last_hour,
        amount_last_hour_minor=snapshot.amount_last_hour_minor,
        transfers_last_day=snapshot.transfers_last_day,
        amount_last_day_minor=snapshot.amount_last_day_minor,
        round_transfers_last_hour=snapshot.round_transfers_last_hour,
        declines_last_day=snapshot.declines_last_day,
        counterparty_known=bool(snapshot.counterparty_known),
        source_age_seconds=_age_seconds(snapshot.first_seen_at, now),
        typical=_typical(snapshot, currency),
        source_denied=snapshot.source_denied,
        target_denied=snapshot.target_denied,
    )


async def _read_features(
    session: AsyncSession, *, request: ScoreRequest, ruleset: Ruleset, now: datetime
) -> scoring.Features:
    snapshot = await repository.read_features(
        session,
        source_account_id=request.source_account_id,
        target_account_id=request.target_account_id,
        currency=request.currency,
        round_multiple_minor=scoring.round_multiple_minor(ruleset, request.currency),
        now=now,
    )
    return _features(snapshot, currency=request.currency, now=now)


# Scores are not audited here: the saga's trail (the transactions service's
# `transfer.step.score` event) records each verdict, and the scores table keeps every score
# and its reasons, immutable. An event per score in this service would put every score
# behind the audit chain's lock, in a transaction: measured with benchmarks/fraud_scoring.py
# at 100 scores/s (2 busy cores), p99 went from 45 ms to 1.6 s and the service fell behind
# the rate (88/s), at 5.9 instead of 3.6 ms of CPU per score.
def _count_decision(evaluation: scoring.Evaluation) -> None:
    """Count a score just committed by its own insert (autocommit), never a replay's."""
    FRAUD_DECISIONS.labels(outcome=evaluation.decision.value).inc()
    for reason in evaluation.reasons:
        FRAUD_RULE_HITS.labels(rule=reason.code).inc()


async def score_transfer(
    session: AsyncSession,
    *,
    request: ScoreRequest,
    ruleset: Ruleset,
    shadow_ruleset: Ruleset | None,
    now: datetime,
) -> tuple[Score, bool]:
    """Score a transfer once; True when this call scored it.

    Scoring it again returns the stored score unchanged, whatever the ruleset or the
    account's history says now: the saga must see the verdict it acted on. A shadow
    ruleset, if configured, is evaluated on the same features and recorded after the live
    score; it never changes it. `session` autocommits (fraud.db): the score is committed
    by its own insert, before the shadow is even evaluated.
    """
    assert now.tzinfo is not None, "the clock must be timezone-aware"
    # No lookup first: a new transfer, the common case, costs one read and one insert. A
    # retry (or the loser of two racing first requests) computes features it then drops:
    # its insert does nothing, and it answers with the stored row.
    features = await _read_features(session, request=request, ruleset=ruleset, now=now)
    evaluation = scoring.evaluate(ruleset, request, features)
    created = await repository.insert_score(
        session,
        request=request,
        evaluation=evaluation,
        ruleset_version=ruleset.version,
        created_at=now,
    )
    if not created:
        row = await repository.get_score(session, request.transfer_id)
        assert row is not None, "the score existed when the insert did nothing"
        return _replay(row, request), False
    _count_decision(evaluation)
    # Every score is in the scores table; the log carries those that stop money, as events
    # to alert on. Approvals, nearly all traffic, stay out: rendering and writing a line
    # is a noticeable share of a score's CPU.
    if evaluation.decision is not FraudDecision.approve:
        log.info(
            "score.created",
            transfer_id=str(request.transfer_id),
            score=evaluation.score,
            decision=evaluation.decision.value,
            reason_codes=[reason.code for reason in evaluation.reasons],
            ruleset_version=ruleset.version,
        )
    if shadow_ruleset is not None:
        await _score_in_shadow(
            session,
            request=request,
            live=evaluation,
            live_ruleset=ruleset,
            live_features=features,
            shadow_ruleset=shadow_ruleset,
            now=now,
        )
    return (
        Score(
            transfer_id=request.transfer_id,
            score=evaluation.score,
            decision=evaluation.decision,
            reasons=evaluation.reasons,
            ruleset_version=ruleset.version,
            # As the database hands it back on a replay, whatever zone the clock speaks.
            created_at=now.astimezone(UTC),
        ),
        True,
    )


async def _score_in_shadow(
    session: AsyncSession,
    *,
    request: ScoreRequest,
    live: scoring.Evaluation,
    live_ruleset: Ruleset,
    live_features: scoring.Features,
    shadow_ruleset: Ruleset,
    now: datetime,
) -> None:
    """Evaluate and record the shadow ruleset's verdict; any failure is logged, not raised.

    The live score is already committed (autocommit), so nothing here can undo it.
    """
    try:
        features = live_features
        # Only the round-amount count depends on the ruleset (its multiple).
        if scoring.round_multiple_minor(
            shadow_ruleset, request.currency
        ) != scoring.round_multiple_minor(live_ruleset, request.currency):
            features = await _read_features(
                session, request=request, ruleset=shadow_ruleset, now=now
            )
        shadow = scoring.evaluate(shadow_ruleset, request, features)
        await repository.insert_shadow_score(
            session,
            transfer_id=request.transfer_id,
            evaluation=shadow,
            ruleset_version=shadow_ruleset.version,
            live_ruleset_version=live_ruleset.version,
            live_decision=live.decision,
            created_at=now,
        )
    except Exception:  # whatever failed, the shadow must never cost the live decision
        log.exception(
            "score.shadow_failed",
            transfer_id=str(request.transfer_id),
            shadow_ruleset_version=shadow_ruleset.version,
        )
        return
    log.info(
        "score.shadow_evaluated",
        transfer_id=str(request.transfer_id),
        live_ruleset_version=live_ruleset.version,
        live_decision=live.decision.value,
        live_score=live.score,
        shadow_ruleset_version=shadow_ruleset.version,
        shadow_decision=shadow.decision.value,
        shadow_score=shadow.score,
        shadow_reason_codes=[reason.code for reason in shadow.reasons],
        agrees=shadow.decision == live.decision,
    )


async def get_score(session: AsyncSession, *, transfer_id: uuid.UUID) -> Score:
    row = await repository.get_score(session, transfer_id)
    if row is None:
        raise ScoreNotFound(f"no score for transfer {transfer_id}")
    return _to_contract(row)


def _shadow_contract(row: ShadowScoreRow) -> ShadowScore:
    return ShadowScore(
        transfer_id=row.transfer_id,
        ruleset_version=row.ruleset_version,
        score=row.score,
        decision=FraudDecision(row.decision),
        reasons=[ScoreReason.model_validate(reason) for reason in row.reasons],
        live_ruleset_version=row.live_ruleset_version,
        live_decision=FraudDecision(row.live_decision),
        created_at=row.created_at,
    )


async def list_shadow_scores(session: AsyncSession, *, transfer_id: uuid.UUID) -> list[ShadowScore]:
    """The shadow verdicts on a scored transfer (404 if it was never scored)."""
    await get_score(session, transfer_id=transfer_id)
    rows = await repository.list_shadow_scores(
        session, transfer_id=transfer_id, limit=SHADOW_SCORES_LIMIT
    )
    return [_shadow_contract(row) for row in rows]


def _period(
    since: datetime | None, until: datetime | None, now: datetime
) -> tuple[datetime, datetime]:
    until = until or now
    since = since or until - PERIOD_DEFAULT
    if since.tzinfo is None or until.tzinfo is None:
        raise TimezoneRequired("`since` and `until` need a timezone, e.g. 2026-11-28T09:00:00Z")
    if since > until:
        raise InvalidPeriod("`since` is after `until`")
    if until - since > PERIOD_MAX:
        raise InvalidPeriod(f"a period spans at most {PERIOD_MAX.days} days")
    return since, until


async def compare_shadow(
    session: AsyncSession,
    *,
    ruleset_version: str | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> ShadowComparison:
    """How the shadow verdicts recorded in the period compare with the live decisions."""
    since, until = _period(since, until, now)
    counts = await repository.compare_shadow(
        session, ruleset_version=ruleset_version, since=since, until=until
    )
    pairs = [
        DecisionPair(live=FraudDecision(live), shadow=FraudDecision(shadow), count=count)
        for live, shadow, count in counts
    ]
    return ShadowComparison(
        shadow_ruleset_version=ruleset_version,
        scored_since=since,
        scored_until=until,
        evaluated=sum(pair.count for pair in pairs),
        agreed=sum(pair.count for pair in pairs if pair.live == pair.shadow),
        pairs=pairs,
    )


# -- outcomes and features ---------------------------------------------------------------


def _outcome_contract(row: OutcomeRow) -> OutcomeReport:
    return OutcomeReport(
        transfer_id=row.transfer_id,
        source_account_id=row.source_account_id,
        target_account_id=row.target_account_id,
        amount_minor=row.amount_minor,
        currency=row.currency,
        final_status=row.final_status,
        review_decision=row.review_decision,
        occurred_at=row.occurred_at,
    )


def _outcome_mismatches(row: OutcomeRow, report: OutcomeReport) -> list[str]:
    mismatched = _mismatched_fields(row, report)
    stored = {
        "final_status": row.final_status,
        "review_decision": row.review_decision,
        "occurred_at": row.occurred_at,
    }
    return mismatched + [name for name, value in stored.items() if getattr(report, name) != value]


async def record_outcome(
    session: AsyncSession, *, report: OutcomeReport, now: datetime
) -> tuple[OutcomeReport, bool]:
    """Record how a transfer ended, once; True when this call recorded it.

    The first report updates the accounts' features and takes the transfer off the review
    queue; the same report again changes nothing; another outcome for the same transfer
    is a conflict.
    """
    if report.occurred_at.tzinfo is None:
        raise TimezoneRequired("`occurred_at` needs a timezone, e.g. 2026-11-28T09:00:00Z")
    score = await repository.get_score(session, report.transfer_id)
    if score is not None:
        mismatched = _mismatched_fields(score, report)
        if mismatched:
            raise OutcomeScoreMismatch(
                f"transfer {report.transfer_id} was scored with other {', '.join(mismatched)}",
                fields=mismatched,
            )
    created = await repository.insert_outcome(session, report=report, recorded_at=now)
    if not created:
        stored = await repository.get_outcome(session, report.transfer_id)
        assert stored is not None, "the outcome existed when the insert did nothing"
        mismatched = _outcome_mismatches(stored, report)
        if mismatched:
            raise OutcomeConflict(
                f"transfer {report.transfer_id} already ended with another {', '.join(mismatched)}",
                fields=mismatched,
            )
        return _outcome_contract(stored), False

    await repository.leave_review_queue(session, report.transfer_id)
    for account_id in sorted({report.source_account_id, report.target_account_id}):
        await repository.see_account(
            session, account_id=account_id, seen_at=report.occurred_at, now=now
        )
    if report.final_status == "completed":
        currency, history = await repository.read_amount_history(session, report.source_account_id)
        # A ledger account holds one currency, so this only restarts the history of an
        # account the fraud service had wrongly been told about.
        if currency != report.currency:
            history = []
        history = scoring.remember_amount(history, report.amount_minor)
        typical = scoring.typical_amount(history)
        assert typical is not None, "the history just received an amount"
        await repository.write_amount_history(
            session,
            account_id=report.source_account_id,
            currency=report.currency,
            history=history,
            median_minor=typical.median_minor,
            spread_minor=typical.spread_minor,
            now=now,
        )
    log.info(
        "outcome.recorded",
        transfer_id=str(report.transfer_id),
        final_status=report.final_status,
        review_decision=report.review_decision,
        scored=score is not None,
    )
    return report, True


async def account_features(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    currency: str,
    target_account_id: uuid.UUID | None,
    ruleset: Ruleset,
    now: datetime,
) -> AccountFeatures:
    """The features scoring a transfer from the account, in `currency`, would read now."""
    snapshot = await repository.read_features(
        session,
        source_account_id=account_id,
        target_account_id=target_account_id,
        currency=currency,
        round_multiple_minor=scoring.round_multiple_minor(ruleset, currency),
        now=now,
    )
    typical = _typical(snapshot, currency)
    return AccountFeatures(
        account_id=account_id,
        currency=currency,
        as_of=now,
        first_seen_at=snapshot.first_seen_at,
        age_seconds=_age_seconds(snapshot.first_seen_at, now),
        transfers_last_hour=snapshot.transfers_last_hour,
        amount_last_hour_minor=snapshot.amount_last_hour_minor,
        transfers_last_day=snapshot.transfers_last_day,
        amount_last_day_minor=snapshot.amount_last_day_minor,
        round_transfers_last_hour=snapshot.round_transfers_last_hour,
        declines_last_day=snapshot.declines_last_day,
        completed_transfers=snapshot.completed_transfers,
        typical_amount_minor=None if typical is None else typical.median_minor,
        typical_spread_minor=None if typical is None else typical.spread_minor,
        typical_sample_size=0 if typical is None else typical.sample_size,
        counterparty_known=snapshot.counterparty_known,
        denied=snapshot.source_denied,
    )


# -- review queue and rule statistics ----------------------------------------------------


async def list_reviews(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> Page[ReviewItem]:
    """Transfers scored `review` with no outcome yet, oldest first, with their reasons."""
    page, next_cursor = await keyset_page(
        lambda after, count: repository.list_reviews(session, after=after, limit=count),
        limit=limit,
        cursor=cursor,
        position_of=lambda row: (row.created_at, row.transfer_id),
    )
    items = [
        ReviewItem(
            transfer_id=row.transfer_id,
            source_account_id=row.source_account_id,
            target_account_id=row.target_account_id,
            amount_minor=row.amount_minor,
            currency=row.currency,
            score=row.score,
            reasons=[ScoreReason.model_validate(reason) for reason in row.reasons],
            ruleset_version=row.ruleset_version,
            scored_at=row.created_at,
        )
        for row in page
    ]
    return Page[ReviewItem](items=items, next_cursor=next_cursor)


async def rule_stats(
    session: AsyncSession,
    *,
    ruleset_version: str | None,
    since: datetime | None,
    until: datetime | None,
    now: datetime,
) -> RuleStatsReport:
    """Per rule: how often it fired on transfers scored in the period, and how they ended.

    Every rule of today's code is listed, a silent one with zeros, so a rule that never
    fires shows; codes only older rulesets had are listed after them.
    """
    since, until = _period(since, until, now)
    scored, with_outcome, counts = await repository.rule_stats(
        session, ruleset_version=ruleset_version, since=since, until=until
    )
    by_code = {count.code: count for count in counts}
    codes = [code.value for code in FraudRuleCode]
    codes += sorted(set(by_code) - set(codes))
    rules = []
    for code in codes:
        count = by_code.get(code) or repository.RuleCounts(code, 0, 0, 0, 0, 0, 0, 0)
        rules.append(
            RuleStats(
                code=code,
                fired=count.fired,
                with_outcome=count.with_outcome,
                completed=count.completed,
                declined=count.declined,
                reviewed=count.reviewed,
                review_approved=count.review_approved,
                review_rejected=count.review_rejected,
                precision=(
                    round(count.review_rejected / count.reviewed, 4) if count.reviewed else None
                ),
            )
        )
    return RuleStatsReport(
        ruleset_version=ruleset_version,
        scored_since=since,
        scored_until=until,
        scored=scored,
        with_outcome=with_outcome,
        rules=rules,
    )


# -- deny-list ---------------------------------------------------------------------------


def _deny_list_contract(row: DeniedAccountRow) -> DenyListEntry:
    return DenyListEntry(
        account_id=row.account_id,
        reason=row.reason,
        listed_by=row.listed_by,
        listed_at=row.listed_at,
    )


def _deny_list_summary(row: DeniedAccountRow) -> dict[str, Any]:
    return {
        "reason": row.reason,
        "listed_by": row.listed_by,
        "listed_at": row.listed_at.astimezone(UTC).isoformat(),
    }


def _deny_list_event(
    *,
    action: str,
    account_id: uuid.UUID,
    audit: Actor,
    now: datetime,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEventCreate:
    return change_event(
        audit,
        action=action,
        subject_type="deny_list_entry",
        subject_id=account_id,
        now=now,
        before=before,
        after=after,
        account_ids=[str(account_id)],
    )


async def deny_account(
    session: AsyncSession,
    *,
    account_id: uuid.UUID,
    entry: DenyListEntryCreate,
    now: datetime,
    audit: Actor,
) -> tuple[DenyListEntry, bool]:
    """Put the account on the deny-list; True when this call listed it.

    The entry is signed by the caller: `listed_by` must name them. Listing an account
    already listed returns the standing entry unchanged (its reason, author and date stay
    those of whoever listed it first) and records nothing.
    """
    if entry.listed_by != audit.actor_id:
        raise ListedByMismatch(
            f"listed_by is {entry.listed_by!r} but the caller is {audit.actor_id!r}; "
            "an entry is signed by whoever makes it"
        )
    created = await repository.insert_denied(session, account_id=account_id, entry=entry, now=now)
    row = await repository.get_denied(session, account_id)
    assert row is not None, "the entry was just inserted or already existed"
    if created:
        await repository.append_audit(
            session,
            _deny_list_event(
                action="deny_list.entry_added",
                account_id=account_id,
                audit=audit,
                now=now,
                before=None,
                after=_deny_list_summary(row),
            ),
        )
        log.warning(
            "deny_list.account_listed", account_id=str(account_id), listed_by=entry.listed_by
        )
    return _deny_list_contract(row), created


async def allow_account(
    session: AsyncSession, *, account_id: uuid.UUID, now: datetime, audit: Actor
) -> None:
    """Take the account off the deny-list, recording the entry it had."""
    removed = await repository.delete_denied(session, account_id)
    if removed is None:
        raise DenyListEntryNotFound(f"account {account_id} is not on the deny-list")
    await repository.append_audit(
        session,
        _deny_list_event(
            action="deny_list.entry_removed",
            account_id=account_id,
            audit=audit,
            now=now,
            before=_deny_list_summary(removed),
            after=None,
        ),
    )
    log.warning(
        "deny_list.account_removed",
        account_id=str(account_id),
        removed_by=audit.actor_id,
        listed_by=removed.listed_by,
        listed_at=removed.listed_at.isoformat(),
        reason=removed.reason,
    )


async def list_denied(
    session: AsyncSession, *, limit: int, cursor: str | None
) -> Page[DenyListEntry]:
    page, next_cursor = await keyset_page(
        lambda after, count: repository.list_denied(session, after=after, limit=count),
        limit=limit,
        cursor=cursor,
        position_of=lambda row: (row.listed_at, row.account_id),
    )
    return Page[DenyListEntry](
        items=[_deny_list_contract(row) for row in page], next_cursor=next_cursor
    )


# -- the ruleset, described --------------------------------------------------------------


# What each rule looks for, in the order operators read them.
_RULE_DESCRIPTIONS: Final[dict[FraudRuleCode, str]] = {
    FraudRuleCode.deny_list: "The source or the recipient is on the deny-list.",
    FraudRuleCode.very_large_amount: (
        "The amount is at least the very-large threshold of its currency."
    ),
    FraudRuleCode.large_amount: "The amount is at least the large threshold of its currency.",
    FraudRuleCode.velocity: (
        "The source account already had at least `hour_transfers_min` transfers "
        "in the last hour, or `day_transfers_min` in the last day."
    ),
    FraudRuleCode.amount_above_typical: (
        "The amount is at least `median_multiple` times the source's typical "
        "(median) completed amount and more than `spread_multiple` spreads above "
        "it, once the source has `history_min` completed transfers."
    ),
    FraudRuleCode.first_counterparty_large: (
        "The source has no completed transfer to this target yet, and the amount "
        "is at least the threshold of its currency."
    ),
    FraudRuleCode.brand_new_account: (
        "The source was first seen less than `age_seconds_max` ago (or never), "
        "and the amount is at least the threshold of its currency."
    ),
    FraudRuleCode.recent_declines: (
        "The source had at least `declines_min` declined transfers in the last day."
    ),
    FraudRuleCode.round_amount: (
        "The amount is a whole multiple of `multiple_major` major units, after "
        "`earlier_transfers_min` such round amounts from the source in the last hour."
    ),
}


def describe_ruleset(ruleset: Ruleset) -> RulesetDescription:
    """A ruleset as operators read it: thresholds, and each rule's parameters."""
    settings = _rule_settings(ruleset)
    return RulesetDescription(
        version=ruleset.version,
        review_at=ruleset.review_at,
        decline_at=ruleset.decline_at,
        rules=[
            RuleDescription(
                code=code,
                description=description,
                points=settings[code][0],
                parameters=settings[code][1],
            )
            for code, description in _RULE_DESCRIPTIONS.items()
        ],
    )


def _rule_settings(ruleset: Ruleset) -> dict[FraudRuleCode, tuple[int, dict[str, Any]]]:
    """Each rule's points and parameters, as the ruleset file sets them."""
    rules = ruleset.rules
    return {
        FraudRuleCode.deny_list: (rules.deny_list.points, {}),
        FraudRuleCode.very_large_amount: (
            rules.very_large_amount.points,
            {"threshold_minor": dict(rules.very_large_amount.threshold_minor)},
        ),
        FraudRuleCode.large_amount: (
            rules.large_amount.points,
            {"threshold_minor": dict(rules.large_amount.threshold_minor)},
        ),
        FraudRuleCode.velocity: (
            rules.velocity.points,
            {
                "hour_transfers_min": rules.velocity.hour_transfers_min,
                "day_transfers_min": rules.velocity.day_transfers_min,
            },
        ),
        FraudRuleCode.amount_above_typical: (
            rules.amount_above_typical.points,
            {
                "history_min": rules.amount_above_typical.history_min,
                "median_multiple": rules.amount_above_typical.median_multiple,
                "spread_multiple": rules.amount_above_typical.spread_multiple,
            },
        ),
        FraudRuleCode.first_counterparty_large: (
            rules.first_counterparty_large.points,
            {"threshold_minor": dict(rules.first_counterparty_large.threshold_minor)},
        ),
        FraudRuleCode.brand_new_account: (
            rules.brand_new_account.points,
            {
                "age_seconds_max": rules.brand_new_account.age_seconds_max,
                "threshold_minor": dict(rules.brand_new_account.threshold_minor),
            },
        ),
        FraudRuleCode.recent_declines: (
            rules.recent_declines.points,
            {"declines_min": rules.recent_declines.declines_min},
        ),
        FraudRuleCode.round_amount: (
            rules.round_amount.points,
            {
                "multiple_major": rules.round_amount.multiple_major,
                "earlier_transfers_min": rules.round_amount.earlier_transfers_min,
            },
        ),
    }
