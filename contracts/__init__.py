"""Wire contracts shared by every Sagabank service: plain Pydantic models, no framework."""
