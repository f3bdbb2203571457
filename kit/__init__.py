"""The thin kit every Sagabank service shares: settings, logs, database, errors, HTTP."""
