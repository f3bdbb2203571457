"""The kit's problems are contract: each takes its slug from `CommonProblem`."""

from kit.testing import assert_problem_registry


def test_every_kit_problem_takes_its_slug_from_common_problem() -> None:
    assert_problem_registry("kit", None)
