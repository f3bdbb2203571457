"""`sagabank token`, `sagabank audit` and `sagabank status` without a bank: the timeline's
merge and formats, paging, tokens asked of a fake issuer, metrics URLs from the settings,
and what the commands say when something is wrong. (tests/test_audit_system.py and
tests/test_metrics_system.py run them against the real bank.)"""

import io
import json
import time
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from pydantic import SecretStr

from contracts.audit import AuditEvent, AuditVerification
from sagabank import audit as trail
from sagabank.bankclient import BankError, customer_token, operator_token, service_urls
from sagabank.cli import main
from sagabank.config import LauncherSettings
from sagabank.localstack.postgres import free_port
from sagabank.progress import REDRAW_INTERVAL_SECONDS, Progress
from sagabank.status import metrics_urls

T0 = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
TRANSFER_ID = uuid.UUID("3f2b8c1e-9d4a-4f6b-8e2c-1a7d5b9c0e11")


def event(service: str, sequence: int, at: datetime, **fields: Any) -> AuditEvent:
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "service": service,
        "sequence": sequence,
        "occurred_at": at,
        "recorded_at": at,
        "actor_id": "sagabank-worker",
        "actor_type": "service",
        "action": "transfer.step.hold",
        "subject_type": "transfer",
        "subject_id": str(TRANSFER_ID),
        "transfer_id": TRANSFER_ID,
        "workflow_id": f"transfer-{TRANSFER_ID}",
        "run_id": "run-1",
        "outcome": "succeeded",
        "previous_hash": "0" * 64,
        "hash": "1" * 64,
    }
    values.update(fields)
    return AuditEvent.model_validate(values)


class TestMerge:
    def test_orders_by_time_then_service_then_sequence(self) -> None:
        accounts_late = event("accounts", 7, T0 + timedelta(seconds=2))
        transactions_first = event("transactions", 3, T0)
        fraud_tie = event("fraud", 9, T0 + timedelta(seconds=1))
        transactions_tie_2 = event("transactions", 5, T0 + timedelta(seconds=1))
        transactions_tie_1 = event("transactions", 4, T0 + timedelta(seconds=1))
        merged = trail.merge(
            [
                trail.Gathered("accounts", [accounts_late], truncated=False),
                trail.Gathered(
                    "transactions",
                    [transactions_first, transactions_tie_2, transactions_tie_1],
                    truncated=False,
                ),
                trail.Gathered("fraud", [fraud_tie], truncated=False),
            ]
        )
        assert merged == [
            transactions_first,
            fraud_tie,
            transactions_tie_1,
            transactions_tie_2,
            accounts_late,
        ]

    def test_times_in_other_zones_compare_as_instants(self) -> None:
        # 13:59:59 at UTC+2 is 11:59:59 UTC: a second before T0, though it reads later.
        earlier_elsewhere = event("fraud", 1, (T0 - timedelta(seconds=1)).astimezone(PLUS_TWO))
        later_in_utc = event("accounts", 1, T0)
        merged = trail.merge(
            [
                trail.Gathered("accounts", [later_in_utc], truncated=False),
                trail.Gathered("fraud", [earlier_elsewhere], truncated=False),
            ]
        )
        assert merged == [earlier_elsewhere, later_in_utc]


class TestTable:
    def test_columns_are_aligned_and_values_whole(self) -> None:
        rows = trail.table(
            [
                event(
                    "transactions",
                    1,
                    T0,
                    action="transfer.requested",
                    actor_type="customer",
                    actor_id="5b1e0c52-8a5e-4a53-9d7e-3c0f1f0e2a10",
                ),
                event("accounts", 2, T0 + timedelta(milliseconds=5), workflow_id=None),
            ]
        )
        header, first, second = rows
        assert header.split() == [
            "time",
            "service",
            "actor",
            "action",
            "subject",
            "outcome",
            "workflow",
            "id",
        ]
        assert first.split() == [
            "2026-03-01T12:00:00.000Z",
            "transactions",
            "customer:5b1e0c52-8a5e-4a53-9d7e-3c0f1f0e2a10",
            "transfer.requested",
            f"transfer:{TRANSFER_ID}",
            "succeeded",
            f"transfer-{TRANSFER_ID}",
        ]
        assert second.split()[0] == "2026-03-01T12:00:00.005Z"
        assert second.split()[-1] == "-"
        # Every column starts at the same place on each line.
        for column in ("service", "actor", "action", "subject", "outcome"):
            start = header.index(column)
            assert first[start - 2 : start] == "  "
            assert second[start - 2 : start] == "  "

    def test_empty_timeline_is_the_header(self) -> None:
        assert trail.table([]) == ["time  service  actor  action  subject  outcome  workflow id"]

    def test_ndjson_is_the_events_as_served(self) -> None:
        events = [event("fraud", 1, T0), event("accounts", 1, T0)]
        lines = trail.ndjson(events)
        assert [AuditEvent.model_validate_json(line) for line in lines] == events
        assert all("\n" not in line for line in lines)


class TestVerificationLines:
    def test_ok_and_broken(self) -> None:
        broken_id = uuid.uuid4()
        lines = trail.verification_lines(
            [
                AuditVerification(service="accounts", events_checked=1200, ok=True),
                AuditVerification(
                    service="transactions",
                    events_checked=41,
                    ok=False,
                    first_broken_event_id=broken_id,
                    first_broken_sequence=42,
                    reason="the event's content does not match its hash",
                ),
            ]
        )
        assert lines[0] == "accounts      ok      1,200 events checked, no checkpoint yet"
        assert lines[1].startswith("transactions  BROKEN  at sequence 42, ")
        assert str(broken_id) in lines[1]
        assert "content does not match its hash" in lines[1]

    def test_a_cut_off_tail_names_the_missing_events(self) -> None:
        lines = trail.verification_lines(
            [
                AuditVerification(
                    service="fraud", events_checked=3, ok=False, first_broken_sequence=4,
                    missing_from_sequence=4, missing_to_sequence=5, checkpoint_sequence=5,
                    reason="events 4..5 are missing: the checkpoint of 2026-11-28T15:00:00+00:00"
                    " saw them",
                ),
                AuditVerification(
                    service="notifications", events_checked=7, ok=True, checkpoint_sequence=7
                ),
            ]
        )  # fmt: skip
        assert lines == [
            "fraud          BROKEN  events 4..5 are missing: the checkpoint of "
            "2026-11-28T15:00:00+00:00 saw them (3 events before them hold)",
            "notifications  ok      7 events checked, checkpoint at sequence 7",
        ]


class TestGather:
    @staticmethod
    def pages(total: int, page_size_max: int) -> tuple[httpx.MockTransport, list[httpx.Request]]:
        requests: list[httpx.Request] = []
        stored = [event("fraud", sequence, T0) for sequence in range(1, total + 1)]

        def answer(request: httpx.Request) -> httpx.Response:
            requests.append(request)
            limit = min(int(request.url.params["limit"]), page_size_max)
            after = int(request.url.params.get("cursor", "0"))
            items = [item for item in stored if item.sequence > after][:limit]
            more = items and items[-1].sequence < total
            return httpx.Response(
                200,
                json={
                    "items": [json.loads(item.model_dump_json()) for item in items],
                    "next_cursor": str(items[-1].sequence) if more else None,
                },
            )

        return httpx.MockTransport(answer), requests

    def test_follows_cursors_and_sends_the_filters(self) -> None:
        transport, requests = self.pages(total=7, page_size_max=3)
        question = trail.Question(
            transfer_id=TRANSFER_ID, actor_id="operator", since=T0, until=T0 + timedelta(days=1)
        )
        with trail.client("a-token", transport=transport) as http:
            gathered = trail.gather(http, "fraud", "http://fraud.test/", question)
        assert [item.sequence for item in gathered.events] == list(range(1, 8))
        assert gathered.truncated is False
        assert len(requests) == 3
        first = requests[0]
        assert first.url.path == "/v1/admin/audit-events"
        assert first.headers["authorization"] == "Bearer a-token"
        assert dict(first.url.params) == {
            "transfer_id": str(TRANSFER_ID),
            "actor_id": "operator",
            "since": "2026-03-01T12:00:00+00:00",
            "until": "2026-03-02T12:00:00+00:00",
            "limit": "500",
        }
        assert requests[1].url.params["cursor"] == "3"

    def test_stops_at_the_bound_and_says_so(self) -> None:
        transport, requests = self.pages(total=50, page_size_max=4)
        with trail.client("a-token", transport=transport) as http:
            gathered = trail.gather(
                http, "fraud", "http://fraud.test", trail.Question(), events_max=10
            )
        assert len(gathered.events) == 10
        assert gathered.truncated is True
        assert [request.url.params["limit"] for request in requests] == ["10", "6", "2"]

    def test_refusal_names_the_missing_scope(self) -> None:
        transport = httpx.MockTransport(lambda request: httpx.Response(403, json={}))
        with (
            trail.client("a-token", transport=transport) as http,
            pytest.raises(BankError) as raised,
        ):
            trail.gather(http, "notifications", "http://n.test", trail.Question())
        assert raised.value.exit_code == 1
        assert "audit:read" in str(raised.value)


class TestTokens:
    def test_operator_uses_client_credentials_with_basic_auth(self) -> None:
        seen: list[httpx.Request] = []

        def issuer(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(
                200,
                json={
                    "access_token": "the-token",
                    "token_type": "Bearer",
                    "expires_in": 900,
                    "scope": "audit:read",
                },
            )

        token = operator_token(
            "http://accounts.test/",
            "operator",
            SecretStr("s3cret-s3cret-s3cret"),
            transport=httpx.MockTransport(issuer),
        )
        assert token == "the-token"
        [request] = seen
        assert str(request.url) == "http://accounts.test/v1/oauth/token"
        assert request.content == b"grant_type=client_credentials"
        assert request.headers["authorization"].startswith("Basic ")

    def test_refusal_quotes_the_oauth_error_never_the_secret(self) -> None:
        def issuer(request: httpx.Request) -> httpx.Response:
            return httpx.Response(
                400,
                json={
                    "type": "urn:sagabank:problem:invalid-grant",
                    "title": "Invalid grant",
                    "status": 400,
                    "detail": "wrong email or password",
                    "error": "invalid_grant",
                },
                headers={"content-type": "application/problem+json"},
            )

        with pytest.raises(BankError) as raised:
            customer_token(
                "http://accounts.test",
                "ann@example.com",
                SecretStr("hunter2-hunter2"),
                transport=httpx.MockTransport(issuer),
            )
        assert raised.value.exit_code == 1
        assert "invalid_grant: wrong email or password" in str(raised.value)
        assert "hunter2" not in str(raised.value)


class TestCommands:
    def test_token_needs_exactly_one_principal(self) -> None:
        runner = CliRunner()
        neither = runner.invoke(main, ["token"])
        both = runner.invoke(main, ["token", "--operator", "--customer", "ann@example.com"])
        assert neither.exit_code == both.exit_code == 2
        assert "choose one of --operator and --customer EMAIL" in neither.output

    def test_token_without_a_bank_says_so(self, tmp_path: Path) -> None:
        environment = {
            "SAGABANK_STATE_DIR": str(tmp_path / "state"),
            "SAGABANK_ACCOUNTS_PORT": str(free_port()),
        }
        result = CliRunner().invoke(main, ["token", "--operator"], env=environment)
        assert result.exit_code == 2
        assert "cannot reach the token endpoint" in result.output
        assert "sagabank-dev-operator-secret" not in result.output

    def test_verify_takes_no_filter(self) -> None:
        result = CliRunner().invoke(main, ["audit", "--verify", "--transfer", str(TRANSFER_ID)])
        assert result.exit_code == 2
        assert "takes no filter" in result.output

    def test_time_must_be_iso_8601(self) -> None:
        result = CliRunner().invoke(main, ["audit", "--since", "yesterday"])
        assert result.exit_code == 2
        assert "not an ISO 8601 time" in result.output

    def test_urls_come_from_the_state_file(self, tmp_path: Path) -> None:
        state_dir = tmp_path / "state"
        state_dir.mkdir()
        (state_dir / "up.json").write_text(
            json.dumps({"pid": 1, "children": {}, "services": {"accounts": "http://a.test:9/"}})
        )
        urls = service_urls(LauncherSettings(state_dir=state_dir, fraud_port=9103))
        assert urls["accounts"] == "http://a.test:9"
        assert urls["fraud"] == "http://127.0.0.1:9103"


class TestStatus:
    BASE_URLS = {
        "accounts": "http://127.0.0.1:8001",
        "transactions": "http://127.0.0.1:8002",
        "fraud": "http://10.0.0.7:8003",
        "notifications": "http://127.0.0.1:8004",
    }

    def test_metrics_urls_follow_the_components_settings(self) -> None:
        environ = {
            "ACCOUNTS_METRICS_ENABLED": "false",
            "FRAUD_METRICS_PORT": "9103",
            "WORKER_METRICS_ENABLED": "0",
        }
        urls = metrics_urls(LauncherSettings(), self.BASE_URLS, environ)
        assert urls == {
            "accounts": None,
            "transactions": "http://127.0.0.1:8002/metrics",
            "fraud": "http://10.0.0.7:9103/metrics",
            "notifications": "http://127.0.0.1:8004/metrics",
            "console": "http://127.0.0.1:8005/metrics",
            "worker": None,
        }
        defaults = metrics_urls(LauncherSettings(worker_metrics_port=9464), self.BASE_URLS, {})
        assert defaults["accounts"] == "http://127.0.0.1:8001/metrics"
        assert defaults["worker"] == "http://127.0.0.1:9464/metrics"

    def test_json_lists_every_component_and_a_bank_down_is_not_ready(self, tmp_path: Path) -> None:
        state_dir = tmp_path / "state"
        state_dir.mkdir()
        fraud = f"http://127.0.0.1:{free_port()}"
        recorded_metrics = {"fraud": f"{fraud}/metrics", "worker": "http://127.0.0.1:1/metrics"}
        (state_dir / "up.json").write_text(
            json.dumps(
                {
                    "pid": 1,
                    "children": {},
                    "services": {"fraud": fraud},
                    "metrics": recorded_metrics,
                }
            )
        )
        environment = {
            "SAGABANK_STATE_DIR": str(state_dir),
            "SAGABANK_CODEC_PORT": str(free_port()),
            "SAGABANK_TEMPORAL_UI_PORT": str(free_port()),
            **{f"SAGABANK_{name.upper()}_PORT": str(free_port()) for name in ("accounts",
               "transactions", "notifications", "console")},
        }  # fmt: skip
        result = CliRunner().invoke(main, ["status", "--json"], env=environment)
        assert result.exit_code == 1, result.output
        components = {item["name"]: item for item in json.loads(result.output)["components"]}
        assert list(components) == [
            "accounts", "transactions", "fraud", "notifications", "console",
            "worker", "temporal", "temporal-ui", "codec",
        ]  # fmt: skip
        assert components["console"]["ready"] is False
        assert components["fraud"]["url"] == fraud
        assert components["fraud"]["ready"] is False
        assert components["fraud"]["probe_answer"] == "ConnectError"
        assert components["fraud"]["metrics_url"] == recorded_metrics["fraud"]
        assert components["worker"]["metrics_url"] == recorded_metrics["worker"]
        assert components["worker"]["ready"] is None
        assert components["temporal"]["metrics_url"] is None
        assert components["codec"]["ready"] is False

        table = CliRunner().invoke(main, ["status"], env=environment)
        assert table.exit_code == 1
        fraud_line = next(line for line in table.output.splitlines() if line.startswith("fraud"))
        assert fraud_line.split() == [
            "fraud",
            fraud,
            "NOT",
            "READY",
            "(ConnectError)",
            recorded_metrics["fraud"],
        ]

    def test_without_a_bank_says_so(self, tmp_path: Path) -> None:
        environment = {"SAGABANK_STATE_DIR": str(tmp_path / "nothing")}
        result = CliRunner().invoke(main, ["status", "--json"], env=environment)
        assert result.exit_code == 1
        assert "no bank is running" in result.output


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestProgress:
    def test_on_a_terminal_the_line_is_redrawn_then_cleared(self) -> None:
        terminal = _Terminal()
        with Progress("exporting", stream=terminal) as progress:
            progress.note("accounts 12 events")
            deadline = time.monotonic() + 5
            while "accounts 12 events" not in terminal.getvalue():
                assert time.monotonic() < deadline, terminal.getvalue()
                time.sleep(0.01)
        written = terminal.getvalue()
        assert written.startswith("\r\x1b[Kexporting: accounts 12 events (")
        assert written.endswith("\r\x1b[K")

    def test_elsewhere_nothing_is_written(self) -> None:
        pipe = io.StringIO()
        with Progress("exporting", stream=pipe) as progress:
            progress.note("accounts 12 events")
            time.sleep(3 * REDRAW_INTERVAL_SECONDS)
        assert pipe.getvalue() == ""

    def test_export_takes_only_a_time_range(self) -> None:
        result = CliRunner().invoke(
            main, ["audit", "--export", "-", "--transfer", str(TRANSFER_ID)]
        )
        assert result.exit_code == 2
        assert "--export takes --since and --until only" in result.output
