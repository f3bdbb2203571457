"""Each operation documents the problems it can answer, per status, as named examples (the
route's own and the ones kit adds), and the recorder flags an answered problem that its
route does not document (docs/decisions/0043)."""

from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI

from contracts.auth import Scope
from contracts.problem import Problem
from kit.answered_problems import UndocumentedProblem, undocumented
from kit.auth import Principal, require_scopes
from kit.deadline import RequestDeadline
from kit.errors import InvalidRequest, ProblemError
from kit.openapi import install_openapi, operation_id
from kit.problems import install_problem_handlers, problem_observers, problem_responses
from kit.ratelimit import MONEY_BUCKET, rate_limited

Reader = Annotated[Principal, Depends(require_scopes(Scope.accounts_read))]
MoneyMoved = Annotated[Principal, Depends(rate_limited(MONEY_BUCKET))]


class ThingNotFound(ProblemError):
    status = 404
    slug = "thing-not-found"
    title = "Thing not found"


class ThingGone(ProblemError):
    """The thing was deleted; it cannot come back."""

    status = 410
    slug = "thing-gone"
    title = "Thing gone"


async def get_thing(thing_id: str, reader: Reader, deadline: RequestDeadline) -> None:
    raise ThingNotFound


async def ping() -> None: ...


async def send_money(principal: MoneyMoved) -> None: ...


def app_with_routes() -> FastAPI:
    app = FastAPI(generate_unique_id_function=operation_id)
    install_problem_handlers(app)
    app.get("/things/{thing_id}", responses=problem_responses(ThingNotFound, ThingGone))(get_thing)
    app.get("/ping")(ping)
    app.post("/money")(send_money)
    install_openapi(app, issuer_url=None)
    return app


def problems(
    document: dict[str, Any], path: str, status: str, method: str = "get"
) -> dict[str, Any]:
    """The named problem examples of one response (none when the status is not listed)."""
    response = document["paths"][path][method]["responses"].get(status, {})
    media: dict[str, Any] = response.get("content", {}).get("application/problem+json", {})
    examples: dict[str, Any] = media.get("examples", {})
    return examples


class TestDocumentedProblems:
    def test_the_routes_own_as_named_real_problem_documents(self) -> None:
        document = app_with_routes().openapi()
        gone = problems(document, "/things/{thing_id}", "410")["thing-gone"]
        assert gone == {
            "summary": "Thing gone",
            "value": {
                "type": "urn:sagabank:problem:thing-gone",
                "title": "Thing gone",
                "status": 410,
                "detail": "The thing was deleted; it cannot come back.",
            },
        }
        assert Problem.model_validate(gone["value"]).status == 410

    def test_kit_adds_those_of_the_routes_parameters_security_and_deadline(self) -> None:
        document = app_with_routes().openapi()
        documented = {
            status: sorted(problems(document, "/things/{thing_id}", status))
            for status in ("400", "401", "403", "422", "500", "503")
        }
        assert documented == {
            "400": ["invalid-deadline"],
            "401": ["unauthorized"],
            "403": ["insufficient-scope"],
            "422": ["invalid-request"],
            "500": ["internal-error"],
            "503": ["deadline-exceeded", "service-unavailable"],
        }

    def test_a_rate_limited_route_may_answer_429(self) -> None:
        document = app_with_routes().openapi()
        assert list(problems(document, "/money", "429", method="post")) == ["too-many-requests"]
        assert list(problems(document, "/money", "403", method="post")) == []

    def test_a_public_route_without_parameters_only_may_fail(self) -> None:
        responses = app_with_routes().openapi()["paths"]["/ping"]["get"]["responses"]
        assert sorted(responses) == ["200", "500"]


class TestUndocumented:
    def scope(self, app: FastAPI, endpoint: Any, method: str = "GET") -> dict[str, Any]:
        return {"app": app, "endpoint": endpoint, "method": method}

    def problem(self, error: type[ProblemError]) -> Problem:
        return Problem(type=error.type_uri(), title=error.title, status=error.status)

    def test_a_documented_problem_passes(self) -> None:
        scope = self.scope(app_with_routes(), get_thing)
        assert undocumented(scope, self.problem(ThingNotFound)) is None
        assert undocumented(scope, self.problem(InvalidRequest)) is None

    def test_an_undocumented_problem_is_named_with_its_route(self) -> None:
        answer = undocumented(self.scope(app_with_routes(), ping), self.problem(ThingNotFound))
        assert answer == UndocumentedProblem(
            "GET", "/ping", 404, "urn:sagabank:problem:thing-not-found"
        )

    def test_a_documented_type_under_another_status_is_undocumented(self) -> None:
        moved = Problem(type=ThingGone.type_uri(), title=ThingGone.title, status=404)
        assert undocumented(self.scope(app_with_routes(), get_thing), moved) is not None

    def test_no_route_or_another_method_is_no_routes_answer(self) -> None:
        app = app_with_routes()
        assert undocumented({"app": app, "method": "GET"}, self.problem(ThingNotFound)) is None
        assert undocumented(self.scope(app, ping, "POST"), self.problem(ThingNotFound)) is None


async def test_every_problem_answer_is_shown_to_the_observers() -> None:
    """The session's recorder sees what a route answers, with the route's scope."""
    seen: list[tuple[object, str]] = []
    problem_observers.append(lambda scope, problem: seen.append((scope["endpoint"], problem.type)))
    try:
        transport = httpx.ASGITransport(app=app_with_routes())
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/things/1")
    finally:
        problem_observers.pop()
    assert response.status_code == 401
    assert seen == [(get_thing, "urn:sagabank:problem:unauthorized")]
