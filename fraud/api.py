"""HTTP routes of the fraud service."""

import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response, status

from contracts.fraud import (
    RULESET_CURRENT_PATH,
    SCORES_PATH,
    RulesetDescription,
    Score,
    ScoreRequest,
)
from fraud import service
from fraud.errors import ScoreNotFound, ScoreRequestMismatch
from fraud.ruleset import Ruleset
from kit.db import Session
from kit.problems import problem_responses

router = APIRouter()


def _ruleset(request: Request) -> Ruleset:
    ruleset = request.app.state.ruleset
    assert isinstance(ruleset, Ruleset), "create_app loads the ruleset"
    return ruleset


def _now(request: Request) -> datetime:
    # app.state.clock, so tests can move time without sleeping.
    clock: service.Clock = request.app.state.clock
    return clock()


CurrentRuleset = Annotated[Ruleset, Depends(_ruleset)]
Now = Annotated[datetime, Depends(_now)]


@router.post(
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
    body: ScoreRequest, session: Session, ruleset: CurrentRuleset, now: Now, response: Response
) -> Score:
    score, created = await service.score_transfer(session, request=body, ruleset=ruleset, now=now)
    if not created:
        response.status_code = status.HTTP_200_OK
    return score


@router.get(
    f"{SCORES_PATH}/{{transfer_id}}",
    tags=["scores"],
    summary="Get the score of one transfer",
    responses=problem_responses(ScoreNotFound),
)
async def get_score(transfer_id: uuid.UUID, session: Session) -> Score:
    return await service.get_score(session, transfer_id=transfer_id)


@router.get(
    RULESET_CURRENT_PATH,
    tags=["rulesets"],
    summary="The ruleset scoring new transfers: version, thresholds, rules and points",
)
async def get_current_ruleset(ruleset: CurrentRuleset) -> RulesetDescription:
    return service.describe_ruleset(ruleset)
