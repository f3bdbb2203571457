"""Staff sessions, server-side in this process's memory: the browser holds only a random id.

One replica therefore serves the console, and a restart signs everyone out
(docs/decisions/0038-operator-console.md names the way to more replicas).
"""

import asyncio
import base64
import hmac
import json
import secrets
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from contracts.auth import TokenResponse
from contracts.staff import StaffProfile
from kit.resources import Clock

# 32 random bytes (256 bits) for a session id, a CSRF token and a sign-in's state.
SECRET_BYTES: Final = 32
# A sign-in in flight (state and PKCE verifier) lasts this long: time to type a password
# and a TOTP code on the issuer's page.
SIGN_IN_TTL_SECONDS: Final = 600
# Sign-ins in flight one browser keeps at once (one per tab that started one), the oldest
# dropped: a few tabs' worth, and a bound on what one pre-session cookie holds.
SIGN_INS_PER_BROWSER_MAX: Final = 5


@dataclass
class StaffSession:
    """A signed-in staff member: their tokens (never sent to the browser) and who they are."""

    id: str
    csrf_token: str
    access_token: str
    refresh_token: str | None
    access_expires_at: datetime
    scopes: frozenset[str]
    profile: StaffProfile
    created_at: datetime
    last_seen_at: datetime
    # Renewals one at a time: a refresh token presented twice revokes its whole family.
    renewal: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def may(self, scope: str) -> bool:
        return scope in self.scopes

    @property
    def subject(self) -> str | None:
        """Who the access token names (`staff:<id>`), as the APIs will read it."""
        return token_subject(self.access_token)

    def take_tokens(self, tokens: TokenResponse, *, now: datetime) -> None:
        self.access_token = tokens.access_token
        self.refresh_token = tokens.refresh_token or self.refresh_token
        self.access_expires_at = now + timedelta(seconds=tokens.expires_in)
        self.scopes = frozenset(tokens.scope.split())


def token_subject(access_token: str) -> str | None:
    """The `sub` claim of a JWT, read without verifying it: only to fill in a field the API
    checks against the verified token (the deny list's `listed_by`); None if unreadable."""
    parts = access_token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError:
        return None
    subject = claims.get("sub") if isinstance(claims, dict) else None
    return subject if isinstance(subject, str) else None


@dataclass(frozen=True)
class PendingSignIn:
    """What a sign-in started here must match when the issuer sends the browser back."""

    state: str
    code_verifier: str
    created_at: datetime


class SessionStore:
    """Sessions expire after `idle_timeout_seconds` unused and `lifetime_seconds` in all;
    at most `sessions_max` sessions (and as many browsers with sign-ins in flight, each
    with SIGN_INS_PER_BROWSER_MAX at most), the oldest dropped."""

    def __init__(
        self,
        *,
        clock: Clock,
        idle_timeout_seconds: int,
        lifetime_seconds: int,
        sessions_max: int,
    ) -> None:
        self.clock = clock
        self.idle_timeout = timedelta(seconds=idle_timeout_seconds)
        self.lifetime = timedelta(seconds=lifetime_seconds)
        self.sessions_max = sessions_max
        self._sessions: OrderedDict[str, StaffSession] = OrderedDict()
        # A browser's pre-session key -> its sign-ins in flight, oldest first.
        self._sign_ins: OrderedDict[str, list[PendingSignIn]] = OrderedDict()

    def create(self, tokens: TokenResponse, profile: StaffProfile) -> StaffSession:
        now = self.clock()
        session = StaffSession(
            id=secrets.token_urlsafe(SECRET_BYTES),
            csrf_token=secrets.token_urlsafe(SECRET_BYTES),
            access_token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            access_expires_at=now + timedelta(seconds=tokens.expires_in),
            scopes=frozenset(tokens.scope.split()),
            profile=profile,
            created_at=now,
            last_seen_at=now,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self.sessions_max:
            self._sessions.popitem(last=False)
        return session

    def find(self, session_id: str | None) -> StaffSession | None:
        """The live session with this id, marked as used now; None (and dropped) once idle
        or past its lifetime."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen_at >= self.idle_timeout or (
            now - session.created_at >= self.lifetime
        ):
            self.drop(session_id)
            return None
        session.last_seen_at = now
        return session

    def drop(self, session_id: str) -> StaffSession | None:
        return self._sessions.pop(session_id, None)

    def __len__(self) -> int:
        return len(self._sessions)

    def sign_ins_in_flight(self) -> int:
        return sum(len(pending) for pending in self._sign_ins.values())

    def begin_sign_in(self, browser_key: str | None) -> tuple[str, PendingSignIn]:
        """A new sign-in for the browser holding `browser_key` (its pre-session cookie),
        beside its others in flight; a key with none in flight (unknown, expired, or chosen
        by someone else) is never adopted: a new one is made. Returns the key and the
        sign-in's state and verifier."""
        live = self._live_sign_ins(browser_key)
        key = browser_key if live and browser_key else secrets.token_urlsafe(SECRET_BYTES)
        pending = PendingSignIn(
            state=secrets.token_urlsafe(SECRET_BYTES),
            code_verifier=secrets.token_urlsafe(64),
            created_at=self.clock(),
        )
        self._sign_ins[key] = [*live, pending][-SIGN_INS_PER_BROWSER_MAX:]
        self._sign_ins.move_to_end(key)
        while len(self._sign_ins) > self.sessions_max:
            self._sign_ins.popitem(last=False)
        return key, pending

    def pending_sign_ins(self, browser_key: str | None) -> tuple[PendingSignIn, ...]:
        """The browser's sign-ins still in flight, oldest first."""
        return tuple(self._live_sign_ins(browser_key))

    def take_sign_in(self, browser_key: str | None, state: str | None) -> PendingSignIn | None:
        """The browser's sign-in whose state is exactly `state` (compared in constant time),
        once: a second callback with it finds nothing. A miss takes nothing."""
        if state is None:
            return None
        live = self._live_sign_ins(browser_key)
        matched = [
            pending
            for pending in live
            if hmac.compare_digest(pending.state.encode(), state.encode())
        ]
        if not matched or browser_key is None:
            return None
        remaining = [pending for pending in live if pending is not matched[0]]
        if remaining:
            self._sign_ins[browser_key] = remaining
        else:
            del self._sign_ins[browser_key]
        return matched[0]

    def _live_sign_ins(self, browser_key: str | None) -> list[PendingSignIn]:
        """The browser's sign-ins still in time; the expired ones are forgotten."""
        if not browser_key or browser_key not in self._sign_ins:
            return []
        ttl = timedelta(seconds=SIGN_IN_TTL_SECONDS)
        now = self.clock()
        live = [p for p in self._sign_ins[browser_key] if now - p.created_at < ttl]
        if live:
            self._sign_ins[browser_key] = live
        else:
            del self._sign_ins[browser_key]
        return live
