"""Everyday banking from the command line (`sagabank login`, `customer`, `account`,
`transfer`, `webhook`), on the bank's public HTTP API only."""
