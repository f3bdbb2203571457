"""Which problems routes answered that their OpenAPI does not document: the test session
records every problem a service's route answers and fails on one its operation does not
list (docs/decisions/0043)."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import NamedTuple

from fastapi import FastAPI
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts
from starlette.types import Scope

from contracts.problem import Problem
from kit.openapi import documented_problems
from kit.problems import problem_observers


class UndocumentedProblem(NamedTuple):
    method: str
    path: str
    status: int
    type: str


def undocumented(scope: Scope, problem: Problem) -> UndocumentedProblem | None:
    """The answer, if the route that gave it does not document its status and type. None
    for a route of an app without kit's OpenAPI, no route (an unknown path) or a method the
    route does not serve (405)."""
    app = scope.get("app")
    if not isinstance(app, FastAPI) or not getattr(app.state, "documents_problems", False):
        return None
    route = _route_of(app, scope)
    if route is None or not route.include_in_schema:
        return None
    documented = documented_problems(route).get(problem.status, {})
    if problem.type in {example["value"]["type"] for example in documented.values()}:
        return None
    return UndocumentedProblem(
        scope["method"], route.path_format or "", problem.status, problem.type
    )


def _route_of(app: FastAPI, scope: Scope) -> RouteContext | None:
    """The route (as served: with its router's prefix, responses and dependencies) whose
    endpoint answered the request."""
    endpoint, method = scope.get("endpoint"), scope.get("method")
    if endpoint is None:
        return None
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.endpoint is not endpoint:
            continue
        if method in (route.methods or ()):
            return route
    return None


@contextmanager
def recording_undocumented_problems() -> Iterator[set[UndocumentedProblem]]:
    """While inside, each problem a route answers without documenting it is added to the
    set yielded."""
    found: set[UndocumentedProblem] = set()

    def observe(scope: Scope, problem: Problem) -> None:
        answer = undocumented(scope, problem)
        if answer is not None:
            found.add(answer)

    problem_observers.append(observe)
    try:
        yield found
    finally:
        problem_observers.remove(observe)
