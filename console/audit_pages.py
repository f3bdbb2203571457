"""The audit pages: every service's trail merged into one timeline, with filters, and each
service's chain verification."""

import asyncio
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from console.bank_api import SERVICE_NAMES, ApiError
from console.pages import Section, audit_events, missing_scope
from console.resources import Resources
from console.search import audit_filters
from console.web import SignedIn, render
from contracts.audit import AUDIT_VERIFY_PATH, AuditEvent, AuditVerification
from contracts.auth import Scope

router = APIRouter(tags=["audit"])

# Each service's first events matching the filters: the page says so, and narrower
# filters (a transfer, an account, a day) find the rest.
AUDIT_EVENTS_PER_SERVICE: Final = 100


@router.get("/audit", summary="The merged audit timeline, filtered")
async def audit(request: Request, session: SignedIn, resources: Resources) -> HTMLResponse:
    filters = audit_filters(request.query_params)
    timeline: Section[tuple[list[AuditEvent], list[str]]] = missing_scope(Scope.audit_read)
    if session.may(Scope.audit_read) and not filters.errors:
        found = await audit_events(
            resources, session, filters.params, limit=AUDIT_EVENTS_PER_SERVICE
        )
        timeline = Section(value=found)
    context = {
        "filters": filters,
        "timeline": timeline,
        "per_service": AUDIT_EVENTS_PER_SERVICE,
    }
    return render(request, resources, "audit.html", context, session=session)


@router.get("/audit/verification", summary="Each service's audit chain, verified now")
async def verification(request: Request, session: SignedIn, resources: Resources) -> HTMLResponse:
    results: dict[str, Section[AuditVerification]] = {}
    if session.may(Scope.audit_read):
        answers = await asyncio.gather(
            *(
                resources.bank.get(service, AUDIT_VERIFY_PATH, token=session.access_token)
                for service in SERVICE_NAMES
            ),
            return_exceptions=True,
        )
        for service, answer in zip(SERVICE_NAMES, answers, strict=True):
            if isinstance(answer, ApiError):
                results[service] = Section(problem=f"{answer.status} {answer.title}")
            elif isinstance(answer, BaseException):
                raise answer
            else:
                results[service] = Section(value=AuditVerification.model_validate(answer))
    context = {"results": results, "allowed": session.may(Scope.audit_read)}
    return render(request, resources, "verification.html", context, session=session)
