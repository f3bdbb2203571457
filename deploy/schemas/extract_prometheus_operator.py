"""Write strict JSON schemas of the Prometheus Operator kinds deploy/k8s/monitoring/ uses.

The schemas come from the PyPI package cloudcoil.models.prometheus_operator (pydantic
models generated from the operator's CRDs); unknown fields are made errors, as in the
Kubernetes schemas' strict flavour, so a misspelt key fails validation. Run it in a
throwaway virtualenv (see deploy/schemas/README.md):

    python -m venv /tmp/crd
    /tmp/crd/bin/pip install cloudcoil.models.prometheus_operator==0.80.1.0
    /tmp/crd/bin/python deploy/schemas/extract_prometheus_operator.py
"""

import argparse
import importlib
import json
from pathlib import Path
from typing import Any

OPERATOR_VERSION = "v0.80.1"
FLAVOUR = "strict"
DIALECT = "https://json-schema.org/draft/2020-12/schema"
# Schema file name (as tests/test_deployment.py looks it up) -> the model's class name.
KINDS = {
    "servicemonitor-monitoring-v1": "ServiceMonitor",
    "podmonitor-monitoring-v1": "PodMonitor",
    "prometheusrule-monitoring-v1": "PrometheusRule",
}


def strict(schema: Any) -> Any:
    """The schema with `additionalProperties: false` on every object that lists properties."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    tightened = {key: strict(value) for key, value in schema.items()}
    if "properties" in tightened and "additionalProperties" not in tightened:
        tightened["additionalProperties"] = False
    return tightened


def extract(output: Path) -> list[str]:
    """Write one schema per kind into `output`; returns the files written."""
    models = importlib.import_module("cloudcoil.models.prometheus_operator.v1")
    directory = output / f"{OPERATOR_VERSION}-{FLAVOUR}"
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, class_name in KINDS.items():
        schema = strict(getattr(models, class_name).model_json_schema(by_alias=True))
        # pydantic writes JSON Schema 2020-12 without saying so; the validator must know.
        schema["$schema"] = DIALECT
        # An id of its own, as the Kubernetes schemas have, to register it under.
        schema["$id"] = f"https://monitoring.coreos.com/{class_name.lower()}/v1"
        path = directory / f"{name}.json"
        path.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path.name)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--output",
        type=Path,
        default=Path(__file__).parent / "prometheus-operator",
        help="target folder",
    )
    for name in extract(parser.parse_args().output):
        print(name)  # noqa: T201 - a command-line tool reports what it wrote


if __name__ == "__main__":
    main()
