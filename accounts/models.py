"""Tables of the accounts database. Constraints and triggers live in the migrations."""

import uuid
from datetime import datetime

from sqlalchemy import (
    CHAR,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Integer,
    LargeBinary,
    String,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from kit.audit import audit_table


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    """A customer or per-currency system account with its four running totals."""

    __tablename__ = "accounts"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    customer_id: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    currency: Mapped[str] = mapped_column(CHAR(3))
    status: Mapped[str] = mapped_column(String(16))
    debits_must_not_exceed_credits: Mapped[bool] = mapped_column(Boolean)
    credits_must_not_exceed_debits: Mapped[bool] = mapped_column(Boolean)
    max_transfer_amount_minor: Mapped[int | None] = mapped_column(BigInteger)
    daily_outflow_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    overdraft_limit_minor: Mapped[int | None] = mapped_column(BigInteger)
    debits_pending: Mapped[int] = mapped_column(BigInteger, server_default="0")
    debits_posted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    credits_pending: Mapped[int] = mapped_column(BigInteger, server_default="0")
    credits_posted: Mapped[int] = mapped_column(BigInteger, server_default="0")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerTransferRow(Base):
    """An immutable ledger transfer; its id is chosen by the caller (idempotency)."""

    __tablename__ = "ledger_transfers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    debit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    pending_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("ledger_transfers.id"))
    timeout_seconds: Mapped[int | None] = mapped_column(Integer)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    reference: Mapped[str | None] = mapped_column(String(140))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class LedgerEntryRow(Base):
    """One line of the journal: a signed change of one balance column of one account."""

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    # No foreign keys, for speed: the balance trigger refuses an entry without its transfer
    # or outside its accounts (docs/decisions/0003-journal-integrity.md).
    transfer_id: Mapped[uuid.UUID] = mapped_column()
    account_id: Mapped[uuid.UUID] = mapped_column()
    balance: Mapped[str] = mapped_column(String(16))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    # The account's balances (credits - debits) right after this entry, for its statement.
    posted_balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    pending_balance_after_minor: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ExpiringHoldRow(Base):
    """An open hold with a deadline, until it is posted, voided or expires (then deleted).

    The journal is append-only, so whether a hold is still open cannot be marked on it;
    this small table is what the sweeper and the balance reads consult instead.
    """

    __tablename__ = "ledger_expiring_holds"

    pending_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("ledger_transfers.id"), primary_key=True
    )
    debit_account_id: Mapped[uuid.UUID] = mapped_column()
    credit_account_id: Mapped[uuid.UUID] = mapped_column()
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class HoldTombstoneRow(Base):
    """A void that arrived before its hold: it released nothing, and refuses the hold (by
    its id, `pending_id`) should it arrive later. Append-only, like the journal."""

    __tablename__ = "ledger_hold_tombstones"

    pending_id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    void_id: Mapped[uuid.UUID] = mapped_column(unique=True)
    debit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    credit_account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("accounts.id"))
    amount_minor: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(CHAR(3))
    reference: Mapped[str | None] = mapped_column(String(140))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerRow(Base):
    """A customer who signs in with email and password (the password only as argon2)."""

    __tablename__ = "customers"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    # Stored lower-cased; unique.
    email: Mapped[str] = mapped_column(String(254))
    display_name: Mapped[str | None] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ClientRow(Base):
    """A client of the token endpoint: a service or operator one (client_credentials, with
    its secret's hash) or a public one (no secret; its exact redirect URIs)."""

    __tablename__ = "clients"

    client_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    secret_hash: Mapped[str | None] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    redirect_uris: Mapped[list[str]] = mapped_column(ARRAY(String(2000)), server_default="{}")
    # Whom a public client's sign-in page signs in: "customers" or "staff".
    signs_in: Mapped[str] = mapped_column(String(16), server_default="customers")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when the client left the bootstrap list: it gets no more tokens.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StaffRow(Base):
    """A person of the bank's staff: password, sealed TOTP secret, role (operator scopes)."""

    __tablename__ = "staff"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    display_name: Mapped[str | None] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(200))
    # The base32 TOTP secret sealed under ACCOUNTS_SECRETS_KEYS, the row id as associated data.
    totp_secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    # The newest TOTP time step accepted: a code of that step or an older one is refused.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # Set when disabled: the person can no longer sign in.
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class RefreshTokenRow(Base):
    """One refresh token (only its SHA-256), in a family that rotation grows by one per use.

    A token used twice means it leaked: the whole family is revoked (RFC 6819 5.2.2.3).
    """

    __tablename__ = "refresh_tokens"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    family_id: Mapped[uuid.UUID] = mapped_column()
    # Exactly one of the two: the customer or the staff member the token renews.
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    staff_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff.id"))
    # The public client the family was issued to (the code flow); None for the password grant.
    client_id: Mapped[str | None] = mapped_column(ForeignKey("clients.client_id"))
    token_hash: Mapped[str] = mapped_column(CHAR(64))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class AuthorizationCodeRow(Base):
    """An authorization code (only its SHA-256): single use, short-lived, bound to its
    client, redirect URI, PKCE challenge, subject and scopes."""

    __tablename__ = "authorization_codes"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    code_hash: Mapped[str] = mapped_column(CHAR(64))
    client_id: Mapped[str] = mapped_column(ForeignKey("clients.client_id"))
    redirect_uri: Mapped[str] = mapped_column(String(2000))
    code_challenge: Mapped[str] = mapped_column(String(128))
    customer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("customers.id"))
    staff_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("staff.id"))
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    redeemed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The refresh family its redemption issued: revoked if the code is shown again.
    family_id: Mapped[uuid.UUID | None] = mapped_column()


# Namespace of audit event ids derived from what they record, so a retry writes nothing new.
AUDIT_ID_NAMESPACE = uuid.UUID("0b9b7c52-41d6-4f3e-9a55-3a1c7d2e8f60")
# Declared on this metadata so that the service's queries and Alembic see one schema.
AUDIT_EVENTS = audit_table(Base.metadata)
