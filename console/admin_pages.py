"""The deny list (fraud) and customers' webhook endpoints and deliveries (notifications).

Webhook endpoints belong to their customers: the notifications API lets an operator
(`accounts:admin`) read them and their deliveries and send a finished delivery again, so
the console shows deliveries and their attempts and offers redelivery to such a member;
it changes no endpoint."""

import uuid
from typing import Final

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from console.bank_api import ApiError
from console.pages import Section, missing_scope, problem_text, section
from console.resources import ConsoleResources, Resources
from console.sessions import StaffSession
from console.web import CheckedForm, SignedIn, render
from contracts.auth import Scope
from contracts.common import Page
from contracts.fraud import DENY_LIST_PATH, DenyListEntry
from contracts.notifications import (
    DELIVERIES_PATH,
    WEBHOOK_ENDPOINTS_PATH,
    Delivery,
    DeliveryDetail,
    DeliveryStatus,
    WebhookEndpoint,
)

router = APIRouter(tags=["administration"])

PAGE_SIZE: Final = 50
REASON_LENGTH_MAX: Final = 300
_CURSOR_LENGTH_MAX: Final = 200


def _page_params(request: Request, **params: str) -> dict[str, str]:
    cursor = request.query_params.get("cursor", "")[:_CURSOR_LENGTH_MAX]
    return {**params, "limit": str(PAGE_SIZE), **({"cursor": cursor} if cursor else {})}


@router.get("/deny-list", summary="The accounts fraud refuses outright")
async def deny_list(request: Request, session: SignedIn, resources: Resources) -> HTMLResponse:
    entries: Section[Page[DenyListEntry]] = missing_scope(Scope.accounts_admin)
    if session.may(Scope.accounts_admin) or session.may(Scope.audit_read):

        async def listed() -> Page[DenyListEntry]:
            body = await resources.bank.get(
                "fraud", DENY_LIST_PATH, token=session.access_token, params=_page_params(request)
            )
            return Page[DenyListEntry].model_validate(body)

        entries = await section(listed())
    context = {"entries": entries, "editable": session.may(Scope.accounts_admin)}
    return render(request, resources, "deny_list.html", context, session=session)


@router.post("/deny-list", summary="Put an account on the deny list")
async def deny(
    request: Request, session: SignedIn, form: CheckedForm, resources: Resources
) -> Response:
    reason = form.get("reason", "").strip()
    try:
        account_id = uuid.UUID(form.get("account_id", "").strip())
    except ValueError:
        return _refused(request, resources, session, "The account is not an id (a UUID).")
    if not 1 <= len(reason) <= REASON_LENGTH_MAX:
        problem = f"Give a reason of 1 to {REASON_LENGTH_MAX} characters."
        return _refused(request, resources, session, problem)
    try:
        await resources.bank.put(
            "fraud",
            f"{DENY_LIST_PATH}/{account_id}",
            token=session.access_token,
            # The API checks that whoever lists an account is the token's subject.
            body={"reason": reason, "listed_by": session.subject or ""},
        )
    except ApiError as error:
        return _refused(request, resources, session, problem_text(error), error.status)
    return RedirectResponse("/deny-list", status_code=303)


@router.post("/deny-list/{account_id}/remove", summary="Take an account off the deny list")
async def allow(
    request: Request,
    account_id: uuid.UUID,
    session: SignedIn,
    _form: CheckedForm,
    resources: Resources,
) -> Response:
    try:
        await resources.bank.delete(
            "fraud", f"{DENY_LIST_PATH}/{account_id}", token=session.access_token
        )
    except ApiError as error:
        return _refused(request, resources, session, problem_text(error), error.status)
    return RedirectResponse("/deny-list", status_code=303)


def _refused(
    request: Request,
    resources: ConsoleResources,
    session: StaffSession,
    problem: str,
    status_code: int = 400,
) -> HTMLResponse:
    context = {"problem": problem, "back": "/deny-list"}
    return render(
        request, resources, "not_done.html", context, session=session, status_code=status_code
    )


@router.get("/webhooks", summary="A customer's webhook endpoints")
async def webhooks(request: Request, session: SignedIn, resources: Resources) -> HTMLResponse:
    customer_id = request.query_params.get("customer_id", "").strip()[:64]
    endpoints: Section[Page[WebhookEndpoint]] = Section()
    if not session.may(Scope.accounts_admin):
        endpoints = missing_scope(Scope.accounts_admin)
    elif customer_id:

        async def registered() -> Page[WebhookEndpoint]:
            params = _page_params(request, customer_id=customer_id)
            body = await resources.bank.get(
                "notifications", WEBHOOK_ENDPOINTS_PATH, token=session.access_token, params=params
            )
            return Page[WebhookEndpoint].model_validate(body)

        endpoints = await section(registered())
    context = {"customer_id": customer_id, "endpoints": endpoints}
    return render(request, resources, "webhooks.html", context, session=session)


@router.get("/webhooks/{endpoint_id}", summary="An endpoint's deliveries, newest first")
async def deliveries(
    request: Request, endpoint_id: uuid.UUID, session: SignedIn, resources: Resources
) -> HTMLResponse:
    status = request.query_params.get("status", "")
    status = status if status in DeliveryStatus.__members__.values() else ""
    found: Section[Page[Delivery]] = missing_scope(Scope.accounts_admin)
    if session.may(Scope.accounts_admin):

        async def sent() -> Page[Delivery]:
            params = _page_params(request, **({"status": status} if status else {}))
            body = await resources.bank.get(
                "notifications",
                f"{WEBHOOK_ENDPOINTS_PATH}/{endpoint_id}/deliveries",
                token=session.access_token,
                params=params,
            )
            return Page[Delivery].model_validate(body)

        found = await section(sent())
    context = {
        "endpoint_id": endpoint_id,
        "deliveries": found,
        "status": status,
        "statuses": list(DeliveryStatus),
    }
    return render(request, resources, "deliveries.html", context, session=session)


@router.get("/deliveries/{delivery_id}", summary="One delivery and its attempts")
async def delivery(
    request: Request, delivery_id: uuid.UUID, session: SignedIn, resources: Resources
) -> HTMLResponse:
    found: Section[DeliveryDetail] = missing_scope(Scope.accounts_admin)
    if session.may(Scope.accounts_admin):

        async def detail() -> DeliveryDetail:
            body = await resources.bank.get(
                "notifications", f"{DELIVERIES_PATH}/{delivery_id}", token=session.access_token
            )
            return DeliveryDetail.model_validate(body)

        found = await section(detail())
    # Only a state the API can answer is echoed back (it came through the address bar).
    redelivered = request.query_params.get("redelivered", "")
    context = {
        "delivery_id": delivery_id,
        "delivery": found,
        "redelivered": redelivered if redelivered in DeliveryStatus.__members__.values() else None,
        "redeliverable": session.may(Scope.accounts_admin)
        and found.value is not None
        and found.value.status is not DeliveryStatus.pending,
    }
    return render(request, resources, "delivery.html", context, session=session)


@router.post("/deliveries/{delivery_id}/redeliver", summary="Send a finished delivery again")
async def redeliver(
    request: Request,
    delivery_id: uuid.UUID,
    session: SignedIn,
    _form: CheckedForm,
    resources: Resources,
) -> Response:
    """Forwarded whatever the member's scopes: the API is the judge (and audits the member
    as the actor); its answer, the delivery's new state or its refusal, is shown."""
    try:
        body = await resources.bank.post(
            "notifications",
            f"{DELIVERIES_PATH}/{delivery_id}/redeliver",
            token=session.access_token,
            body=None,
        )
    except ApiError as error:
        context = {"problem": problem_text(error), "back": f"/deliveries/{delivery_id}"}
        return render(
            request, resources, "not_done.html", context, session=session, status_code=error.status
        )
    answered = Delivery.model_validate(body)
    return RedirectResponse(
        f"/deliveries/{delivery_id}?redelivered={answered.status.value}", status_code=303
    )
