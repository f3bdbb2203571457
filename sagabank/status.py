"""`sagabank status`: each component of a bank, where it answers, whether it is ready (where
it has a probe) and where its metrics are scraped (null where there are none of ours).

Metrics URLs follow the same settings the components read (`<SERVICE>_METRICS_ENABLED`,
`<SERVICE>_METRICS_PORT`, `WORKER_METRICS_ENABLED`): `sagabank up` hands its environment to
its children and records what it derived in its state file, which wins when present.
"""

from collections.abc import Mapping
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from kit.metrics_http import METRICS_PATH
from sagabank.bankclient import service_urls
from sagabank.config import CONSOLE, LauncherSettings

WORKER = "worker"
TEMPORAL = "temporal"
TEMPORAL_UI = "temporal-ui"
CODEC = "codec"
PROBE_TIMEOUT_SECONDS = 2.0
_BOOLEAN = TypeAdapter(bool)


class ComponentStatus(BaseModel):
    """One line of `sagabank status`; `ready` is None where the component has no probe."""

    name: str
    url: str | None
    ready: bool | None
    # What the probe answered: an HTTP status or the error's name.
    probe_answer: str | None
    metrics_url: str | None


class BankStatus(BaseModel):
    """`sagabank status --json`."""

    components: list[ComponentStatus]

    @property
    def ready(self) -> bool:
        return all(component.ready is not False for component in self.components)


def _enabled(environ: Mapping[str, str], variable: str) -> bool:
    """The setting as pydantic reads it in the component (`false`, `0`, `off` turn it off)."""
    value = environ.get(variable)
    if value is None:
        return True
    try:
        return _BOOLEAN.validate_python(value)
    except ValidationError:
        return True  # the component itself refuses to start on such a value


def metrics_urls(
    settings: LauncherSettings, base_urls: Mapping[str, str], environ: Mapping[str, str]
) -> dict[str, str | None]:
    """Where each service (at `base_urls`) and the worker serve their metrics, from the
    settings they read; None where they serve none."""
    urls: dict[str, str | None] = {}
    for service, base_url in base_urls.items():
        prefix = service.upper()
        port = environ.get(f"{prefix}_METRICS_PORT")
        if not _enabled(environ, f"{prefix}_METRICS_ENABLED"):
            urls[service] = None
        elif port:
            urls[service] = f"http://{urlsplit(base_url).hostname}:{port}{METRICS_PATH}"
        else:
            urls[service] = f"{base_url}{METRICS_PATH}"
    urls[CONSOLE] = (
        f"{settings.console_url}{METRICS_PATH}"
        if _enabled(environ, "CONSOLE_METRICS_ENABLED")
        else None
    )
    urls[WORKER] = (
        f"http://{settings.host}:{settings.worker_metrics_port}{METRICS_PATH}"
        if _enabled(environ, "WORKER_METRICS_ENABLED")
        else None
    )
    return urls


def _probe(http: httpx.Client, method: str, url: str, body: object = None) -> tuple[bool, str]:
    """Ready when the probe answers 200; else what it answered."""
    try:
        response = http.request(method, url, json=body)
    except httpx.HTTPError as error:
        return False, type(error).__name__
    return response.status_code == 200, str(response.status_code)


def bank_status(
    settings: LauncherSettings,
    *,
    recorded_metrics_urls: Mapping[str, object] | None,
    environ: Mapping[str, str],
    http: httpx.Client,
) -> BankStatus:
    """Probe every component; metrics URLs as `sagabank up` recorded them, else derived."""
    base_urls = service_urls(settings)
    derived = metrics_urls(settings, base_urls, environ)
    recorded = recorded_metrics_urls or {}
    metrics = {
        name: url if isinstance(url := recorded.get(name, derived[name]), str) else None
        for name in derived
    }
    components: list[ComponentStatus] = []
    for service, base_url in base_urls.items():
        ready, answer = _probe(http, "GET", f"{base_url}/readyz")
        components.append(
            ComponentStatus(
                name=service,
                url=base_url,
                ready=ready,
                probe_answer=answer,
                metrics_url=metrics[service],
            )
        )
    console_ready, console_answer = _probe(http, "GET", f"{settings.console_url}/readyz")
    components.append(
        ComponentStatus(
            name=CONSOLE,
            url=settings.console_url,
            ready=console_ready,
            probe_answer=console_answer,
            metrics_url=metrics[CONSOLE],
        )
    )
    # The worker has no probe of its own: `sagabank up` waits for its task-queue poll.
    components.append(_unprobed(WORKER, None, metrics_url=metrics[WORKER]))
    # Temporal's own metrics (its server's) are not the bank's to list.
    components.append(_unprobed(TEMPORAL, settings.temporal_target, metrics_url=None))
    components.extend(_temporal_ui_and_codec(settings, http))
    return BankStatus(components=components)


def _temporal_ui_and_codec(settings: LauncherSettings, http: httpx.Client) -> list[ComponentStatus]:
    """The local Temporal UI and its codec endpoint; an external Temporal's are its operator's."""
    ui_url = settings.temporal_ui_url
    if ui_url is None:
        return [_unprobed(name, None, metrics_url=None) for name in (TEMPORAL_UI, CODEC)]
    ui_ready, ui_answer = _probe(http, "GET", ui_url)
    codec_ready, codec_answer = _probe(
        http, "POST", f"{settings.codec_url}/decode", {"payloads": []}
    )
    return [
        ComponentStatus(
            name=TEMPORAL_UI, url=ui_url, ready=ui_ready, probe_answer=ui_answer, metrics_url=None
        ),
        ComponentStatus(
            name=CODEC,
            url=settings.codec_url,
            ready=codec_ready,
            probe_answer=codec_answer,
            metrics_url=None,
        ),
    ]


def _unprobed(name: str, url: str | None, *, metrics_url: str | None) -> ComponentStatus:
    return ComponentStatus(
        name=name, url=url, ready=None, probe_answer=None, metrics_url=metrics_url
    )


def status_lines(status: BankStatus) -> list[str]:
    """The table a person reads: component, URL, readiness, metrics URL."""
    lines = [f"{'component':<14} {'url':<32} {'ready':<20} metrics"]
    for component in status.components:
        if component.ready is None:
            ready = "-"
        else:
            ready = "ready" if component.ready else f"NOT READY ({component.probe_answer})"
        lines.append(
            f"{component.name:<14} {component.url or '-':<32} {ready:<20} "
            f"{component.metrics_url or '-'}"
        )
    return lines
