"""Every problem type says when the bank answers it and what to do: its class's docstring,
which the OpenAPI examples show as the detail (docs/decisions/0043). The spec test
(tests/test_openapi_examples.py) sees only the types a service's routes list; this one sees
every `ProblemError` subclass the project defines, the console's included."""

import importlib
import pkgutil
from collections.abc import Iterator

from kit.errors import ProblemError

# The packages that define problem types; their tests and migrations define none.
PACKAGES = ("kit", "contracts", "accounts", "transactions", "fraud", "notifications", "console")


def _project_modules() -> Iterator[str]:
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        for module in pkgutil.walk_packages(package.__path__, f"{package_name}."):
            if ".tests" in module.name or ".migrations" in module.name:
                continue
            if module.name.endswith("__main__"):
                continue
            yield module.name


def _subclasses(cls: type[ProblemError]) -> Iterator[type[ProblemError]]:
    for subclass in cls.__subclasses__():
        yield subclass
        yield from _subclasses(subclass)


def test_every_problem_type_has_a_docstring() -> None:
    for module in _project_modules():
        importlib.import_module(module)
    problem_types = {
        cls for cls in _subclasses(ProblemError) if cls.__module__.split(".")[0] in PACKAGES
    }
    undocumented = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in problem_types
        if ".tests" not in cls.__module__ and not (cls.__doc__ or "").strip()
    )

    assert len(problem_types) > 80, "the walk found too few problem types to be trusted"
    assert undocumented == []
