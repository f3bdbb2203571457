"""The kit's problems are contract: each takes its slug from `CommonProblem`."""

import pytest
from pydantic import BaseModel, ValidationError

from kit.errors import InvalidRequest, validation_issues
from kit.testing import assert_problem_registry


def test_every_kit_problem_takes_its_slug_from_common_problem() -> None:
    assert_problem_registry("kit", None)


class TestInvalidRequestOfValidation:
    """A model failing validation inside a route answers as kit's request validation does."""

    def test_names_each_field_like_request_validation(self) -> None:
        class Item(BaseModel):
            amount_minor: int

        with pytest.raises(ValidationError) as caught:
            Item.model_validate({"amount_minor": "many"})
        problem = InvalidRequest.of_validation(caught.value, "the item is malformed")
        assert problem.detail == "the item is malformed; see `errors` for each field"
        assert problem.extensions["errors"] == [
            {
                "location": ["amount_minor"],
                "message": "Input should be a valid integer, unable to parse string as an integer",
                "kind": "int_parsing",
            }
        ]

    def test_keeps_the_first_fifty_issues(self) -> None:
        issues = [
            {"loc": ("items", index), "msg": "bad", "type": "value_error"} for index in range(60)
        ]
        assert len(validation_issues(issues)) == 50
