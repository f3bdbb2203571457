"""The observability artefacts against the code: dashboards, alert rules, scrape config, monitors.

Every metric a panel or an alert names must be one the processes export, with labels and
label values the code can emit: each PromQL expression is parsed with promql-parser and its
selectors are checked against prometheus_client's registry, filled by importing the six
metric modules. The mutation tests break a copy of a file and show the checks report it.
"""

import copy
import importlib
import importlib.util
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase

from contracts.fraud import FraudDecision, FraudRuleCode
from contracts.transfers import TransferStatus
from kit.ratelimit import MONEY_BUCKET, TOKEN_BUCKET
from sagabank.config import SERVICES, LauncherSettings
from tests.test_deployment import (
    Document,
    Problems,
    load_compose,
    load_yaml,
)
from workflows.config import Settings as WorkerSettings

ROOT = Path(__file__).resolve().parents[1]
OBSERVABILITY = ROOT / "deploy" / "observability"
ALERTS = OBSERVABILITY / "prometheus" / "alerts.yml"
SCRAPE_CONFIG = OBSERVABILITY / "prometheus" / "prometheus.yml"
GRAFANA = OBSERVABILITY / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "datasources.yml"
DASHBOARD_PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "dashboards.yml"
MONITORING = ROOT / "deploy" / "k8s" / "monitoring"
RENDER_PROMETHEUS_RULE = OBSERVABILITY / "render_prometheus_rule.py"

METRIC_MODULES = (
    "kit.metrics",
    "transactions.metrics",
    "workflows.metrics",
    "accounts.ledger.metrics",
    "fraud.metrics",
    "notifications.metrics",
)
# The sample names each metric type exposes beside its family's name.
SAMPLE_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "summary": ("", "_count", "_sum", "_created"),
    "gauge": ("",),
    "info": ("_info",),
    "unknown": ("",),
}
# Labels every scraped series carries (Prometheus adds job and instance) or a sample adds.
TARGET_LABELS = frozenset({"job", "instance"})
SAMPLE_LABELS = {"_bucket": frozenset({"le"})}
# Series Prometheus writes itself about each scrape.
PROMETHEUS_SERIES = frozenset({"up"})
# The worker's metrics port when WORKER_METRICS_PORT is not set.
WORKER_METRICS_PORT_DEFAULT = 9464
TERMINAL_STATUSES = frozenset(status.value for status in TransferStatus if status.is_terminal)
# The label values the code can emit, where they are a closed set (family name, label).
LABEL_VALUES: dict[tuple[str, str], frozenset[str]] = {
    ("sagabank_transfers_ended", "status"): TERMINAL_STATUSES,
    ("sagabank_transfer_duration_seconds", "status"): TERMINAL_STATUSES,
    ("sagabank_saga_step_duration_seconds", "outcome"): frozenset({"succeeded", "failed"}),
    ("sagabank_webhook_delivery_attempts", "outcome"): frozenset(
        {"succeeded", "failed", "gone", "abandoned"}
    ),
    ("sagabank_emails", "outcome"): frozenset({"sent", "failed"}),
    ("sagabank_rate_limit_rejections", "limit"): frozenset({MONEY_BUCKET, TOKEN_BUCKET, "login"}),
    ("sagabank_fraud_decisions", "outcome"): frozenset(
        decision.value for decision in FraudDecision
    ),
    ("sagabank_fraud_rule_hits", "rule"): frozenset(rule.value for rule in FraudRuleCode),
}
# Every `service` label names one of ours; `job` is a component or Prometheus itself.
ANY_METRIC_LABEL_VALUES = {
    "service": frozenset(SERVICES),
    "job": frozenset({*SERVICES, "worker", "prometheus"}),
}
# Grafana's interval variables, replaced by a duration before parsing.
GRAFANA_INTERVAL = re.compile(r"\$\{?__(?:rate_interval|interval|range)\}?")
SEVERITIES = frozenset({"critical", "warning"})


# -- what the code exports ---------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    """One sample name the processes export: its family and the labels its series carry
    (None when the family is a custom collector whose labels cannot be read unfilled)."""

    family: str
    labels: frozenset[str] | None


def exported_samples() -> dict[str, Exported]:
    """Every sample name in prometheus_client's registry once the six modules are imported."""
    label_names: dict[str, frozenset[str]] = {}
    for module_name in METRIC_MODULES:
        for value in vars(importlib.import_module(module_name)).values():
            if isinstance(value, MetricWrapperBase):
                for family in value.describe():
                    # Reading the wrapper's label names: an unfilled family has no sample.
                    label_names[family.name] = frozenset(value._labelnames)
    samples: dict[str, Exported] = {}
    for family in REGISTRY.collect():
        labels = label_names.get(family.name)
        if labels is None and family.samples:
            labels = frozenset(family.samples[0].labels)
        for suffix in SAMPLE_SUFFIXES.get(family.type, ("",)):
            extra = SAMPLE_LABELS.get(suffix, frozenset())
            samples[family.name + suffix] = Exported(
                family.name, None if labels is None else labels | extra | TARGET_LABELS
            )
    for name in PROMETHEUS_SERIES:
        samples[name] = Exported(name, TARGET_LABELS)
    return samples


# -- what the artefacts query --------------------------------------------------------------


def parse_promql(expression: str) -> promql_parser.Expr:
    """A dashboard's or a rule's expression, parsed; Grafana's interval variables as 5m."""
    return promql_parser.parse(GRAFANA_INTERVAL.sub("5m", expression))


def selectors(expression: promql_parser.Expr) -> list[promql_parser.VectorSelector]:
    found: list[promql_parser.VectorSelector] = []

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expression, visit)
    return found


def _value_problems(where: str, matcher: Any, allowed: frozenset[str]) -> Problems:
    value = str(matcher.value)
    if "$" in value:  # a dashboard variable: its values come from the series themselves
        return []
    if matcher.op in (promql_parser.MatchOp.Equal, promql_parser.MatchOp.NotEqual):
        candidates = [value]
    else:
        # Each alternative of a plain `a|b` must be a value; any other regex must match one.
        plain = re.fullmatch(r"[\w|]+", value) is not None
        candidates = value.split("|") if plain else []
        if not plain and not any(re.fullmatch(value, known) for known in allowed):
            return [f"{where}: {matcher.name}=~{value!r} matches no value the code emits"]
    return [
        f"{where}: {matcher.name}={candidate!r} is not one of {sorted(allowed)}"
        for candidate in candidates
        if candidate not in allowed
    ]


def selector_problems(where: str, expression: str, exported: dict[str, Exported]) -> Problems:
    """Each selector names an exported sample, with its labels and values the code emits."""
    try:
        parsed = parse_promql(expression)
    except ValueError as error:
        return [f"{where}: does not parse: {error}"]
    problems: Problems = []
    for selector in selectors(parsed):
        name = selector.name
        if not name:
            problems.append(f"{where}: a selector without a metric name")
            continue
        sample = exported.get(name)
        if sample is None:
            problems.append(f"{where}: {name} is not a metric the code exports")
            continue
        for matcher in selector.matchers.matchers:
            if sample.labels is not None and matcher.name not in sample.labels:
                problems.append(f"{where}: {name} has no label {matcher.name!r}")
                continue
            allowed = LABEL_VALUES.get(
                (sample.family, matcher.name), ANY_METRIC_LABEL_VALUES.get(matcher.name)
            )
            if allowed is not None:
                problems += _value_problems(f"{where}: {name}", matcher, allowed)
    return problems


def load_alerts() -> Document:
    alerts: Document = load_yaml(ALERTS)
    return alerts


def alert_rules(alerts: Document) -> Iterator[Document]:
    for group in alerts["groups"]:
        yield from group["rules"]


def load_dashboards() -> dict[str, Document]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def dashboard_panels(dashboard: Document) -> Iterator[Document]:
    """Every panel, those inside collapsed rows included."""
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])


def alert_problems(alerts: Document, exported: dict[str, Exported]) -> Problems:
    problems: Problems = []
    names: set[str] = set()
    for rule in alert_rules(alerts):
        name = str(rule.get("alert") or rule.get("record"))
        where = f"alert {name}"
        if name in names:
            problems.append(f"{where}: named twice")
        names.add(name)
        if "alert" not in rule:
            continue
        if not rule.get("for"):
            problems.append(f"{where}: no `for`: one bad scrape would page")
        if rule.get("labels", {}).get("severity") not in SEVERITIES:
            problems.append(f"{where}: severity is none of {sorted(SEVERITIES)}")
        for annotation in ("summary", "description"):
            if not rule.get("annotations", {}).get(annotation):
                problems.append(f"{where}: no {annotation} annotation")
        problems += selector_problems(where, str(rule.get("expr", "")), exported)
    return problems


def dashboard_problems(dashboard: Document, exported: dict[str, Exported]) -> Problems:
    problems: Problems = []
    if not dashboard.get("uid") or not dashboard.get("title"):
        problems.append("the dashboard has no uid or no title")
    identifiers: set[int] = set()
    for panel in dashboard_panels(dashboard):
        where = f"panel {panel.get('id')} {panel.get('title')!r}"
        if panel.get("id") in identifiers:
            problems.append(f"{where}: its id is another panel's")
        identifiers.add(panel.get("id", -1))
        if panel.get("type") == "row":
            continue
        expressions = [str(t.get("expr", "")) for t in panel.get("targets", [])]
        if not [expression for expression in expressions if expression]:
            problems.append(f"{where}: no query")
        for expression in expressions:
            problems += selector_problems(where, expression, exported)
    return problems


@pytest.fixture(scope="module")
def exported() -> dict[str, Exported]:
    return exported_samples()


# -- the checks ----------------------------------------------------------------------------


class TestExported:
    def test_registry_holds_the_catalogue(self, exported: dict[str, Exported]) -> None:
        # The checks below are only as good as this list: the catalogue and the defaults.
        assert exported["sagabank_transfers_ended_total"].labels == frozenset(
            {"status", "job", "instance"}
        )
        assert "le" in (exported["sagabank_saga_step_duration_seconds_bucket"].labels or ())
        assert "sagabank_ledger_open_holds" in exported
        assert "process_resident_memory_bytes" in exported
        assert "up" in exported


class TestAlerts:
    def test_valid(self, exported: dict[str, Exported]) -> None:
        assert alert_problems(load_alerts(), exported) == []

    def test_cover_the_issue(self) -> None:
        expressions = " ".join(str(rule["expr"]) for rule in alert_rules(load_alerts()))
        for metric in (
            "up",
            "sagabank_saga_step_duration_seconds_count",
            "sagabank_ledger_oldest_open_hold_age_seconds",
            "sagabank_outbox_oldest_pending_age_seconds",
            "sagabank_webhook_delivery_attempts_total",
            "sagabank_http_request_duration_seconds_bucket",
            "sagabank_ledger_invariants_hold",
            "sagabank_ledger_invariant_check_timestamp_seconds",
        ):
            assert re.search(rf"\b{metric}\b", expressions), metric

    def test_hold_thresholds_follow_the_settings(self) -> None:
        # The rules carry numbers; these are the settings' defaults they stand for.
        transactions = importlib.import_module("transactions.config").Settings.model_fields
        review_seconds = transactions["review_timeout_seconds"].default
        grace_seconds = transactions["hold_grace_seconds"].default
        rules = {rule["alert"]: str(rule["expr"]) for rule in alert_rules(load_alerts())}
        assert rules["SagabankHoldOutlivedReview"].endswith(f"> {review_seconds}")
        assert rules["SagabankHoldPastExpiry"].endswith(f"> {review_seconds + grace_seconds}")

    def test_stale_check_alert_leaves_the_periodic_check_room(self) -> None:
        # Several missed checks (a restart, a failover) before the alert, not one.
        accounts = importlib.import_module("accounts.config").Settings.model_fields
        interval_seconds = accounts["invariant_check_interval_seconds"].default
        rules = {rule["alert"]: str(rule["expr"]) for rule in alert_rules(load_alerts())}
        stale = re.search(r"> (\d+)$", rules["SagabankLedgerInvariantCheckStale"].strip())
        assert stale is not None
        assert interval_seconds * 4 <= int(stale.group(1))


class TestDashboards:
    def test_valid(self, exported: dict[str, Exported]) -> None:
        dashboards = load_dashboards()
        assert dashboards, f"no dashboard in {DASHBOARDS}"
        for name, dashboard in dashboards.items():
            assert dashboard_problems(dashboard, exported) == [], name

    def test_rows_answer_the_issue(self) -> None:
        [dashboard] = load_dashboards().values()
        rows = [panel["title"] for panel in dashboard["panels"] if panel["type"] == "row"]
        assert rows == [
            "Transfers",
            "Saga steps",
            "Webhooks and notifications",
            "HTTP: errors and latency",
            "Database pools and audit",
            "Fraud",
            "Ledger",
            "Rate limits",
        ]

    def test_datasources_are_provisioned(self) -> None:
        provisioned = {
            source["uid"]: source["type"] for source in load_yaml(DATASOURCES)["datasources"]
        }
        assert set(provisioned.values()) == {"prometheus", "jaeger"}
        for dashboard in load_dashboards().values():
            for panel in dashboard_panels(dashboard):
                source = panel.get("datasource")
                if source is not None:
                    assert provisioned.get(source["uid"]) == source["type"], panel["title"]

    def test_provider_loads_the_folder_compose_mounts(self) -> None:
        [provider] = load_yaml(DASHBOARD_PROVIDERS)["providers"]
        grafana = load_compose()["services"]["grafana"]
        mounts = {
            str(volume).split(":")[1]: str(volume).split(":")[0] for volume in grafana["volumes"]
        }
        folder = mounts[provider["options"]["path"]]
        assert (ROOT / folder).resolve() == DASHBOARDS.resolve()


class TestScrapeConfig:
    def test_scrapes_every_process_and_itself(self) -> None:
        jobs = {
            job["job_name"]: [
                target for config in job["static_configs"] for target in config["targets"]
            ]
            for job in load_yaml(SCRAPE_CONFIG)["scrape_configs"]
        }
        launcher = LauncherSettings.model_construct()
        expected = {
            service: [f"{service}:{launcher.service_port(service)}"] for service in SERVICES
        }
        worker_port = WorkerSettings.model_fields.get("metrics_port")
        port = WORKER_METRICS_PORT_DEFAULT if worker_port is None else worker_port.default
        expected |= {"worker": [f"worker:{port}"], "prometheus": ["localhost:9090"]}
        assert jobs == expected

    def test_loads_the_alerts(self) -> None:
        assert load_yaml(SCRAPE_CONFIG)["rule_files"] == [ALERTS.name]


class TestKubernetesMonitoring:
    def test_prometheus_rule_is_rendered_from_the_alerts(self) -> None:
        spec = importlib.util.spec_from_file_location(
            "render_prometheus_rule", RENDER_PROMETHEUS_RULE
        )
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        committed = (MONITORING / "alerts.yaml").read_text(encoding="utf-8")
        assert committed == module.render(ALERTS.read_text(encoding="utf-8")), (
            "deploy/k8s/monitoring/alerts.yaml is stale: "
            "run python deploy/observability/render_prometheus_rule.py"
        )

    def test_kustomization_lists_every_manifest(self) -> None:
        kustomization = load_yaml(MONITORING / "kustomization.yaml")
        on_disk = {path.name for path in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
        assert set(kustomization["resources"]) == on_disk
        assert kustomization["namespace"] == "sagabank"


# -- the checks catch what they should -------------------------------------------------------


def _rename_in_alert(alerts: Document) -> None:
    rule = next(r for r in alert_rules(alerts) if r["alert"] == "SagabankOutboxBacklogOld")
    rule["expr"] = rule["expr"].replace("sagabank_outbox_oldest", "sagabank_outbox_oldset")


def _unknown_status(alerts: Document) -> None:
    rule = next(alert_rules(alerts))
    rule["expr"] = 'sum(rate(sagabank_transfers_ended_total{status="failed"}[5m])) > 0'


def _unknown_label(alerts: Document) -> None:
    rule = next(alert_rules(alerts))
    rule["expr"] = 'sum(rate(sagabank_transfers_ended_total{outcome="completed"}[5m])) > 0'


def _counter_without_total(alerts: Document) -> None:
    rule = next(alert_rules(alerts))
    rule["expr"] = "rate(sagabank_webhook_delivery_attempts[5m]) > 0"


def _no_for(alerts: Document) -> None:
    next(alert_rules(alerts)).pop("for")


def _no_severity(alerts: Document) -> None:
    next(alert_rules(alerts))["labels"].pop("severity")


def _no_summary(alerts: Document) -> None:
    next(alert_rules(alerts))["annotations"].pop("summary")


def _regex_matching_nothing(alerts: Document) -> None:
    rule = next(alert_rules(alerts))
    rule["expr"] = 'sum(rate(sagabank_emails_total{outcome=~"sent|bounced"}[5m])) > 0'


class TestChecksCatch:
    @pytest.mark.parametrize(
        ("breakage", "expected"),
        [
            (_rename_in_alert, "sagabank_outbox_oldset_pending_age_seconds is not a metric"),
            (_unknown_status, "status='failed' is not one of"),
            (_unknown_label, "sagabank_transfers_ended_total has no label 'outcome'"),
            (_counter_without_total, "sagabank_webhook_delivery_attempts is not a metric"),
            (_no_for, "no `for`"),
            (_no_severity, "severity is none of"),
            (_no_summary, "no summary annotation"),
            (_regex_matching_nothing, "outcome='bounced' is not one of"),
        ],
    )
    def test_alert_breakage(
        self, breakage: Callable[[Document], None], expected: str, exported: dict[str, Exported]
    ) -> None:
        alerts = copy.deepcopy(load_alerts())
        breakage(alerts)
        problems = alert_problems(alerts, exported)
        assert any(expected in problem for problem in problems), problems

    def test_misspelt_panel_query(self, exported: dict[str, Exported]) -> None:
        dashboard = copy.deepcopy(next(iter(load_dashboards().values())))
        panel = next(p for p in dashboard_panels(dashboard) if p.get("targets"))
        panel["targets"][0]["expr"] = "sum(rate(sagabank_transfer_ended_total[$__rate_interval]))"
        problems = dashboard_problems(dashboard, exported)
        assert any("sagabank_transfer_ended_total is not a metric" in p for p in problems)

    def test_panel_without_query(self, exported: dict[str, Exported]) -> None:
        dashboard = copy.deepcopy(next(iter(load_dashboards().values())))
        panel = next(p for p in dashboard_panels(dashboard) if p.get("targets"))
        panel["targets"] = [{"refId": "A"}]
        problems = dashboard_problems(dashboard, exported)
        assert any(p.endswith("no query") for p in problems), problems
