from contracts.notifications import NotificationsProblem
from kit.errors import ProblemError


class EventIdReused(ProblemError):
    """An event with this id was already published with another type or data: an event id names one
    event; publish a different event under a new id."""

    status = 409
    slug = NotificationsProblem.event_id_reused
    title = "Event id already used for a different event"


class EventNotFound(ProblemError):
    """No event has this id."""

    status = 404
    slug = NotificationsProblem.event_not_found
    title = "Event not found"


class WebhookUrlNotAllowed(ProblemError):
    """The URL is not https, carries credentials, or names/resolves to a non-public address."""

    status = 400
    slug = NotificationsProblem.webhook_url_not_allowed
    title = "Webhook URL not allowed"


class WebhookEndpointNotFound(ProblemError):
    """No webhook endpoint of yours has this id: it was deleted, the id is wrong, or it belongs to
    another customer (answered alike)."""

    status = 404
    slug = NotificationsProblem.webhook_endpoint_not_found
    title = "Webhook endpoint not found"


class WebhookEndpointLimitReached(ProblemError):
    """You already have as many webhook endpoints as a customer may register: delete one you no
    longer use, then register the new one."""

    status = 409
    slug = NotificationsProblem.webhook_endpoint_limit_reached
    title = "Too many webhook endpoints"


class DeliveryNotFound(ProblemError):
    """No delivery to your endpoints has this id (another customer's deliveries are answered
    alike)."""

    status = 404
    slug = NotificationsProblem.delivery_not_found
    title = "Delivery not found"


class DeliveryPending(ProblemError):
    """A redelivery of a delivery that is still being attempted would race its retries."""

    status = 409
    slug = NotificationsProblem.delivery_pending
    title = "Delivery still pending"


class WebhookEndpointDisabled(ProblemError):
    """The delivery's endpoint is disabled, so it cannot be redelivered: enable the endpoint first,
    then ask again."""

    status = 409
    slug = NotificationsProblem.webhook_endpoint_disabled
    title = "Webhook endpoint disabled"


class EmailContactNotFound(ProblemError):
    """The customer has registered no email contact: save one first (there is nothing to show or
    delete)."""

    status = 404
    slug = NotificationsProblem.email_contact_not_found
    title = "Email contact not found"
