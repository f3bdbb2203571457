"""The columns in which a service's table keeps the terms of a customer transfer."""

import uuid

from sqlalchemy import BigInteger, String
from sqlalchemy.orm import Mapped, mapped_column


class TransferTermsColumns:
    """Mixin for a declarative table: the two accounts, the amount in minor units (bigint,
    never a float) and its ISO 4217 code, named as the wire contracts name them.

    The ORM lists a mixin's columns after the table's own ones; migrations, not the
    models, fix the column order in the database.
    """

    source_account_id: Mapped[uuid.UUID]
    target_account_id: Mapped[uuid.UUID]
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
