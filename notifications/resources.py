"""What the notifications service's routes depend on beyond the request's session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from kit.resources import ServiceResources, resources
from notifications.dispatcher import Dispatcher
from notifications.service import WebhookRules


@dataclass(frozen=True, kw_only=True)
class NotificationsResources(ServiceResources):
    """Built by the lifespan, with the dispatcher it starts."""

    webhook_rules: WebhookRules
    # Without an SMTP server, events fan out to webhooks only.
    email_enabled: bool
    dispatcher: Dispatcher


Resources = Annotated[NotificationsResources, Depends(resources(NotificationsResources))]
