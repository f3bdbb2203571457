from kit.errors import ProblemError


class ScoreRequestMismatch(ProblemError):
    status = 409
    slug = "score-request-mismatch"
    title = "Transfer already scored with other details"


class ScoreNotFound(ProblemError):
    status = 404
    slug = "score-not-found"
    title = "Score not found"
