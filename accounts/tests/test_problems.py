"""The accounts service's problems are contract: each registered once in `AccountsProblem`,
and those with which the ledger refuses a transfer listed in `LEDGER_REFUSALS`, which the
saga treats as final."""

import re

from fastapi.routing import APIRoute

from accounts.ledger.api import router
from contracts.accounts import (
    LEDGER_REFUSALS,
    LEDGER_TRANSFERS_PATH,
    LEDGER_VALIDATIONS_PATH,
    AccountsProblem,
)
from contracts.problem import PROBLEM_TYPE_PREFIX, CommonProblem
from kit.testing import assert_problem_registry

# Client errors that do not refuse the request itself: the caller's credentials (401, 403)
# or "not now" (408, 425, 429). The saga retries them (workflows/activities.py).
_NOT_REFUSALS = frozenset({401, 403, 408, 425, 429})
_DECLARED_TYPE = re.compile(rf"`{re.escape(PROBLEM_TYPE_PREFIX)}([a-z0-9-]+)`")


def _declared_refusals(path: str) -> set[str]:
    """The slugs of the 4xx problems that the POST route at `path` declares in OpenAPI."""
    [route] = [
        route
        for route in router.routes
        if isinstance(route, APIRoute) and route.path == path and "POST" in (route.methods or ())
    ]
    return {
        slug
        for status, response in route.responses.items()
        if isinstance(status, int) and 400 <= status < 500 and status not in _NOT_REFUSALS
        for slug in _DECLARED_TYPE.findall(response["description"])
    }


class TestProblemRegistry:
    def test_each_slug_has_one_problem_class_and_each_class_a_registered_slug(self) -> None:
        assert_problem_registry("accounts", AccountsProblem)

    def test_ledger_refusals_are_what_a_validation_or_a_ledger_transfer_refuses_with(
        self,
    ) -> None:
        declared = _declared_refusals(LEDGER_VALIDATIONS_PATH) | _declared_refusals(
            LEDGER_TRANSFERS_PATH
        )
        assert AccountsProblem.daily_outflow_limit_exceeded in declared
        assert declared - set(CommonProblem) == set(LEDGER_REFUSALS)
        assert len(set(LEDGER_REFUSALS)) == len(LEDGER_REFUSALS)
