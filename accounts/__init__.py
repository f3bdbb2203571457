"""Accounts service: bank accounts and the two-phase, double-entry ledger."""
