"""The accounts service's problems are contract: each registered once in `AccountsProblem`."""

from contracts.accounts import AccountsProblem
from kit.testing import assert_problem_registry


class TestProblemRegistry:
    def test_each_slug_has_one_problem_class_and_each_class_a_registered_slug(self) -> None:
        assert_problem_registry("accounts", AccountsProblem)
