"""The ledger's bounded context: accounts, two-phase transfers, holds, balances, statements."""
