"""Write deploy/k8s/monitoring/alerts.yaml: the alert rules of alerts.yml as a PrometheusRule.

alerts.yml stays the one source of truth (compose's Prometheus loads it as it is); run this
after changing it, and tests/test_observability_config.py checks the two agree:

    python deploy/observability/render_prometheus_rule.py
"""

from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
ALERTS = HERE / "prometheus" / "alerts.yml"
PROMETHEUS_RULE = HERE.parents[1] / "deploy" / "k8s" / "monitoring" / "alerts.yaml"
HEADER = (
    "# Generated from deploy/observability/prometheus/alerts.yml by\n"
    "# deploy/observability/render_prometheus_rule.py: edit that file, not this one.\n"
)


class _BlockDumper(yaml.SafeDumper):
    """Writes multi-line strings (PromQL) as literal blocks, as people write them."""


def _string(dumper: yaml.SafeDumper, value: str) -> Any:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _string)


def render(alerts_yaml: str) -> str:
    """The PrometheusRule manifest carrying the groups of `alerts_yaml`, unchanged."""
    groups = yaml.safe_load(alerts_yaml)["groups"]
    manifest = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sagabank",
            "labels": {
                "app.kubernetes.io/name": "sagabank",
                "app.kubernetes.io/component": "alerts",
            },
        },
        "spec": {"groups": groups},
    }
    return HEADER + yaml.dump(manifest, Dumper=_BlockDumper, sort_keys=False, width=100)


def main() -> None:
    PROMETHEUS_RULE.write_text(render(ALERTS.read_text(encoding="utf-8")), encoding="utf-8")


if __name__ == "__main__":
    main()
