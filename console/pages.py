"""The console's pages: transfers (search and one transfer's whole story) and the review
queue. Each page calls the services with the signed-in member's token; a section the
member's scopes do not reach says so instead of calling."""

import asyncio
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import TypeAdapter

from console.bank_api import SERVICE_NAMES, ApiError
from console.resources import ConsoleResources, Resources
from console.search import transfer_filters
from console.sessions import StaffSession
from console.web import CheckedForm, SignedIn, render
from contracts.accounts import ACCOUNTS_PATH, LEDGER_TRANSFERS_PATH, Account, LedgerTransfer
from contracts.audit import AUDIT_EVENTS_PATH, AuditEvent
from contracts.auth import Scope
from contracts.common import Page
from contracts.fraud import REVIEWS_PATH, SCORES_PATH, ReviewItem, Score
from contracts.transfers import TRANSFERS_PATH, Transfer, TransferStatus

router = APIRouter(tags=["pages"])

TRANSFERS_PAGE_SIZE: Final = 25
REVIEWS_PAGE_SIZE: Final = 50
# A transfer's audit events per service: a saga writes a few dozen at most.
TRANSFER_AUDIT_EVENTS_MAX: Final = 200
NOTE_LENGTH_MAX: Final = 140
REVIEW_PATH: Final = "/v1/admin/transfers/{transfer_id}/review"

ValueT = TypeVar("ValueT")


@dataclass(frozen=True)
class Section(Generic[ValueT]):
    """What a page section shows: the value, or why there is none (a refusal, a missing
    scope): a failing service costs its section, never the page."""

    value: ValueT | None = None
    problem: str | None = None
    # The refusal's status (404: no such transfer), when a service refused.
    status: int | None = None


async def section(call: Awaitable[ValueT]) -> Section[ValueT]:
    try:
        return Section(value=await call)
    except ApiError as error:
        return Section(problem=problem_text(error), status=error.status)


def problem_text(error: ApiError) -> str:
    text = f"{error.service} answered {error.status} {error.title}"
    return f"{text}: {error.detail}" if error.detail else text


def missing_scope(scope: Scope) -> Section[Any]:
    return Section(problem=f"Your role does not hold {scope.value}.")


@router.get("/", summary="Home: the transfers")
async def home(_session: SignedIn) -> Response:
    return RedirectResponse("/transfers", status_code=303)


@router.get("/transfers", summary="Search transfers")
async def transfers(request: Request, session: SignedIn, resources: Resources) -> HTMLResponse:
    filters = transfer_filters(request.query_params)
    found: Section[Page[Transfer]] = Section()
    accounts: Section[Page[Account]] = Section()
    if not filters.errors:
        customer_id = filters.params.pop("customer_id", None)
        if customer_id is not None:
            accounts = await section(_customer_accounts(resources, session, customer_id))
            only = _only_account(accounts)
            if only is not None and "account_id" not in filters.params:
                filters.params["account_id"] = only
        if customer_id is None or "account_id" in filters.params:
            found = await section(_transfers(resources, session, filters.params))
    context = {
        "filters": filters,
        "found": found,
        "accounts": accounts,
        "statuses": list(TransferStatus),
    }
    return render(request, resources, "transfers.html", context, session=session)


def _only_account(accounts: Section[Page[Account]]) -> str | None:
    if accounts.value is not None and len(accounts.value.items) == 1:
        return str(accounts.value.items[0].id)
    return None


async def _customer_accounts(
    resources: ConsoleResources, session: StaffSession, customer_id: str
) -> Page[Account]:
    body = await resources.bank.get(
        "accounts",
        ACCOUNTS_PATH,
        token=session.access_token,
        params={"customer_id": customer_id, "limit": "100"},
    )
    return Page[Account].model_validate(body)


async def _transfers(
    resources: ConsoleResources, session: StaffSession, params: dict[str, str]
) -> Page[Transfer]:
    body = await resources.bank.get(
        "transactions",
        TRANSFERS_PATH,
        token=session.access_token,
        params={**params, "limit": str(TRANSFERS_PAGE_SIZE)},
    )
    return Page[Transfer].model_validate(body)


@router.get("/transfers/{transfer_id}", summary="One transfer: steps, fraud, ledger, audit")
async def transfer(
    request: Request, transfer_id: uuid.UUID, session: SignedIn, resources: Resources
) -> HTMLResponse:
    found = await section(_transfer(resources, session, transfer_id))
    if found.value is None:
        context: dict[str, object] = {"problem": found.problem, "transfer_id": transfer_id}
        return render(
            request,
            resources,
            "transfer_missing.html",
            context,
            session=session,
            status_code=found.status or 502,
        )
    shown = found.value
    score, ledger, audit = await asyncio.gather(
        _score_section(resources, session, shown),
        _ledger_section(resources, session, shown),
        _audit_section(resources, session, shown.id),
    )
    context = {
        "transfer": shown,
        "score": score,
        "ledger": ledger,
        "audit": audit,
        "workflow_url": _workflow_url(resources, shown.workflow_id),
        "decided": request.query_params.get("decided")
        if request.query_params.get("decided") in ("approve", "reject")
        else None,
        "reviewable": shown.status is TransferStatus.in_review and session.may(Scope.reviews_write),
    }
    return render(request, resources, "transfer.html", context, session=session)


async def _transfer(
    resources: ConsoleResources, session: StaffSession, transfer_id: uuid.UUID
) -> Transfer:
    body = await resources.bank.get(
        "transactions", f"{TRANSFERS_PATH}/{transfer_id}", token=session.access_token
    )
    return Transfer.model_validate(body)


async def _score_section(
    resources: ConsoleResources, session: StaffSession, transfer: Transfer
) -> Section[Score]:
    # The fraud service's own record (reviewers may read it); the transfer's projection
    # carries the same score and reasons for the others (rendered from `transfer.fraud`).
    if not session.may(Scope.reviews_write):
        return missing_scope(Scope.reviews_write)

    async def score() -> Score:
        body = await resources.bank.get(
            "fraud", f"{SCORES_PATH}/{transfer.id}", token=session.access_token
        )
        return Score.model_validate(body)

    return await section(score())


async def _ledger_section(
    resources: ConsoleResources, session: StaffSession, transfer: Transfer
) -> Section[list[LedgerTransfer]]:
    if not session.may(Scope.accounts_admin):
        return missing_scope(Scope.accounts_admin)

    async def entries() -> list[LedgerTransfer]:
        ids = [ledger_id for ledger_id in (transfer.hold_id, transfer.posting_id) if ledger_id]
        bodies = await asyncio.gather(
            *(
                resources.bank.get(
                    "accounts", f"{LEDGER_TRANSFERS_PATH}/{ledger_id}", token=session.access_token
                )
                for ledger_id in ids
            )
        )
        return [LedgerTransfer.model_validate(body) for body in bodies]

    return await section(entries())


_AUDIT_PAGE = TypeAdapter(Page[AuditEvent])


async def audit_events(
    resources: ConsoleResources, session: StaffSession, params: dict[str, str], *, limit: int
) -> tuple[list[AuditEvent], list[str]]:
    """Every service's events matching `params` (its first `limit`), merged by when they
    occurred; and what each service that did not answer said."""
    calls = [
        resources.bank.get(
            service,
            AUDIT_EVENTS_PATH,
            token=session.access_token,
            params={**params, "limit": str(limit)},
        )
        for service in SERVICE_NAMES
    ]
    answers = await asyncio.gather(*calls, return_exceptions=True)
    events: list[AuditEvent] = []
    problems: list[str] = []
    for answer in answers:
        if isinstance(answer, ApiError):
            problems.append(problem_text(answer))
        elif isinstance(answer, BaseException):
            raise answer
        else:
            events.extend(_AUDIT_PAGE.validate_python(answer).items)
    events.sort(key=lambda event: (event.occurred_at, event.service, event.sequence))
    return events, problems


async def _audit_section(
    resources: ConsoleResources, session: StaffSession, transfer_id: uuid.UUID
) -> Section[tuple[list[AuditEvent], list[str]]]:
    if not session.may(Scope.audit_read):
        return missing_scope(Scope.audit_read)
    found = await audit_events(
        resources,
        session,
        {"transfer_id": str(transfer_id)},
        limit=TRANSFER_AUDIT_EVENTS_MAX,
    )
    return Section(value=found)


def _workflow_url(resources: ConsoleResources, workflow_id: str) -> str:
    namespace = quote(resources.temporal_namespace, safe="")
    return (
        f"{resources.temporal_ui_url.rstrip('/')}/namespaces/{namespace}"
        f"/workflows/{quote(workflow_id, safe='')}"
    )


@router.get("/reviews", summary="The transfers waiting for a reviewer")
async def reviews(request: Request, session: SignedIn, resources: Resources) -> HTMLResponse:
    queue: Section[Page[ReviewItem]] = missing_scope(Scope.reviews_write)
    if session.may(Scope.reviews_write):
        cursor = request.query_params.get("cursor", "")[:200]
        params = {"limit": str(REVIEWS_PAGE_SIZE), **({"cursor": cursor} if cursor else {})}

        async def waiting() -> Page[ReviewItem]:
            body = await resources.bank.get(
                "fraud", REVIEWS_PATH, token=session.access_token, params=params
            )
            return Page[ReviewItem].model_validate(body)

        queue = await section(waiting())
    context = {"queue": queue, "decided": request.query_params.get("decided")}
    return render(request, resources, "reviews.html", context, session=session)


@router.post("/reviews/{transfer_id}", summary="Approve or decline a transfer in review")
async def decide(
    request: Request,
    transfer_id: uuid.UUID,
    session: SignedIn,
    form: CheckedForm,
    resources: Resources,
) -> Response:
    """Forwarded whatever the member's scopes: the API is the judge (it names the reviewer
    from the token), and its refusal is shown."""
    decision = {"approve": "approve", "decline": "reject"}.get(form.get("decision", ""))
    note = form.get("note", "").strip()
    if decision is None:
        problem = "Choose approve or decline."
        return _review_refused(request, resources, session, transfer_id, problem)
    if len(note) > NOTE_LENGTH_MAX:
        problem = f"The note is longer than {NOTE_LENGTH_MAX} characters."
        return _review_refused(request, resources, session, transfer_id, problem)
    try:
        await resources.bank.post(
            "transactions",
            REVIEW_PATH.format(transfer_id=transfer_id),
            token=session.access_token,
            body={"decision": decision, **({"note": note} if note else {})},
        )
    except ApiError as error:
        return _review_refused(
            request, resources, session, transfer_id, problem_text(error), status_code=error.status
        )
    return RedirectResponse(f"/transfers/{transfer_id}?decided={decision}", status_code=303)


def _review_refused(
    request: Request,
    resources: ConsoleResources,
    session: StaffSession,
    transfer_id: uuid.UUID,
    problem: str,
    *,
    status_code: int = 400,
) -> HTMLResponse:
    """The decision was not recorded: why, with the status the refusal came with."""
    context = {"problem": problem, "transfer_id": transfer_id}
    return render(
        request, resources, "review_refused.html", context, session=session, status_code=status_code
    )
