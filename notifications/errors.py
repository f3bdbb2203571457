from contracts.notifications import NotificationsProblem
from kit.errors import ProblemError


class EventIdReused(ProblemError):
    status = 409
    slug = NotificationsProblem.event_id_reused
    title = "Event id already used for a different event"


class EventNotFound(ProblemError):
    status = 404
    slug = NotificationsProblem.event_not_found
    title = "Event not found"


class WebhookUrlNotAllowed(ProblemError):
    """The URL is not https, carries credentials, or names/resolves to a non-public address."""

    status = 400
    slug = NotificationsProblem.webhook_url_not_allowed
    title = "Webhook URL not allowed"


class WebhookEndpointNotFound(ProblemError):
    status = 404
    slug = NotificationsProblem.webhook_endpoint_not_found
    title = "Webhook endpoint not found"


class WebhookEndpointLimitReached(ProblemError):
    status = 409
    slug = NotificationsProblem.webhook_endpoint_limit_reached
    title = "Too many webhook endpoints"


class DeliveryNotFound(ProblemError):
    status = 404
    slug = NotificationsProblem.delivery_not_found
    title = "Delivery not found"


class DeliveryPending(ProblemError):
    """A redelivery of a delivery that is still being attempted would race its retries."""

    status = 409
    slug = NotificationsProblem.delivery_pending
    title = "Delivery still pending"


class WebhookEndpointDisabled(ProblemError):
    status = 409
    slug = NotificationsProblem.webhook_endpoint_disabled
    title = "Webhook endpoint disabled"


class EmailContactNotFound(ProblemError):
    status = 404
    slug = NotificationsProblem.email_contact_not_found
    title = "Email contact not found"
