"""RFC 9457 problem details: the one error shape every service answers with."""

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_PREFIX = "urn:sagabank:problem:"


def problem_type(slug: str) -> str:
    """The stable `type` URI of a problem, e.g. `urn:sagabank:problem:insufficient-funds`."""
    assert slug, "a problem type needs a slug"
    assert slug == slug.lower(), "problem slugs are lower-case"
    return f"{PROBLEM_TYPE_PREFIX}{slug}"


class Problem(BaseModel):
    """An RFC 9457 problem document; extension members are allowed."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(default="about:blank", max_length=200)
    title: str = Field(max_length=200)
    status: int = Field(ge=400, le=599)
    detail: str | None = Field(default=None, max_length=2000)
    instance: str | None = Field(default=None, max_length=500)
    trace_id: str | None = Field(default=None, max_length=100)

    def extensions(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ValidationIssue(BaseModel):
    """One reason a request was malformed (the `errors` member of a 422 problem)."""

    location: list[str | int]
    message: str = Field(max_length=500)
    kind: str = Field(max_length=100)
