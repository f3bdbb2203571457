"""The transactions service's problems are contract: registered once in
`TransactionsProblem`."""

from contracts.transfers import TransactionsProblem
from kit.testing import assert_problem_registry


def test_each_slug_has_one_problem_class_and_each_class_a_registered_slug() -> None:
    assert_problem_registry("transactions", TransactionsProblem)
