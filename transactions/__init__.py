"""Transactions service: the front door for transfers (API, idempotency, saga projection)."""
