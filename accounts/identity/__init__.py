"""The token issuer's bounded context: customers, clients, refresh tokens, signing keys."""
