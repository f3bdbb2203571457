from kit.errors import ProblemError


class EventIdReused(ProblemError):
    status = 409
    slug = "event-id-reused"
    title = "Event id already used for a different event"


class EventNotFound(ProblemError):
    status = 404
    slug = "event-not-found"
    title = "Event not found"
