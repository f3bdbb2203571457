"""What the transactions service's routes depend on beyond the request's session."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from kit.resources import ServiceResources, resources
from transactions.accounts_client import SourceAccounts
from transactions.callback_secrets import CallbackSecretBox
from transactions.changes import ChangeListener
from transactions.service import IdempotencyPolicy
from transactions.standing_order_schedules import StandingOrderSchedules
from transactions.standing_orders import StandingOrderRules
from transactions.workflow_client import TransferWorkflows


@dataclass(frozen=True, kw_only=True)
class TransactionsResources(ServiceResources):
    """Built by the lifespan, with the accounts client it opens."""

    workflows: TransferWorkflows
    changes: ChangeListener
    idempotency_policy: IdempotencyPolicy
    # None: no callback secrets key configured, so callbacks are refused.
    callback_secret_box: CallbackSecretBox | None
    accounts: SourceAccounts
    standing_order_schedules: StandingOrderSchedules
    standing_order_rules: StandingOrderRules


Resources = Annotated[TransactionsResources, Depends(resources(TransactionsResources))]
