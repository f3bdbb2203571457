"""Every request and response model in each service's OpenAPI carries an example, and each
example is valid against its own schema (docs/decisions/0043)."""

from collections.abc import Iterator
from typing import Any, Final

import jsonschema
import pytest

from contracts.problem import PROBLEM_CONTENT_TYPE, PROBLEM_TYPE_PREFIX
from tests.service_apps import SERVICES, service_apps, write_signing_keys

SCHEMA_PREFIX: Final = "#/components/schemas/"


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    keys = write_signing_keys(tmp_path_factory.mktemp("examples-keys"))
    return {service: app.openapi() for service, app in service_apps(keys).items()}


def references(node: Any) -> Iterator[str]:
    """The name of each component schema `node` refers to, directly or in a union."""
    if isinstance(node, dict):
        reference = node.get("$ref")
        if isinstance(reference, str) and reference.startswith(SCHEMA_PREFIX):
            yield reference.removeprefix(SCHEMA_PREFIX)
        for value in node.values():
            yield from references(value)
    elif isinstance(node, list):
        for item in node:
            yield from references(item)


def body_models(document: dict[str, Any]) -> set[str]:
    """The component schemas named as a request body or a response body of an operation."""
    named: set[str] = set()
    for by_method in document["paths"].values():
        for operation in by_method.values():
            if not isinstance(operation, dict):
                continue
            bodies = [operation.get("requestBody", {})]
            bodies += operation.get("responses", {}).values()
            for body in bodies:
                for media in body.get("content", {}).values():
                    named.update(references(media.get("schema", {})))
    return named


def validator(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """The named component schema, its `$ref`s resolved against the whole document."""
    schema = {"$ref": f"{SCHEMA_PREFIX}{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())


@pytest.mark.parametrize("service", SERVICES)
def test_every_body_model_has_an_example(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    schemas = documents[service]["components"]["schemas"]
    missing = sorted(
        name for name in body_models(documents[service]) if not schemas[name].get("examples")
    )
    assert missing == []


@pytest.mark.parametrize("service", SERVICES)
def test_every_example_is_valid_against_its_schema(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    document = documents[service]
    invalid = [
        (name, error.json_path, error.message)
        for name in sorted(body_models(document))
        for example in document["components"]["schemas"][name].get("examples", [])
        for error in validator(document, name).iter_errors(example)
    ]
    assert invalid == []


@pytest.mark.parametrize("service", SERVICES)
def test_each_operations_problem_examples_are_problems_of_their_status(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    """Every operation lists at least the 500 any route may answer; each named example is a
    valid Problem whose status is the response's and whose type ends in its name."""
    document = documents[service]
    problem = validator(document, "Problem")
    wrong, without_500 = [], []
    for path, by_method in document["paths"].items():
        for method, operation in by_method.items():
            responses = operation.get("responses", {})
            if "500" not in responses:
                without_500.append((method, path))
            for status, response in responses.items():
                media = response.get("content", {}).get(PROBLEM_CONTENT_TYPE, {})
                for name, example in media.get("examples", {}).items():
                    value = example["value"]
                    if (
                        not problem.is_valid(value)
                        or str(value["status"]) != status
                        or value["type"] != f"{PROBLEM_TYPE_PREFIX}{name}"
                    ):
                        wrong.append((method, path, status, name))
    assert without_500 == []
    assert wrong == []


def test_an_invalid_example_is_caught() -> None:
    """The check itself: a negative amount in an example fails its schema."""
    document = {
        "components": {
            "schemas": {
                "Money": {
                    "type": "object",
                    "properties": {"amount_minor": {"type": "integer", "exclusiveMinimum": 0}},
                    "examples": [{"amount_minor": -5}],
                }
            }
        }
    }
    assert not validator(document, "Money").is_valid({"amount_minor": -5})


def problem_examples(document: dict[str, Any]) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Each named problem example of each operation: method, path, status and its value."""
    for path, by_method in document["paths"].items():
        for method, operation in by_method.items():
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get(PROBLEM_CONTENT_TYPE, {})
                for example in media.get("examples", {}).values():
                    yield method, path, status, example["value"]


@pytest.mark.parametrize("service", SERVICES)
def test_every_problem_example_says_when_it_is_answered(
    documents: dict[str, dict[str, Any]], service: str
) -> None:
    """An example's detail is its class's docstring (kit.errors `example_detail`): one that
    only repeats the title tells an integrator nothing the title did not."""
    repeating = sorted(
        {
            (value["type"].removeprefix(PROBLEM_TYPE_PREFIX), value["title"])
            for _, _, _, value in problem_examples(documents[service])
            if value.get("detail", "").rstrip(".").casefold() == value["title"].casefold()
        }
    )
    assert repeating == [], "give each class a docstring: when it is answered, what to do"
