import re
from pathlib import Path

import httpx
import pytest

from contracts.fraud import FraudRuleCode
from contracts.money import MINOR_UNIT_EXPONENTS
from fraud.config import Settings
from fraud.main import MIGRATIONS_PATH, create_app
from fraud.ruleset import DEFAULT_RULESET_PATH, Ruleset, RulesetError
from fraud.tests.support import clients
from kit.testing import TestIssuer

# create_app refuses a ruleset before it touches the database, so none is needed here.
UNUSED_DATABASE_URL = "postgresql://fraud@localhost:1/unused"

DEFAULT_TEXT = DEFAULT_RULESET_PATH.read_text(encoding="utf-8")


def _edited(old: str, new: str) -> str:
    assert DEFAULT_TEXT.count(old) == 1, f"the default ruleset no longer holds {old!r}"
    return DEFAULT_TEXT.replace(old, new)


class TestDefaultRuleset:
    def test_valid(self, ruleset: Ruleset) -> None:
        assert ruleset.version
        assert 0 < ruleset.review_at < ruleset.decline_at <= 1000

    def test_covers_every_accepted_currency(self, ruleset: Ruleset) -> None:
        for rule in (
            ruleset.rules.large_amount,
            ruleset.rules.very_large_amount,
            ruleset.rules.first_counterparty_large,
            ruleset.rules.brand_new_account,
        ):
            assert set(rule.threshold_minor) == set(MINOR_UNIT_EXPONENTS)

    def test_documented_euro_thresholds(self, ruleset: Ruleset) -> None:
        assert ruleset.rules.large_amount.threshold_minor["EUR"] == 1_000_000
        assert ruleset.rules.very_large_amount.threshold_minor["EUR"] == 5_000_000
        assert ruleset.rules.large_amount.points >= ruleset.review_at
        assert ruleset.rules.very_large_amount.points >= ruleset.decline_at
        assert ruleset.rules.deny_list.points >= ruleset.decline_at

    def test_ten_thousand_euros_from_a_new_account_stay_below_decline(
        self, ruleset: Ruleset
    ) -> None:
        # The saga's and the system tests' review path: large amount, new recipient, new
        # account, all at once, must land in review, not decline.
        rules = ruleset.rules
        points = (
            rules.large_amount.points
            + rules.first_counterparty_large.points
            + rules.brand_new_account.points
        )
        assert ruleset.review_at <= points < ruleset.decline_at


class TestBrokenRulesetRefusedAtStartup:
    @pytest.mark.parametrize(
        ("text", "complaint"),
        [
            pytest.param("version = \n", "not valid TOML", id="not-toml"),
            pytest.param(
                _edited("[rules.velocity]", "[rules.speed]"), "velocity", id="rule-missing"
            ),
            pytest.param(
                _edited("points = 200\nhour", "points = 200.0\nhour"), "points", id="float-points"
            ),
            pytest.param(
                _edited("points = 200\nhour", "points = 1001\nhour"),
                "points",
                id="points-above-max",
            ),
            pytest.param(
                _edited("day_transfers_min = 20", "day_transfers_min = 4"),
                "day_transfers_min must not be below hour_transfers_min",
                id="day-below-hour",
            ),
            pytest.param(
                _edited("history_min = 5", "history_min = 51"), "history_min", id="history-too-long"
            ),
            pytest.param(
                _edited("age_seconds_max = 604_800", "age_seconds_max = 0"),
                "age_seconds_max",
                id="zero-age",
            ),
            pytest.param(
                _edited("[rules.deny_list]\npoints = 1000\n", ""), "deny_list", id="no-deny-list"
            ),
            pytest.param(
                _edited("review_at = 400", "review_at = 800"),
                "review_at must be below decline_at",
                id="review-not-below-decline",
            ),
            pytest.param(
                _edited('version = "2026.11.2"', 'version = ""'), "version", id="empty-version"
            ),
            pytest.param(
                _edited("JPY = 1_600_000  # 1,600,000 JPY\n", ""),
                "lacks currencies: JPY",
                id="currency-missing",
            ),
            pytest.param(
                _edited(
                    "[rules.large_amount.threshold_minor]\n",
                    "[rules.large_amount.threshold_minor]\nXTS = 100\n",
                ),
                "XTS",
                id="unknown-currency",
            ),
            pytest.param(
                _edited("EUR = 200_000  # 2,000 EUR", "EUR = 0"), "EUR", id="zero-threshold"
            ),
            pytest.param(
                _edited("EUR = 5_000_000  # 50,000 EUR", "EUR = 1_000_000"),
                "very_large_amount threshold for EUR must exceed",
                id="very-large-not-above-large",
            ),
            pytest.param(
                _edited("multiple_major = 1000", 'multiple_major = "1000"'),
                "multiple_major",
                id="string-parameter",
            ),
            pytest.param(DEFAULT_TEXT + "\nshadow = true\n", "shadow", id="unknown-key"),
        ],
    )
    def test_refused(self, tmp_path: Path, text: str, complaint: str) -> None:
        path = tmp_path / "ruleset.toml"
        path.write_text(text, encoding="utf-8")
        settings = Settings(database_url=UNUSED_DATABASE_URL, ruleset_path=path)
        with pytest.raises(RulesetError, match=re.escape(str(path))) as refused:
            create_app(settings)
        assert complaint in str(refused.value)

    def test_missing_file_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "absent.toml"
        settings = Settings(database_url=UNUSED_DATABASE_URL, ruleset_path=path)
        with pytest.raises(RulesetError, match="cannot read fraud ruleset"):
            create_app(settings)

    def test_oversized_file_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "huge.toml"
        path.write_text(DEFAULT_TEXT + "#" * 300_000 + "\n", encoding="utf-8")
        settings = Settings(database_url=UNUSED_DATABASE_URL, ruleset_path=path)
        with pytest.raises(RulesetError, match="bytes"):
            create_app(settings)


class TestCurrentRuleset:
    async def test_valid(self, operator: httpx.AsyncClient, ruleset: Ruleset) -> None:
        response = await operator.get("/v1/rulesets/current")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["version"] == ruleset.version
        assert body["review_at"] == ruleset.review_at
        assert body["decline_at"] == ruleset.decline_at
        assert body["score_max"] == 1000
        rules = {rule["code"]: rule for rule in body["rules"]}
        assert set(rules) == set(FraudRuleCode)
        assert rules["large_amount"]["points"] == ruleset.rules.large_amount.points
        assert rules["large_amount"]["parameters"]["threshold_minor"]["EUR"] == 1_000_000
        assert rules["velocity"]["parameters"] == {
            "hour_transfers_min": ruleset.rules.velocity.hour_transfers_min,
            "day_transfers_min": ruleset.rules.velocity.day_transfers_min,
        }
        assert rules["brand_new_account"]["parameters"]["age_seconds_max"] == 7 * 24 * 3600
        assert rules["round_amount"]["parameters"] == {
            "multiple_major": 1000,
            "earlier_transfers_min": ruleset.rules.round_amount.earlier_transfers_min,
        }
        assert rules["deny_list"]["points"] == ruleset.rules.deny_list.points

    async def test_ruleset_path_setting(
        self, tmp_path: Path, database_factory: object, issuer: TestIssuer
    ) -> None:
        path = tmp_path / "ruleset.toml"
        path.write_text(_edited('version = "2026.11.2"', 'version = "local-1"'), "utf-8")
        url = await database_factory(MIGRATIONS_PATH)  # type: ignore[operator]
        settings = Settings(database_url=url, ruleset_path=path, log_json=True)
        app = create_app(settings, token_verifier=issuer.verifier)
        async with clients(app, issuer) as callers:
            response = await callers.operator.get("/v1/rulesets/current")
            assert response.json()["version"] == "local-1"
            scored = await callers.worker.post(
                "/v1/scores",
                json={
                    "transfer_id": "00000000-0000-4000-8000-000000000001",
                    "source_account_id": "00000000-0000-4000-8000-000000000002",
                    "target_account_id": "00000000-0000-4000-8000-000000000003",
                    "amount_minor": 125_00,
                    "currency": "EUR",
                },
            )
            assert scored.json()["ruleset_version"] == "local-1"
