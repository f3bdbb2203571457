"""One set of handlers renders every error as RFC 9457 problem+json (domain errors: kit.errors)."""

from collections.abc import Callable
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from contracts.problem import PROBLEM_CONTENT_TYPE, CommonProblem, Problem, problem_type
from kit.errors import ProblemError, validation_issues
from kit.tracing import current_trace_id

log = structlog.get_logger()


_STATUS_SLUGS: dict[int, tuple[CommonProblem, str]] = {
    400: (CommonProblem.bad_request, "Bad request"),
    401: (CommonProblem.unauthorized, "Unauthorized"),
    403: (CommonProblem.forbidden, "Forbidden"),
    404: (CommonProblem.not_found, "Not found"),
    405: (CommonProblem.method_not_allowed, "Method not allowed"),
    406: (CommonProblem.not_acceptable, "Not acceptable"),
    409: (CommonProblem.conflict, "Conflict"),
    413: (CommonProblem.payload_too_large, "Payload too large"),
    415: (CommonProblem.unsupported_media_type, "Unsupported media type"),
    429: (CommonProblem.too_many_requests, "Too many requests"),
}


# Each is told of every problem a service answers, with the request's scope (tests record
# which route answered which problem type: kit.answered_problems).
ProblemObserver = Callable[[Scope, Problem], None]
problem_observers: list[ProblemObserver] = []


class ProblemResponse(JSONResponse):
    """A problem+json answer, shown to the `problem_observers` as it is sent."""

    def __init__(self, problem: Problem, headers: dict[str, str] | None = None) -> None:
        super().__init__(
            problem.model_dump(mode="json", exclude_none=True),
            status_code=problem.status,
            media_type=PROBLEM_CONTENT_TYPE,
            headers=headers,
        )
        self.problem = problem

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        for observe in problem_observers:
            observe(scope, self.problem)
        await super().__call__(scope, receive, send)


def problem_response(problem: Problem, headers: dict[str, str] | None = None) -> JSONResponse:
    return ProblemResponse(problem, headers)


def problem_example(error: type[ProblemError]) -> dict[str, Any]:
    """The named OpenAPI example of `error`: the Problem document a service answers with."""
    problem = Problem(
        type=error.type_uri(), title=error.title, status=error.status, detail=error.example_detail()
    )
    return {"summary": error.title, "value": problem.model_dump(mode="json", exclude_none=True)}


def problem_responses(*errors: type[ProblemError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` for a route: per status, each problem type it can answer as a
    named example (kit.openapi adds the ones kit answers for every route like it)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        entry = responses.setdefault(
            error.status,
            {
                "model": Problem,
                "content": {PROBLEM_CONTENT_TYPE: {"examples": {}}},
                "description": "",
            },
        )
        examples = entry["content"][PROBLEM_CONTENT_TYPE]["examples"]
        if str(error.slug) in examples:
            continue
        examples[str(error.slug)] = problem_example(error)
        entry["description"] = "; ".join(
            part for part in (entry["description"], f"{error.title} (`{error.type_uri()}`)") if part
        )
    return responses


def request_id_of(request: Request) -> str | None:
    """The request id the service shell assigned (or accepted from `X-Request-ID`)."""
    value = getattr(request.state, "request_id", None)
    return value if isinstance(value, str) else None


def install_problem_handlers(app: FastAPI) -> None:
    """Domain, validation and HTTP errors answer problem+json (unexpected ones: kit.app)."""

    @app.exception_handler(ProblemError)
    async def on_problem(request: Request, error: ProblemError) -> JSONResponse:
        problem = error.to_problem(
            instance=request.url.path,
            trace_id=current_trace_id(),
            request_id=request_id_of(request),
        )
        headers = error.headers or None
        return problem_response(problem, headers)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        problem = Problem(
            type=problem_type(CommonProblem.invalid_request),
            title="Invalid request",
            status=422,
            detail="The request is malformed; see `errors` for each field.",
            instance=request.url.path,
            trace_id=current_trace_id(),
            request_id=request_id_of(request),
            errors=validation_issues(error.errors()),
        )
        return problem_response(problem)

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, error: StarletteHTTPException) -> JSONResponse:
        slug, title = _STATUS_SLUGS.get(error.status_code, (CommonProblem.http_error, "HTTP error"))
        problem = Problem(
            type=problem_type(slug),
            title=title,
            status=error.status_code,
            detail=str(error.detail) if error.detail else None,
            instance=request.url.path,
            trace_id=current_trace_id(),
            request_id=request_id_of(request),
        )
        return problem_response(problem, dict(error.headers) if error.headers else None)


def internal_error_problem(
    *, instance: str, trace_id: str | None, request_id: str | None
) -> Problem:
    return Problem(
        type=problem_type(CommonProblem.internal_error),
        title="Internal server error",
        status=500,
        detail="An unexpected error occurred; quote the trace id when reporting it.",
        instance=instance,
        trace_id=trace_id,
        request_id=request_id,
    )
