"""The rules, pure: each one fires on the features that should trigger it and stays quiet
otherwise. Parameters come from the default ruleset, so the tests follow its tuning."""

import dataclasses
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.fraud import SCORE_MAX, FraudDecision, ScoreRequest
from fraud.ruleset import AMOUNT_HISTORY_MAX, Ruleset
from fraud.scoring import (
    DAY_SECONDS,
    Evaluation,
    Features,
    TypicalAmount,
    decide,
    evaluate,
    format_age,
    format_money,
    median_minor,
    remember_amount,
    typical_amount,
)

# An established account paying a known recipient, with nothing unusual going on.
QUIET = Features(counterparty_known=True, source_age_seconds=365 * DAY_SECONDS)
# The same account paying someone new.
NEW_COUNTERPARTY = dataclasses.replace(QUIET, counterparty_known=False)
# An account the service has never seen, paying someone new.
UNKNOWN = Features()


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


def _points(evaluation: Evaluation, code: str) -> int:
    [points] = [reason.points for reason in evaluation.reasons if reason.code == code]
    return points


class TestDenyList:
    def test_fires_for_a_listed_source(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(
            ruleset, _request(10_00), dataclasses.replace(QUIET, source_denied=True)
        )
        assert _codes(evaluation) == ["deny_list"]
        assert "source account is on the deny-list" in _reason_text(evaluation, "deny_list")
        assert evaluation.decision == FraudDecision.decline

    def test_fires_for_a_listed_recipient(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(
            ruleset, _request(10_00), dataclasses.replace(QUIET, target_denied=True)
        )
        assert _codes(evaluation) == ["deny_list"]
        assert "recipient account is on the deny-list" in _reason_text(evaluation, "deny_list")
        assert evaluation.decision == FraudDecision.decline

    def test_names_both_sides(self, ruleset: Ruleset) -> None:
        features = dataclasses.replace(QUIET, source_denied=True, target_denied=True)
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert "Both" in _reason_text(evaluation, "deny_list")
        assert evaluation.score == ruleset.rules.deny_list.points

    def test_quiet_when_neither_is_listed(self, ruleset: Ruleset) -> None:
        assert _codes(evaluate(ruleset, _request(10_00), QUIET)) == []


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

    def test_texts_name_each_threshold(self, ruleset: Ruleset) -> None:
        # Reasons may reach the customer: the two amount rules keep their exact wording.
        threshold_minor = ruleset.rules.very_large_amount.threshold_minor["EUR"]
        evaluation = evaluate(ruleset, _request(threshold_minor + 1), QUIET)
        assert _reason_text(evaluation, "very_large_amount") == (
            "The amount 50000.01 EUR is at least the very-large-transfer threshold of 50000.00 EUR."
        )
        assert _reason_text(evaluation, "large_amount") == (
            "The amount 50000.01 EUR is at least the large-transfer threshold of 10000.00 EUR."
        )


class TestVelocity:
    def test_fires_at_hour_transfers_min(self, ruleset: Ruleset) -> None:
        transfers_min = ruleset.rules.velocity.hour_transfers_min
        features = dataclasses.replace(
            QUIET,
            transfers_last_hour=transfers_min,
            amount_last_hour_minor=123_45,
            transfers_last_day=transfers_min,
            amount_last_day_minor=123_45,
        )
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert _codes(evaluation) == ["velocity"]
        [reason] = evaluation.reasons
        assert reason.points == ruleset.rules.velocity.points
        assert f"{transfers_min} transfers in the last 60 minutes" in reason.text
        assert "123.45 EUR" in reason.text

    def test_fires_at_day_transfers_min(self, ruleset: Ruleset) -> None:
        transfers_min = ruleset.rules.velocity.day_transfers_min
        features = dataclasses.replace(
            QUIET, transfers_last_day=transfers_min, amount_last_day_minor=987_00
        )
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert _codes(evaluation) == ["velocity"]
        assert f"{transfers_min} transfers in the last 24 hours" in evaluation.reasons[0].text
        assert "987.00 EUR" in evaluation.reasons[0].text

    def test_quiet_below_both(self, ruleset: Ruleset) -> None:
        rule = ruleset.rules.velocity
        features = dataclasses.replace(
            QUIET,
            transfers_last_hour=rule.hour_transfers_min - 1,
            transfers_last_day=rule.day_transfers_min - 1,
        )
        assert _codes(evaluate(ruleset, _request(10_00), features)) == []

    def test_sum_in_other_currencies_reads_zero(self, ruleset: Ruleset) -> None:
        features = dataclasses.replace(
            QUIET,
            transfers_last_hour=ruleset.rules.velocity.hour_transfers_min,
            transfers_last_day=ruleset.rules.velocity.hour_transfers_min,
        )
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert "0.00 EUR in EUR" in _reason_text(evaluation, "velocity")


class TestAmountAboveTypical:
    def _typical(self, ruleset: Ruleset, median_minor: int, spread_minor: int) -> Features:
        sample_size = ruleset.rules.amount_above_typical.history_min
        typical = TypicalAmount(
            median_minor=median_minor, spread_minor=spread_minor, sample_size=sample_size
        )
        return dataclasses.replace(QUIET, typical=typical)

    def test_fires_far_above_the_median(self, ruleset: Ruleset) -> None:
        rule = ruleset.rules.amount_above_typical
        features = self._typical(ruleset, median_minor=50_00, spread_minor=5_00)
        evaluation = evaluate(ruleset, _request(50_00 * rule.median_multiple), features)
        assert _codes(evaluation) == ["amount_above_typical"]
        text = _reason_text(evaluation, "amount_above_typical")
        assert "250.00 EUR" in text
        assert "typical amount of 50.00 EUR" in text
        assert f"last {rule.history_min} completed transfers" in text
        assert _points(evaluation, "amount_above_typical") == rule.points

    def test_quiet_below_the_median_multiple(self, ruleset: Ruleset) -> None:
        rule = ruleset.rules.amount_above_typical
        features = self._typical(ruleset, median_minor=50_00, spread_minor=0)
        evaluation = evaluate(ruleset, _request(50_00 * rule.median_multiple - 1), features)
        assert _codes(evaluation) == []

    def test_quiet_for_an_account_whose_amounts_vary_widely(self, ruleset: Ruleset) -> None:
        # Five times the median, but within the spread this account usually shows.
        rule = ruleset.rules.amount_above_typical
        features = self._typical(ruleset, median_minor=50_00, spread_minor=40_00)
        amount_minor = 50_00 * rule.median_multiple
        assert amount_minor <= 50_00 + 40_00 * rule.spread_multiple
        assert _codes(evaluate(ruleset, _request(amount_minor), features)) == []

    def test_quiet_with_a_short_history(self, ruleset: Ruleset) -> None:
        rule = ruleset.rules.amount_above_typical
        typical = TypicalAmount(
            median_minor=50_00, spread_minor=0, sample_size=rule.history_min - 1
        )
        features = dataclasses.replace(QUIET, typical=typical)
        assert _codes(evaluate(ruleset, _request(50_00 * 100), features)) == []

    def test_quiet_without_a_history(self, ruleset: Ruleset) -> None:
        assert _codes(evaluate(ruleset, _request(5_000_00), QUIET)) == []


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


class TestBrandNewAccount:
    def test_fires_for_an_account_never_seen(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.brand_new_account.threshold_minor["EUR"]
        features = dataclasses.replace(QUIET, source_age_seconds=None)
        evaluation = evaluate(ruleset, _request(threshold_minor), features)
        assert _codes(evaluation) == ["brand_new_account"]
        text = _reason_text(evaluation, "brand_new_account")
        assert "has no finished transfer yet" in text
        assert "younger than 7 days" in text
        assert "1000.00 EUR" in text
        assert _points(evaluation, "brand_new_account") == ruleset.rules.brand_new_account.points

    def test_fires_for_an_account_first_seen_recently(self, ruleset: Ruleset) -> None:
        rule = ruleset.rules.brand_new_account
        features = dataclasses.replace(QUIET, source_age_seconds=rule.age_seconds_max - 1)
        evaluation = evaluate(ruleset, _request(rule.threshold_minor["EUR"]), features)
        assert _codes(evaluation) == ["brand_new_account"]
        assert "first seen 6 days ago" in _reason_text(evaluation, "brand_new_account")

    def test_quiet_once_the_account_is_old_enough(self, ruleset: Ruleset) -> None:
        rule = ruleset.rules.brand_new_account
        features = dataclasses.replace(QUIET, source_age_seconds=rule.age_seconds_max)
        assert _codes(evaluate(ruleset, _request(rule.threshold_minor["EUR"]), features)) == []

    def test_quiet_below_threshold(self, ruleset: Ruleset) -> None:
        threshold_minor = ruleset.rules.brand_new_account.threshold_minor["EUR"]
        features = dataclasses.replace(QUIET, source_age_seconds=None)
        assert _codes(evaluate(ruleset, _request(threshold_minor - 1), features)) == []


class TestRecentDeclines:
    def test_fires_at_declines_min(self, ruleset: Ruleset) -> None:
        declines_min = ruleset.rules.recent_declines.declines_min
        features = dataclasses.replace(QUIET, declines_last_day=declines_min)
        evaluation = evaluate(ruleset, _request(10_00), features)
        assert _codes(evaluation) == ["recent_declines"]
        text = _reason_text(evaluation, "recent_declines")
        assert f"{declines_min} declined transfers in the last 24 hours" in text

    def test_quiet_below_declines_min(self, ruleset: Ruleset) -> None:
        declines_min = ruleset.rules.recent_declines.declines_min
        features = dataclasses.replace(QUIET, declines_last_day=declines_min - 1)
        assert _codes(evaluate(ruleset, _request(10_00), features)) == []


class TestRoundAmountBurst:
    def _burst(self, ruleset: Ruleset, earlier: int) -> Features:
        return dataclasses.replace(
            QUIET,
            transfers_last_hour=earlier,
            transfers_last_day=earlier,
            round_transfers_last_hour=earlier,
        )

    @pytest.mark.parametrize(
        ("amount_minor", "currency", "multiple"),
        [
            (1_000_00, "EUR", "1000.00 EUR"),
            (3_000_00, "EUR", "1000.00 EUR"),
            (1_000, "JPY", "1000 JPY"),
            (1_000_000, "KWD", "1000.000 KWD"),
        ],
    )
    def test_fires_on_a_burst_of_round_amounts(
        self, ruleset: Ruleset, amount_minor: int, currency: str, multiple: str
    ) -> None:
        earlier = ruleset.rules.round_amount.earlier_transfers_min
        evaluation = evaluate(
            ruleset, _request(amount_minor, currency), self._burst(ruleset, earlier)
        )
        assert _codes(evaluation) == ["round_amount"]
        assert evaluation.reasons[0].points == ruleset.rules.round_amount.points
        assert multiple in evaluation.reasons[0].text
        assert f"after {earlier} such round amounts" in evaluation.reasons[0].text

    def test_quiet_on_a_single_round_amount(self, ruleset: Ruleset) -> None:
        earlier = ruleset.rules.round_amount.earlier_transfers_min
        features = self._burst(ruleset, earlier - 1)
        assert _codes(evaluate(ruleset, _request(1_000_00), features)) == []

    @pytest.mark.parametrize(
        ("amount_minor", "currency"),
        [(1_000_01, "EUR"), (500_00, "EUR"), (100_000, "KWD"), (1_001, "JPY")],
    )
    def test_quiet_on_amounts_that_are_not_round(
        self, ruleset: Ruleset, amount_minor: int, currency: str
    ) -> None:
        features = self._burst(ruleset, ruleset.rules.round_amount.earlier_transfers_min)
        assert _codes(evaluate(ruleset, _request(amount_minor, currency), features)) == []

    def test_zero_earlier_transfers_makes_every_round_amount_fire(self, ruleset: Ruleset) -> None:
        rules = ruleset.rules.model_copy(
            update={
                "round_amount": ruleset.rules.round_amount.model_copy(
                    update={"earlier_transfers_min": 0}
                )
            }
        )
        single = ruleset.model_copy(update={"rules": rules})
        evaluation = evaluate(single, _request(1_000_00), QUIET)
        assert _codes(evaluation) == ["round_amount"]
        assert (
            evaluation.reasons[0].text
            == "The amount 1000.00 EUR is a whole multiple of 1000.00 EUR."
        )


class TestDecision:
    @pytest.mark.parametrize("amount_minor", [10_00, 99_99, 250_00, 500_00, 999_99])
    def test_ordinary_transfer_from_unknown_account_is_approved(
        self, ruleset: Ruleset, amount_minor: int
    ) -> None:
        evaluation = evaluate(ruleset, _request(amount_minor), UNKNOWN)
        assert evaluation.decision == FraudDecision.approve
        assert evaluation.reasons == []

    def test_ten_thousand_euros_go_to_review(self, ruleset: Ruleset) -> None:
        # What the system tests and the saga rely on, from a brand-new account.
        evaluation = evaluate(ruleset, _request(10_000_00), UNKNOWN)
        assert evaluation.decision == FraudDecision.review
        assert _codes(evaluation) == [
            "large_amount",
            "first_counterparty_large",
            "brand_new_account",
        ]

    def test_fifty_thousand_euros_are_declined(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(ruleset, _request(50_000_00), UNKNOWN)
        assert evaluation.decision == FraudDecision.decline
        assert _codes(evaluation)[0] == "very_large_amount"

    def test_score_is_the_sum_of_the_reasons(self, ruleset: Ruleset) -> None:
        evaluation = evaluate(ruleset, _request(10_000_00), UNKNOWN)
        assert evaluation.score == sum(reason.points for reason in evaluation.reasons)

    def test_score_is_capped(self, ruleset: Ruleset) -> None:
        features = Features(source_denied=True, declines_last_day=10)
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


class TestTypicalAmount:
    @pytest.mark.parametrize(
        ("amounts", "median"),
        [([7], 7), ([1, 9], 5), ([1, 2], 1), ([3, 1, 2], 2), ([10, 1, 1, 10], 5)],
    )
    def test_median_rounds_down_between_two_amounts(self, amounts: list[int], median: int) -> None:
        assert median_minor(amounts) == median

    def test_spread_is_the_median_absolute_deviation(self) -> None:
        typical = typical_amount([40_00, 50_00, 50_00, 60_00, 10_000_00])
        assert typical == TypicalAmount(median_minor=50_00, spread_minor=10_00, sample_size=5)

    def test_one_outlier_barely_moves_it(self) -> None:
        steady = [50_00] * 9
        assert typical_amount([*steady, 1_000_000_00]) == TypicalAmount(
            median_minor=50_00, spread_minor=0, sample_size=10
        )

    def test_empty_history_has_none(self) -> None:
        assert typical_amount([]) is None

    def test_history_keeps_the_newest(self) -> None:
        history = list(range(1, AMOUNT_HISTORY_MAX + 1))
        remembered = remember_amount(history, 999)
        assert len(remembered) == AMOUNT_HISTORY_MAX
        assert remembered[0] == 2
        assert remembered[-1] == 999

    @given(st.lists(st.integers(min_value=1, max_value=10**15), min_size=1, max_size=50))
    def test_median_lies_within_the_amounts(self, amounts: list[int]) -> None:
        typical = typical_amount(amounts)
        assert typical is not None
        assert min(amounts) <= typical.median_minor <= max(amounts)
        assert 0 <= typical.spread_minor <= max(amounts) - min(amounts)
        assert typical.sample_size == len(amounts)


class TestFormatting:
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
    def test_money_exact_without_floats(self, amount_minor: int, currency: str, text: str) -> None:
        assert format_money(amount_minor, currency) == text

    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0, "0 minutes"), (60, "1 minute"), (3 * 3600, "3 hours"), (DAY_SECONDS, "1 day")],
    )
    def test_age(self, seconds: int, text: str) -> None:
        assert format_age(seconds) == text
