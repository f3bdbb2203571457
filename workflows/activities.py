"""The saga's activities: one HTTP call each, to an idempotent endpoint, with a deterministic id.

An activity returns what the saga needs and no more (`record_step`, `publish_event`,
`void_hold` and `report_outcome` return nothing): every result is stored in the workflow's
history and converted on each replay.

Each service's client carries at most `requests_in_flight_max` requests at once and the rest
wait their turn before httpx: one httpx pool spends more CPU the more requests it juggles
(it scans every connection for each one) and collapses at high concurrency (docs/baselines.md).

Every client carries the worker's identity: one shared `ClientCredentialsAuth`, so one
access token (client_credentials, cached, refreshed before it expires) serves all four.

Error mapping (the saga's retry policies rely on it):
- a 4xx problem other than 401/403/408/425/429 is a business failure: a non-retryable
  `ApplicationError` whose `type` is the problem slug (e.g. `insufficient-funds`);
- 5xx, 408/425/429, timeouts, connection errors and unreadable 2xx answers are retryable;
- 401/403, and an issuer that hands out no token, are the worker's configuration, not the
  transfer's fault: retryable, logged as errors (see `_AUTH_STATUSES`).
The pivot (`post_hold`) and the compensation (`void_hold`) must never be abandoned, so they
raise even business failures as retryable: the activity then shows in the Temporal UI with
its attempts and last failure until an operator sees to it.
"""

import asyncio
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import httpx
import structlog
from pydantic import BaseModel, ValidationError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from contracts.accounts import (
    LEDGER_TRANSFERS_PATH,
    LEDGER_VALIDATIONS_PATH,
    AccountsProblem,
    LedgerTransfer,
    LedgerTransferCreate,
    LedgerTransferKind,
    TransferValidation,
    TransferValidationRequest,
    transfer_reference,
)
from contracts.common import REQUEST_DEADLINE_HEADER
from contracts.fraud import OUTCOMES_PATH, SCORES_PATH, OutcomeReport, Score, ScoreRequest
from contracts.notifications import EVENTS_PATH, EventCreate
from contracts.problem import PROBLEM_TYPE_PREFIX, CommonProblem
from contracts.transfers import (
    TRANSFER_STEP_BATCH_PATH,
    TRANSFER_STEPS_PATH,
    StepRecord,
    StepRecordBatch,
    TransferWorkflowInput,
    step_id,
)
from kit.deadline import Deadline
from kit.tokens import TokenUnavailable
from workflows.models import EventPublication, HoldAction, OutcomeNotice, StepReport, StepsReport

log = structlog.get_logger()

ModelT = TypeVar("ModelT", bound=BaseModel)
TermsRequestT = TypeVar("TermsRequestT", TransferValidationRequest, ScoreRequest)

# Client errors that mean "try again later", not "this request is wrong".
_RETRYABLE_CLIENT_STATUSES = frozenset({408, 425, 429})
# 401 after the auth has already fetched a fresh token once, or 403 (a scope the worker's
# client lacks), says the worker or the issuer is misconfigured: a wrong secret, a JWKS
# URL or issuer name that differs between services, a client registered without a scope.
# Non-retryable would be wrong: it would reject or decline a customer's transfer for our
# mistake, and the pivot and the compensation must not give up anyway. Retrying is right:
# fixing the configuration (or a service refetching a rotated JWKS) heals every waiting
# saga, each showing its attempts and this failure in the Temporal UI meanwhile. It is
# logged as an error on every attempt so that someone looks. The lookup steps still end
# after their bounded attempts (LOOKUP_RETRY): a transfer does not wait forever on it.
_AUTH_STATUSES = frozenset({401, 403})
_MESSAGE_LENGTH_MAX = 500
# A Retry-After header is honoured up to this; a larger value is the retry policy's business.
_RETRY_AFTER_SECONDS_MAX = 300
_SLUG_LENGTH_MAX = 100


def _truncate(text: str) -> str:
    return text if len(text) <= _MESSAGE_LENGTH_MAX else text[: _MESSAGE_LENGTH_MAX - 1] + "…"


def _problem_of(response: httpx.Response) -> tuple[str, str]:
    """The slug and a readable message of an error answer, problem+json or not."""
    fallback = f"http-{response.status_code}"
    try:
        body = response.json()
    except ValueError:
        return fallback, _truncate(f"HTTP {response.status_code}: {response.text}")
    if not isinstance(body, dict):
        return fallback, _truncate(f"HTTP {response.status_code}")
    problem_type = body.get("type")
    slug = fallback
    if (
        isinstance(problem_type, str)
        and problem_type.startswith(PROBLEM_TYPE_PREFIX)
        and 0 < len(problem_type) - len(PROBLEM_TYPE_PREFIX) <= _SLUG_LENGTH_MAX
    ):
        slug = problem_type.removeprefix(PROBLEM_TYPE_PREFIX)
    detail = body.get("detail") or body.get("title") or f"HTTP {response.status_code}"
    return slug, _truncate(str(detail))


def _retry_after(response: httpx.Response) -> timedelta | None:
    value = response.headers.get("retry-after", "")
    if not value.isdigit():
        return None
    return timedelta(seconds=min(int(value), _RETRY_AFTER_SECONDS_MAX))


@asynccontextmanager
async def _activity_context(transfer_id: object) -> AsyncIterator[None]:
    """Bind the transfer, the workflow and a request id (sent on as X-Request-ID) to each line."""
    info = activity.info()
    request_id = f"{info.workflow_id}:{info.activity_type}:{info.attempt}"
    with structlog.contextvars.bound_contextvars(
        transfer_id=str(transfer_id),
        workflow_id=info.workflow_id,
        activity=info.activity_type,
        attempt=info.attempt,
        request_id=request_id,
    ):
        yield


def _terms_request(model: type[TermsRequestT], transfer: TransferWorkflowInput) -> TermsRequestT:
    """The transfer's id and terms (accounts, amount, currency): what accounts validates
    and fraud scores."""
    return model(
        transfer_id=transfer.transfer_id,
        source_account_id=transfer.source_account_id,
        target_account_id=transfer.target_account_id,
        amount_minor=transfer.amount_minor,
        currency=transfer.currency,
    )


# In the details of a refused `place_hold` that had earlier attempts: how many it had.
HOLD_ATTEMPTS = "hold_attempts"
# The failure type of a validation that accounts answered `valid: false` without a problem.
TRANSFER_INVALID = "transfer-invalid"

# Where one client's throughput peaks on this kind of machine (docs/baselines.md, FastAPI).
REQUESTS_IN_FLIGHT_MAX_DEFAULT = 8


@dataclass(frozen=True)
class _Service:
    """One service's client, the gate that bounds its requests in flight, and how long one
    request may take in all (its deadline, which the service honours: kit.deadline)."""

    http: httpx.AsyncClient
    gate: asyncio.Semaphore
    timeout_seconds: float


class TransferActivities:
    """The saga's activities, holding one HTTP client per service (closed by the owner)."""

    def __init__(
        self,
        *,
        accounts: httpx.AsyncClient,
        transactions: httpx.AsyncClient,
        fraud: httpx.AsyncClient,
        notifications: httpx.AsyncClient,
        requests_in_flight_max: int = REQUESTS_IN_FLIGHT_MAX_DEFAULT,
    ) -> None:
        assert requests_in_flight_max > 0

        def service(http: httpx.AsyncClient) -> _Service:
            # httpx's read timeout bounds the wait between two bytes, not the exchange: the
            # same figure bounds the whole request (and is the deadline the service sees).
            timeout_seconds = http.timeout.read
            assert timeout_seconds is not None, "every client states its timeout"
            return _Service(http, asyncio.Semaphore(requests_in_flight_max), timeout_seconds)

        self.accounts = service(accounts)
        self.transactions = service(transactions)
        self.fraud = service(fraud)
        self.notifications = service(notifications)

    def all(self) -> Sequence[Callable[..., Any]]:
        """Every activity, for `Worker(activities=...)`."""
        return [
            self.validate_transfer,
            self.place_hold,
            self.score_transfer,
            self.post_hold,
            self.void_hold,
            self.publish_event,
            self.record_step,
            self.record_steps,
            self.report_outcome,
        ]

    async def aclose(self) -> None:
        for service in (self.accounts, self.transactions, self.fraud, self.notifications):
            await service.http.aclose()

    @activity.defn(name="validate_transfer")
    async def validate_transfer(self, transfer: TransferWorkflowInput) -> TransferValidation:
        """Ask accounts whether the transfer may go ahead (accounts, status, currency, limits)."""
        async with _activity_context(transfer.transfer_id):
            request = _terms_request(TransferValidationRequest, transfer)
            validation = await post_to_service(
                self.accounts, LEDGER_VALIDATIONS_PATH, request, TransferValidation
            )
            if not validation.valid:
                # Accounts answers a problem when it refuses; a bare `valid: false` is
                # still a refusal, so it must not let the saga go on.
                raise ApplicationError(
                    "accounts answered that the transfer is not valid",
                    type=TRANSFER_INVALID,
                    non_retryable=True,
                )
            return validation

    @activity.defn(name="place_hold")
    async def place_hold(self, transfer: TransferWorkflowInput) -> LedgerTransfer:
        """Reserve the amount on the source account: a pending ledger transfer, which the
        ledger releases by itself after `hold_timeout_seconds` unless posted or voided.

        A final refusal after earlier attempts says so in its details (`HOLD_ATTEMPTS`): an
        earlier attempt may still reach the ledger, and the saga then voids the hold anyway.
        """
        async with _activity_context(transfer.transfer_id):
            hold = LedgerTransferCreate(
                id=step_id(transfer.transfer_id, "hold"),
                kind=LedgerTransferKind.pending,
                debit_account_id=transfer.source_account_id,
                credit_account_id=transfer.target_account_id,
                amount_minor=transfer.amount_minor,
                currency=transfer.currency,
                timeout_seconds=transfer.hold_timeout_seconds,
                reference=transfer_reference(transfer.transfer_id),
            )
            try:
                placed = await post_to_service(
                    self.accounts, LEDGER_TRANSFERS_PATH, hold, LedgerTransfer
                )
            except ApplicationError as error:
                attempt = activity.info().attempt
                if not error.non_retryable or attempt == 1:
                    raise
                raise ApplicationError(
                    error.message, {HOLD_ATTEMPTS: attempt}, type=error.type, non_retryable=True
                ) from None
            log.info("transfer.hold_placed", hold_id=str(placed.id))
            return placed

    @activity.defn(name="score_transfer")
    async def score_transfer(self, transfer: TransferWorkflowInput) -> Score:
        """Have the fraud service score the transfer (the same transfer scores the same)."""
        async with _activity_context(transfer.transfer_id):
            request = _terms_request(ScoreRequest, transfer)
            return await post_to_service(self.fraud, SCORES_PATH, request, Score)

    @activity.defn(name="post_hold")
    async def post_hold(self, action: HoldAction) -> LedgerTransfer:
        """Post the hold in full: the pivot, after which the money has moved."""
        async with _activity_context(action.transfer_id):
            post = LedgerTransferCreate(
                id=step_id(action.transfer_id, "post"),
                kind=LedgerTransferKind.post_pending,
                pending_id=action.hold_id,
                reference=transfer_reference(action.transfer_id),
            )
            posting = await post_to_service(
                self.accounts,
                LEDGER_TRANSFERS_PATH,
                post,
                LedgerTransfer,
                business_failures_retryable=True,
                # The ledger released the hold at its deadline: nothing is left to post.
                final_problems=(AccountsProblem.pending_transfer_expired,),
            )
            log.info("transfer.hold_posted", posting_id=str(posting.id))
            return posting

    @activity.defn(name="void_hold")
    async def void_hold(self, action: HoldAction) -> None:
        """Release the hold: the compensation of `place_hold`.

        The void names the hold's accounts and amount (when the action carries the transfer),
        so the ledger can void a hold it has not seen yet: it then refuses that hold should it
        still arrive. A hold past its deadline was released by the ledger already: done.
        """
        transfer = action.transfer
        async with _activity_context(action.transfer_id):
            void = LedgerTransferCreate(
                id=step_id(action.transfer_id, "void"),
                kind=LedgerTransferKind.void_pending,
                pending_id=action.hold_id,
                debit_account_id=None if transfer is None else transfer.source_account_id,
                credit_account_id=None if transfer is None else transfer.target_account_id,
                amount_minor=None if transfer is None else transfer.amount_minor,
                currency=None if transfer is None else transfer.currency,
                reference=transfer_reference(action.transfer_id),
            )
            try:
                await send_to_service(
                    self.accounts,
                    LEDGER_TRANSFERS_PATH,
                    void,
                    business_failures_retryable=True,
                    final_problems=(AccountsProblem.pending_transfer_expired,),
                )
            except ApplicationError as error:
                if error.type != AccountsProblem.pending_transfer_expired:
                    raise
                log.info("transfer.hold_expired_before_void", hold_id=str(action.hold_id))
                return
            log.info("transfer.hold_voided", void_id=str(void.id))

    @activity.defn(name="publish_event")
    async def publish_event(self, publication: EventPublication) -> None:
        """Publish a transfer event; its id derives from the transfer and the event type."""
        transfer = publication.transfer
        async with _activity_context(transfer.transfer_id):
            data: dict[str, object] = {
                "transfer_id": str(transfer.transfer_id),
                "status": publication.status.value,
                "amount_minor": transfer.amount_minor,
                "currency": transfer.currency,
                "source_account_id": str(transfer.source_account_id),
                "target_account_id": str(transfer.target_account_id),
                "failure_reason": publication.failure_reason,
            }
            # Only known owners route: an absent key, not a null, means "nobody".
            for key, customer_id in (
                ("source_customer_id", publication.source_customer_id),
                ("target_customer_id", publication.target_customer_id),
            ):
                if customer_id is not None:
                    data[key] = customer_id
            if publication.original_transfer_id is not None:
                data["original_transfer_id"] = str(publication.original_transfer_id)
            event = EventCreate(
                id=step_id(transfer.transfer_id, f"event:{publication.type.value}"),
                type=publication.type,
                timestamp=publication.occurred_at,
                data=data,
            )
            await send_to_service(self.notifications, EVENTS_PATH, event)

    @activity.defn(name="record_step")
    async def record_step(self, report: StepReport) -> None:
        """Report one step to the transactions service (audit trail and status projection).

        The record names the Temporal execution that took the step, so each audit event
        points at its workflow and run in the Temporal UI.
        """
        async with _activity_context(report.transfer_id):
            path = TRANSFER_STEPS_PATH.format(transfer_id=report.transfer_id)
            await send_to_service(self.transactions, path, _taken_here(report.record))

    @activity.defn(name="record_steps")
    async def record_steps(self, report: StepsReport) -> None:
        """Report consecutive steps in one request (one transaction in transactions), each
        as `record_step` would report it."""
        async with _activity_context(report.transfer_id):
            batch = StepRecordBatch(records=[_taken_here(record) for record in report.records])
            path = TRANSFER_STEP_BATCH_PATH.format(transfer_id=report.transfer_id)
            await send_to_service(self.transactions, path, batch)

    @activity.defn(name="report_outcome")
    async def report_outcome(self, notice: OutcomeNotice) -> None:
        """Tell the fraud service how a scored transfer ended (idempotent on the transfer id).

        Only the status line counts: the answer's body is fraud's business, not the saga's.
        """
        transfer = notice.transfer
        async with _activity_context(transfer.transfer_id):
            try:
                report = OutcomeReport(
                    transfer_id=transfer.transfer_id,
                    source_account_id=transfer.source_account_id,
                    target_account_id=transfer.target_account_id,
                    amount_minor=transfer.amount_minor,
                    currency=transfer.currency,
                    final_status=notice.final_status.value,
                    review_decision=notice.review_decision,
                    occurred_at=notice.occurred_at,
                )
            except ValidationError as error:
                # Retrying cannot make this report valid: a programmer error, said loudly.
                log.error("transfer.outcome_invalid", errors=error.error_count())
                raise ApplicationError(
                    _truncate(f"the outcome report is not valid: {error.errors()[0]['msg']}"),
                    type=CommonProblem.invalid_request,
                    non_retryable=True,
                ) from None
            await send_to_service(self.fraud, OUTCOMES_PATH, report)
            log.info("transfer.outcome_reported", final_status=notice.final_status.value)


async def post_to_service(
    service: _Service,
    path: str,
    body: BaseModel,
    response_model: type[ModelT],
    *,
    business_failures_retryable: bool = False,
    final_problems: Collection[str] = (),
) -> ModelT:
    """POST `body` as JSON and parse the answer, mapping failures as the module docstring says."""
    response = await send_to_service(
        service,
        path,
        body,
        business_failures_retryable=business_failures_retryable,
        final_problems=final_problems,
    )
    try:
        return response_model.model_validate_json(response.content)
    except ValidationError as error:
        # The call may have had its effect; the endpoint is idempotent, so asking
        # again is safe, while giving up could strand a hold.
        log.error("http.invalid_response", path=path, status=response.status_code)
        raise ApplicationError(
            _truncate(
                f"POST {path} answered an unreadable {response_model.__name__}: "
                f"{error.error_count()} errors, first at {error.errors()[0]['loc']}"
            ),
            type="invalid-response",
        ) from None


def _taken_here(record: StepRecord) -> StepRecord:
    """The record naming the Temporal execution this activity runs for."""
    info = activity.info()
    return record.model_copy(
        update={"workflow_id": info.workflow_id, "run_id": info.workflow_run_id}
    )


async def send_to_service(
    service: _Service,
    path: str,
    body: BaseModel,
    *,
    business_failures_retryable: bool = False,
    final_problems: Collection[str] = (),
) -> httpx.Response:
    """POST `body` as JSON; a 2xx answer is returned, anything else raised as an error.
    `final_problems` are business failures that stay final even when the others are retried.

    The request carries its deadline: the service commits nothing after the moment this
    call gives up, so a retry never races a late first attempt (kit.deadline).

    Errors are raised `from None`: Temporal stores a failure with its whole cause chain and
    stack traces, and httpx's (through httpcore and anyio) exceed the server's failure size
    limit, which then replaces the failure with "Failure exceeds size limit."
    """
    try:
        async with service.gate:
            deadline = Deadline.after(service.timeout_seconds)
            async with asyncio.timeout(service.timeout_seconds):
                response = await service.http.post(
                    path,
                    json=body.model_dump(mode="json", exclude_none=True),
                    headers={REQUEST_DEADLINE_HEADER: deadline.header_value()},
                )
    except (httpx.TimeoutException, TimeoutError) as error:
        log.warning("http.timeout", path=path, error=type(error).__name__)
        raise ApplicationError(
            _truncate(f"POST {path} timed out: {type(error).__name__}"), type="timeout"
        ) from None
    except httpx.TransportError as error:
        log.warning("http.connection_error", path=path, error=type(error).__name__)
        raise ApplicationError(
            _truncate(f"POST {path} failed: {type(error).__name__}: {error}"),
            type="connection-error",
        ) from None
    except TokenUnavailable as error:
        # The issuer refused the worker's credentials or is not answering: see _AUTH_STATUSES.
        log.error("http.token_unavailable", path=path, error=str(error))
        raise ApplicationError(
            _truncate(f"POST {path}: no access token: {error}"), type="token-unavailable"
        ) from None

    if response.is_success:
        return response

    slug, message = _problem_of(response)
    status = response.status_code
    if status in _AUTH_STATUSES:
        log.error("http.auth_refused", path=path, status=status, problem=slug)
        raise ApplicationError(
            _truncate(f"the worker's credentials were refused ({status}): {message}"),
            type=slug,
        )
    business = 400 <= status < 500 and status not in _RETRYABLE_CLIENT_STATUSES
    if business and (not business_failures_retryable or slug in final_problems):
        log.info("http.refused", path=path, status=status, problem=slug)
        raise ApplicationError(message, type=slug, non_retryable=True)
    if business:
        # Only the pivot and the compensation get here: loud, since retrying alone may not
        # fix it, yet giving up would leave money held or half-moved.
        log.error("http.refused_will_retry", path=path, status=status, problem=slug)
    else:
        log.warning("http.retryable_failure", path=path, status=status, problem=slug)
    raise ApplicationError(message, type=slug, next_retry_delay=_retry_after(response))
