"""Cut the Kubernetes JSON schemas our manifests need out of a kubernetes-validate wheel.

The wheel ships every kind of every Kubernetes release (tens of megabytes); we commit
only the kinds deploy/k8s/ uses and the definitions they reach, unchanged otherwise.
Run it again when a manifest starts using another kind (see deploy/schemas/README.md):

    pip download --no-deps -d /tmp/wheels kubernetes-validate==1.37.0
    python deploy/schemas/extract_kubernetes.py /tmp/wheels/kubernetes_validate-1.37.0-*.whl
"""

import argparse
import json
import re
import zipfile
from pathlib import Path
from typing import Any

KUBERNETES_VERSION = "v1.33.0"
# The strict flavour forbids unknown fields, so a misspelt key fails validation.
FLAVOUR = "local-strict"
KINDS = (
    "configmap-v1",
    "deployment-apps-v1",
    "horizontalpodautoscaler-autoscaling-v2",
    "job-batch-v1",
    "namespace-v1",
    "poddisruptionbudget-policy-v1",
    "service-v1",
)
DEFINITIONS = "_definitions.json"
_REFERENCE = re.compile(r'"\$ref": "[^"#]*#/\$defs/([^"]+)"')


def _references(schema: Any) -> list[str]:
    return _REFERENCE.findall(json.dumps(schema))


def extract(wheel: Path, output: Path) -> list[str]:
    """Write the kinds and their reachable definitions into `output`; returns the files."""
    prefix = f"kubernetes_validate/kubernetes-json-schema/{KUBERNETES_VERSION}-{FLAVOUR}/"
    with zipfile.ZipFile(wheel) as archive:
        kinds = {kind: json.loads(archive.read(f"{prefix}{kind}.json")) for kind in KINDS}
        definitions = json.loads(archive.read(prefix + DEFINITIONS))
    reachable: set[str] = set()
    pending = [name for schema in kinds.values() for name in _references(schema)]
    while pending:
        name = pending.pop()
        if name not in reachable:
            reachable.add(name)
            pending.extend(_references(definitions["$defs"][name]))
    definitions["$defs"] = {name: definitions["$defs"][name] for name in sorted(reachable)}
    directory = output / f"{KUBERNETES_VERSION}-{FLAVOUR}"
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in {**kinds, DEFINITIONS.removesuffix(".json"): definitions}.items():
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path.name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheel", type=Path, help="a kubernetes_validate-*.whl file")
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "kubernetes", help="target folder"
    )
    arguments = parser.parse_args()
    for name in extract(arguments.wheel, arguments.output):
        print(name)  # noqa: T201 - a command-line tool reports what it wrote


if __name__ == "__main__":
    main()
