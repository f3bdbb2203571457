"""The rules and the decision, without a database: each rule fires in one test, stays quiet
in another. Thresholds come from the default ruleset, so the tests follow its tuning."""

import uuid

import pytest

from contracts.fraud import SCORE_MAX, FraudDecision, ScoreRequest
from fraud.ruleset import Ruleset
from fraud.scoring import Evaluation, Features, decide, evaluate, format_money

QUIET = Features(recent_transfer_count=0, recent_amount_minor=0, counterparty_known=True)
NEW_COUNTERPARTY = Features(
    recent_transfer_count=0, recent_amount_minor=0, counterparty_known=False
)


def _request(amount_minor: int, currency: str = "EUR") -> ScoreRequest:
    return ScoreRequest(
        transfer_id=uuid.uuid4(),
        source_account_id=uuid.uuid4(),
        target_account_id=uuid.uuid4(),
        amount_minor=amount_minor,
        currency=currency,
    )


def _codes(evaluation: Evaluation) -> list[str]:
    return [reason.code for reason in evaluation.reasons]


def _reason_text(evaluation: Evaluation, code: str) -> str:
    [text] = [reason.text for reason in evaluation.reasons if reason.code == code]
    return text


class TestLargeAmount:
    def test_fires_at_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.large_amount.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor + 1), QUIET)
        assert _codes(evaluation) == ["large_amount"]
        [reason] = evaluation.reasons
        assert reason.points == ruleset.rules.large_amount.points
        assert "10000.01 EUR" in reason.text
        assert "10000.00 EUR" in reason.text

    def test_quiet_below_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.large_amount.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor - 1), QUIET)
        assert "large_amount" not in _codes(evaluation)

    def test_threshold_is_per_currency(self, ruleset: Ruleset) -> None:
        eur_threshold_minor = ruleset.rules.large_amount.threshold_minor["EUR"]
        jpy_threshold_minor = ruleset.rules.large_amount.threshold_minor["JPY"]
        assert eur_threshold_minor < jpy_threshold_minor
        # The same count of minor units is large in euro cents and not in yen.
        in_yen = evaluate(ruleset, _request(eur_threshold_minor + 1, "JPY"), QUIET)
        assert "large_amount" not in _codes(in_yen)
        at_yen_threshold = evaluate(ruleset, _request(jpy_threshold_minor + 1, "JPY"), QUIET)
        assert "1600001 JPY" in _reason_text(at_yen_threshold, "large_amount")


class TestVeryLargeAmount:
    def test_fires_at_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.very_large_amount.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor + 1), QUIET)
        assert _codes(evaluation) == ["very_large_amount", "large_amount"]
        assert "50000.01 EUR" in _reason_text(evaluation, "very_large_amount")
        assert "50000.00 EUR" in _reason_text(evaluation, "very_large_amount")

    def test_quiet_below_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.very_large_amount.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor - 1), QUIET)
        assert "very_large_amount" not in _codes(evaluation)

    def test_enough_for_decline_on_its_own(self, ruleset: Ruleset) -> None:
        assert ruleset.rules.very_large_amount.points >= ruleset.decline_at


class TestVelocity:
    def test_fires_at_transfers_min(self, ruleset: Ruleset) -> None:
        transfers_min = ruleset.rules.velocity.transfers_min
        features = Features(
            recent_transfer_count=transfers_min,
            recent_amount_minor=123_45,
            counterparty_known=True,
        )
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert _codes(evaluation) == ["velocity"]
        [reason] = evaluation.reasons
        assert reason.points == ruleset.rules.velocity.points
        assert f"{transfers_min} transfers in the last 60 minutes" in reason.text
        assert "123.45 EUR" in reason.text

    def test_quiet_below_transfers_min(self, ruleset: Ruleset) -> None:
        features = Features(
            recent_transfer_count=ruleset.rules.velocity.transfers_min - 1,
            recent_amount_minor=123_45,
            counterparty_known=True,
        )
        assert _codes(evaluate(ruleset, _request(10_00), features)) == []

    def test_sum_in_other_currencies_reads_zero(self, ruleset: Ruleset) -> None:
        features = Features(
            recent_transfer_count=ruleset.rules.velocity.transfers_min,
            recent_amount_minor=0,
            counterparty_known=True,
        )
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert "0.00 EUR in EUR" in _reason_text(evaluation, "velocity")


class TestFirstCounterpartyLarge:
    def test_fires_for_new_recipient_at_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.first_counterparty_large.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor + 1), NEW_COUNTERPARTY)
        assert _codes(evaluation) == ["first_counterparty_large"]
        [reason] = evaluation.reasons
        assert reason.points == ruleset.rules.first_counterparty_large.points
        assert "2000.01 EUR" in reason.text
        assert "2000.00 EUR" in reason.text

    def test_quiet_for_known_recipient(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.first_counterparty_large.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor + 1), QUIET)
        assert _codes(evaluation) == []

    def test_quiet_below_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.first_counterparty_large.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor - 1), NEW_COUNTERPARTY)
        assert _codes(evaluation) == []


class TestRoundAmount:
    @pytest.mark.parametrize(
        ("amount_minor", "currency", "multiple"),
        [
            (1_000_00, "EUR", "1000.00 EUR"),
            (3_000_00, "EUR", "1000.00 EUR"),
            (1_000, "JPY", "1000 JPY"),
            (1_000_000, "KWD", "1000.000 KWD"),
        ],
    )
    def test_fires_on_whole_thousands(
        self, ruleset: Ruleset, amount_minor: int, currency: str, multiple: str
    ) -> None:
        evaluation = evaluate(ruleset, _request(amount_minor, currency), QUIET)
        assert _codes(evaluation) == ["round_amount"]
        assert evaluation.reasons[0].points == ruleset.rules.round_amount.points
        assert multiple in evaluation.reasons[0].text

    @pytest.mark.parametrize(
        ("amount_minor", "currency"),
        [(1_000_01, "EUR"), (500_00, "EUR"), (100_000, "KWD"), (1_001, "JPY")],
    )
    def test_quiet_otherwise(self, ruleset: Ruleset, amount_minor: int, currency: str) -> None:
        assert _codes(evaluate(ruleset, _request(amount_minor, currency), QUIET)) == []


class TestDecision:
    @pytest.mark.parametrize("amount_minor", [10_00, 99_99, 250_00, 500_00])
    def test_ordinary_transfer_to_new_recipient_is_approved(
        self, ruleset: Ruleset, amount_minor: int
    ) -> None:
        evaluation = evaluate(ruleset, _request(amount_minor), NEW_COUNTERPARTY)
        assert evaluation.decision == FraudDecision.approve
        assert evaluation.score < ruleset.review_at

    def test_ten_thousand_euros_go_to_review(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(ruleset, _request(10_000_00), NEW_COUNTERPARTY)
        assert evaluation.decision == FraudDecision.review

    def test_fifty_thousand_euros_are_declined(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(ruleset, _request(50_000_00), NEW_COUNTERPARTY)
        assert evaluation.decision == FraudDecision.decline

    def test_score_is_the_sum_of_the_reasons(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(ruleset, _request(10_000_00), NEW_COUNTERPARTY)
        assert evaluation.score == sum(reason.points for reason in evaluation.reasons)
        assert _codes(evaluation) == ["large_amount", "first_counterparty_large", "round_amount"]

    def test_score_is_capped(self, ruleset: Ruleset) -> None:
        features = Features(
            recent_transfer_count=ruleset.rules.velocity.transfers_min,
            recent_amount_minor=1,
            counterparty_known=False,
        )
        evaluation = evaluate(ruleset, _request(50_000_00), features)
        assert sum(reason.points for reason in evaluation.reasons) > SCORE_MAX
        assert evaluation.score == SCORE_MAX

    def test_thresholds_are_inclusive(self, ruleset: Ruleset) -> None:
        assert decide(ruleset, 0) == FraudDecision.approve
        assert decide(ruleset, ruleset.review_at - 1) == FraudDecision.approve
        assert decide(ruleset, ruleset.review_at) == FraudDecision.review
        assert decide(ruleset, ruleset.decline_at - 1) == FraudDecision.review
        assert decide(ruleset, ruleset.decline_at) == FraudDecision.decline
        assert decide(ruleset, SCORE_MAX) == FraudDecision.decline


class TestFormatMoney:
    @pytest.mark.parametrize(
        ("amount_minor", "currency", "text"),
        [
            (0, "EUR", "0.00 EUR"),
            (5, "EUR", "0.05 EUR"),
            (1_205, "EUR", "12.05 EUR"),
            (1_205, "KWD", "1.205 KWD"),
            (1_205, "JPY", "1205 JPY"),
            # A sum over many transfers may exceed what one transfer may carry.
            (10**16, "EUR", "100000000000000.00 EUR"),
        ],
    )
    def test_exact_without_floats(self, amount_minor: int, currency: str, text: str) -> None:
        assert format_money(amount_minor, currency) == text
