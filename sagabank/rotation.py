"""`sagabank secrets rotate`: re-seal every secret a service keeps at rest under the newest
key of its ring, through each service's admin route (`secrets:rotate`), batch by batch.

The command holds no database credentials and no key: each service re-seals its own rows.
Every batch commits on its own, so a rotation cut off midway keeps what it did, and
running it again finds only the rows still under an older key.
"""

from dataclasses import dataclass, field
from uuid import UUID

import httpx
from pydantic import ValidationError

from contracts.secrets import SECRETS_RESEAL_PATH, ResealBatch
from sagabank.bankclient import BankError

# The services that keep secrets at rest (staff TOTP secrets, callback clients', webhook
# endpoints').
SEALING_SERVICES: tuple[str, ...] = ("accounts", "transactions", "notifications")
BATCH_SIZE_DEFAULT = 100
# 10,000 batches of up to 500 rows: a bound, far beyond any secrets table.
BATCHES_MAX = 10_000
HTTP_TIMEOUT_SECONDS = 30.0


@dataclass
class Rotation:
    """What a rotation did in one service: under which key, how many rows it re-sealed,
    and the rows no key opened (they keep their old sealing)."""

    service: str
    key_id: str = ""
    resealed: int = 0
    batches: int = 0
    unreadable_count: int = 0
    unreadable_ids: list[UUID] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.unreadable_count == 0


def _batch(http: httpx.Client, url: str, service: str, body: dict[str, object]) -> ResealBatch:
    try:
        response = http.post(url, json=body)
    except httpx.HTTPError as error:
        raise BankError(f"cannot reach {service} at {url}: {type(error).__name__}") from None
    if response.status_code in (401, 403):
        raise BankError(
            f"{service} refused ({response.status_code}): the token needs secrets:rotate",
            exit_code=1,
        )
    if response.status_code != 200:
        raise BankError(f"{service} answered {response.status_code}: {response.text[:300]}")
    try:
        return ResealBatch.model_validate_json(response.content)
    except ValidationError:
        raise BankError(f"{service} answered something else than a re-seal batch") from None


def rotate_service(
    http: httpx.Client,
    service: str,
    base_url: str,
    *,
    batch_size: int = BATCH_SIZE_DEFAULT,
    batches_max: int = BATCHES_MAX,
) -> Rotation:
    """Re-seal every row of `service` under its newest key, `batch_size` rows a request."""
    assert batch_size > 0
    url = f"{base_url.rstrip('/')}{SECRETS_RESEAL_PATH}"
    rotation = Rotation(service)
    after: UUID | None = None
    for _ in range(batches_max):
        body: dict[str, object] = {"after": None if after is None else str(after)}
        body["limit"] = batch_size
        batch = _batch(http, url, service, body)
        rotation.key_id = batch.key_id
        rotation.batches += 1
        rotation.resealed += batch.resealed
        rotation.unreadable_count += batch.unreadable_count
        rotation.unreadable_ids.extend(batch.unreadable_ids)
        after = batch.next_after
        if after is None:
            return rotation
    raise BankError(f"{service}: still re-sealing after {batches_max} batches")


def client(token: str) -> httpx.Client:
    return httpx.Client(
        timeout=HTTP_TIMEOUT_SECONDS,
        follow_redirects=False,
        headers={"Authorization": f"Bearer {token}"},
    )


def rotation_lines(rotations: list[Rotation]) -> list[str]:
    lines = []
    for rotation in rotations:
        line = (
            f"{rotation.service:<14} under key {rotation.key_id}: {rotation.resealed:,} "
            f"re-sealed in {rotation.batches:,} batches"
        )
        if not rotation.ok:
            shown = ", ".join(str(row_id) for row_id in rotation.unreadable_ids)
            line += f"; {rotation.unreadable_count:,} no key opens: {shown}"
        lines.append(line)
    return lines
