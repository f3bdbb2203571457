"""The notifications service's problems are contract: registered once in
`NotificationsProblem`."""

from contracts.notifications import NotificationsProblem
from kit.testing import assert_problem_registry


def test_each_slug_has_one_problem_class_and_each_class_a_registered_slug() -> None:
    assert_problem_registry("notifications", NotificationsProblem)
