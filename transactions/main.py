"""The transactions service application."""

from pathlib import Path

from fastapi import FastAPI
from temporalio.client import Client

from kit.app import create_service_app
from transactions.api import admin_router, internal_router, router
from transactions.config import Settings
from transactions.saga import TransferWorkflows

MIGRATIONS_PATH = Path(__file__).parent / "migrations"


def create_app(
    settings: Settings | None = None, *, temporal_client: Client | None = None
) -> FastAPI:
    """The service; without `temporal_client` it connects to Temporal on first use."""
    settings = settings or Settings()  # read from the environment
    app = create_service_app(
        service="transactions",
        title="Sagabank transactions",
        description=(
            "The front door for transfers: accepts them idempotently, starts their saga, "
            "keeps their status projection, and forwards cancellations and reviews."
        ),
        version="0.1.0",
        settings=settings,
        migrations_path=MIGRATIONS_PATH,
        routers=[router, internal_router, admin_router],
    )
    app.state.workflows = TransferWorkflows(
        client=temporal_client,
        address=settings.temporal_address,
        namespace=settings.temporal_namespace,
        task_queue=settings.task_queue,
        review_timeout_seconds=settings.review_timeout_seconds,
        rpc_timeout_seconds=settings.temporal_rpc_timeout_seconds,
    )
    return app
