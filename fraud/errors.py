from kit.errors import ProblemError


class ScoreRequestMismatch(ProblemError):
    status = 409
    slug = "score-request-mismatch"
    title = "Transfer already scored with other details"


class ScoreNotFound(ProblemError):
    status = 404
    slug = "score-not-found"
    title = "Score not found"


class OutcomeConflict(ProblemError):
    status = 409
    slug = "outcome-conflict"
    title = "Transfer already has another outcome"


class OutcomeScoreMismatch(ProblemError):
    status = 409
    slug = "outcome-score-mismatch"
    title = "Outcome does not match the scored transfer"


class TimezoneRequired(ProblemError):
    status = 422
    slug = "timezone-required"
    title = "Timestamp without a timezone"


class InvalidCursor(ProblemError):
    status = 422
    slug = "invalid-cursor"
    title = "Cursor is malformed"


class InvalidPeriod(ProblemError):
    status = 422
    slug = "invalid-period"
    title = "Period is empty or too long"


class DenyListEntryNotFound(ProblemError):
    status = 404
    slug = "deny-list-entry-not-found"
    title = "Account is not on the deny-list"


class ListedByMismatch(ProblemError):
    status = 422
    slug = "listed-by-mismatch"
    title = "listed_by must name the caller"
