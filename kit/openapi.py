"""OpenAPI worth generating a client from, the same for every service: readable operation
ids, and one OAuth2 scheme naming the issuer's flows and scopes, with the scopes each
operation demands read from its `kit.auth` dependencies (docs/decisions/0040)."""

import itertools
from collections.abc import Callable, Iterator
from typing import Any, Final

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_flat_params
from fastapi.routing import APIRoute, RouteContext, iter_route_contexts

from contracts.auth import (
    AUTHORIZE_PATH,
    DOCS_CLIENT_ID,
    SCOPE_DESCRIPTIONS,
    TOKEN_PATH,
    Scope,
)
from contracts.problem import PROBLEM_CONTENT_TYPE
from kit.auth import ScopeRequirement, authenticate
from kit.deadline import DeadlineExceeded, InvalidDeadline, request_deadline
from kit.errors import (
    Forbidden,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    ProblemError,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from kit.problems import problem_example
from kit.ratelimit import RateLimited

SECURITY_SCHEME: Final = "OAuth2"
# Swagger UI's Authorize (FastAPI's `swagger_ui_init_oauth`): the issuer's public client for
# the docs, always with PKCE (the issuer refuses a code flow without it).
SWAGGER_UI_OAUTH: Final[dict[str, Any]] = {
    "clientId": DOCS_CLIENT_ID,
    "usePkceWithAuthorizationCodeGrant": True,
}

ScopeAlternatives = list[frozenset[Scope]]
_SCHEMAS: Final = "#/components/schemas/"
_PROBLEM: Final = "#/components/schemas/Problem"
_VALIDATION_ERROR: Final = "#/components/schemas/HTTPValidationError"


def operation_id(route: APIRoute) -> str:
    """The endpoint function's name in camelCase (`create_transfer` -> `createTransfer`):
    FastAPI's default (`create_transfer_v1_transfers_post`) names every generated method."""
    first, *rest = route.name.strip("_").split("_")
    return first + "".join(word.capitalize() for word in rest)


def oauth2_scheme(issuer_url: str | None) -> dict[str, Any]:
    """The issuer's OAuth2 flows and every scope; URLs under `issuer_url`, or relative (to
    the service that serves the document: right for the issuer's own) when it is None."""
    base = issuer_url.rstrip("/") if issuer_url is not None else ""
    token_url, authorize_url = f"{base}{TOKEN_PATH}", f"{base}{AUTHORIZE_PATH}"
    scopes = {scope.value: SCOPE_DESCRIPTIONS[scope] for scope in Scope}
    return {
        "type": "oauth2",
        "description": (
            "Tokens from the issuer (the accounts service). Customers sign in with the "
            "authorization code flow (PKCE, S256) or, where the issuer serves it, the "
            "password grant; operators and the saga's worker use client credentials."
        ),
        "flows": {
            "authorizationCode": {
                "authorizationUrl": authorize_url,
                "tokenUrl": token_url,
                "refreshUrl": token_url,
                "scopes": scopes,
            },
            "password": {"tokenUrl": token_url, "refreshUrl": token_url, "scopes": scopes},
            "clientCredentials": {"tokenUrl": token_url, "scopes": scopes},
        },
    }


def install_openapi(app: FastAPI, *, issuer_url: str | None) -> None:
    """Make `app.openapi()` describe the OAuth2 scheme and, on each operation, the scopes
    its dependencies demand (none on a public route). Call after every route is added."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            _document_security(app, document, issuer_url=issuer_url)
            _problems_as_problem_json(document)
            _document_problems(app, document)
            _restore_example_nulls(document)
        return app.openapi_schema or {}

    app.openapi = openapi  # type: ignore[method-assign]
    # Its routes document the problems they answer (kit.answered_problems checks them).
    app.state.documents_problems = True


# Status -> slug -> the named example of each problem a route documents.
DocumentedProblems = dict[int, dict[str, dict[str, Any]]]


def documented_problems(route: APIRoute | RouteContext) -> DocumentedProblems:
    """Each problem `route` may answer, by status then by slug, as its named example: those
    it declares (`kit.problems.problem_responses`) and those kit answers for any route
    like it (docs/decisions/0043)."""
    found: DocumentedProblems = {}
    for status, response in route.responses.items():
        examples = response.get("content", {}).get(PROBLEM_CONTENT_TYPE, {}).get("examples", {})
        for slug, example in examples.items():
            found.setdefault(int(status), {})[slug] = example
    for error in _common_problems(route):
        found.setdefault(error.status, {}).setdefault(str(error.slug), problem_example(error))
    return found


def _common_problems(route: APIRoute | RouteContext) -> Iterator[type[ProblemError]]:
    """The problems kit itself answers on `route`: by its parameters, body and security."""
    yield InternalError
    parameters = get_flat_params(route.dependant)
    if route.body_field is not None:
        yield PayloadTooLarge
    if parameters or route.body_field is not None:
        yield InvalidRequest  # FastAPI's rule for its own 422
    alternatives = scope_alternatives(route.dependant)
    if alternatives is not None:
        yield Unauthorized
        yield ServiceUnavailable  # the issuer's keys cannot be fetched
        if any(alternatives):
            yield Forbidden
    if _depends_on(route.dependant, lambda call: isinstance(call, RateLimited)):
        yield TooManyRequests
    if _depends_on(route.dependant, lambda call: call is request_deadline):
        yield InvalidDeadline
        yield DeadlineExceeded


def _depends_on(dependant: Dependant, matches: Callable[[Any], bool]) -> bool:
    """Whether any dependency in the tree is a call that `matches`."""
    return any(
        matches(dependency.call) or _depends_on(dependency, matches)
        for dependency in dependant.dependencies
    )


def _document_problems(app: FastAPI, document: dict[str, Any]) -> None:
    """On each operation, per status, every problem type it documents as a named example."""
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        problems = documented_problems(route)
        for method in route.methods or ():
            operation = document["paths"][route.path_format].get(method.lower())
            if operation is None:
                continue
            responses = operation.setdefault("responses", {})
            for status, examples in sorted(problems.items()):
                response = responses.setdefault(str(status), {})
                titles = "; ".join(example["summary"] for example in examples.values())
                if not response.get("description"):
                    response["description"] = titles
                response.setdefault("content", {})[PROBLEM_CONTENT_TYPE] = {
                    "schema": {"$ref": _PROBLEM},
                    "examples": examples,
                }


def _problems_as_problem_json(document: dict[str, Any]) -> None:
    """Every error response as the services send it: `application/problem+json` with the
    Problem schema. FastAPI puts the schema under `application/json` beside an empty
    problem+json entry, and documents its own validation error for 422, which the shell
    (kit.problems) answers as a Problem too: a generated client would type neither."""
    schemas = document.get("components", {}).get("schemas", {})
    if "Problem" not in schemas:
        return
    for _, _, operation in _operations(document):
        for response in operation.get("responses", {}).values():
            content = response.get("content", {})
            schema = content.get("application/json", {}).get("schema", {})
            # Not another model a route answers on purpose (/readyz's 503 is its Health).
            if PROBLEM_CONTENT_TYPE in content or schema.get("$ref") == _VALIDATION_ERROR:
                response["content"] = {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": _PROBLEM}}}
    if not _mentions(document["paths"], _VALIDATION_ERROR):
        schemas.pop("HTTPValidationError", None)
        if not _mentions(document, "#/components/schemas/ValidationError"):
            schemas.pop("ValidationError", None)


def _restore_example_nulls(document: dict[str, Any]) -> None:
    """Put back the `null`s FastAPI drops from the document (it encodes it with
    `exclude_none`): in each model's examples, a required property that may be null and is
    missing was null, and without it the example would not be valid (docs/decisions/0043)."""
    schemas = document.get("components", {}).get("schemas", {})
    for schema in schemas.values():
        for example in schema.get("examples", []):
            _fill_nulls(example, schema, schemas, depth=0)


_EXAMPLE_DEPTH_MAX: Final = 10


def _fill_nulls(value: Any, schema: dict[str, Any], schemas: dict[str, Any], *, depth: int) -> None:
    if depth > _EXAMPLE_DEPTH_MAX:
        return
    reference = schema.get("$ref", "")
    if reference.startswith(_SCHEMAS):
        schema = schemas.get(reference.removeprefix(_SCHEMAS), {})
    if isinstance(value, list):
        for item in value:
            _fill_nulls(item, schema.get("items", {}), schemas, depth=depth + 1)
        return
    if not isinstance(value, dict):
        return
    for variant in schema.get("anyOf", []):
        _fill_nulls(value, variant, schemas, depth=depth + 1)
    properties = schema.get("properties", {})
    for name in schema.get("required", []):
        if name not in value and _nullable(properties.get(name, {})):
            value[name] = None
    for name, member in value.items():
        if name in properties:
            _fill_nulls(member, properties[name], schemas, depth=depth + 1)


def _nullable(schema: dict[str, Any]) -> bool:
    return any(variant.get("type") == "null" for variant in schema.get("anyOf", []))


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, by_method in document.get("paths", {}).items():
        for method, operation in by_method.items():
            if isinstance(operation, dict):
                yield method, path, operation


def _mentions(node: Any, reference: str) -> bool:
    """Whether `reference` appears anywhere in `node` (a part of the document)."""
    if isinstance(node, dict):
        return node.get("$ref") == reference or any(_mentions(v, reference) for v in node.values())
    if isinstance(node, list):
        return any(_mentions(item, reference) for item in node)
    return False


def _document_security(app: FastAPI, document: dict[str, Any], *, issuer_url: str | None) -> None:
    components = document.setdefault("components", {})
    # FastAPI's own entry for kit.auth's HTTPBearer: the OAuth2 scheme says it all, scopes too.
    components["securitySchemes"] = {SECURITY_SCHEME: oauth2_scheme(issuer_url)}
    # Routes as served: an included router's carry its prefix and dependencies.
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or not route.include_in_schema:
            continue
        alternatives = scope_alternatives(route.dependant)
        for method in route.methods or ():
            operation = document["paths"][route.path_format].get(method.lower())
            if operation is None:
                continue
            operation.pop("security", None)
            if alternatives is not None:
                operation["security"] = [
                    {SECURITY_SCHEME: sorted(scope.value for scope in wanted)}
                    for wanted in alternatives
                ]


def scope_alternatives(dependant: Dependant) -> ScopeAlternatives | None:
    """The sets of scopes any one of which lets a caller through this route's dependencies
    (OpenAPI's security requirements, OR-ed); [frozenset()] for any bearer token; None for
    a route that authenticates nobody."""
    requirements = list(_requirements(dependant))
    if not requirements:
        return None
    alternatives: ScopeAlternatives = [frozenset()]
    for requirement in requirements:
        if isinstance(requirement, ScopeRequirement):
            # Every requirement holds at once: one alternative of each, in every combination.
            alternatives = [
                combined | frozenset(wanted)
                for combined, wanted in itertools.product(alternatives, requirement.alternatives)
            ]
    # In declared order, once each; one that includes another is redundant (the smaller admits).
    return [
        wanted
        for wanted in dict.fromkeys(alternatives)
        if not any(other < wanted for other in alternatives)
    ]


def _requirements(dependant: Dependant) -> Iterator[ScopeRequirement | None]:
    """Each scope requirement in the dependency tree; None for each bare `authenticate`."""
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, ScopeRequirement):
            yield dependency.call
        elif dependency.call is authenticate:
            yield None
        else:
            yield from _requirements(dependency)
