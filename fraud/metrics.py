"""Fraud scoring's metrics: decisions by outcome and which rules fire."""

from prometheus_client import Counter

FRAUD_DECISIONS = Counter(
    "sagabank_fraud_decisions_total",
    "Transfers scored, by the decision's outcome.",
    ["outcome"],
)
FRAUD_RULE_HITS = Counter(
    "sagabank_fraud_rule_hits_total",
    "Times a rule of the active ruleset matched a scored transfer, by rule.",
    ["rule"],
)
