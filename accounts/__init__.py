"""accounts package."""
