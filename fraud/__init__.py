"""Fraud service: explainable risk scores that gate every transfer."""
