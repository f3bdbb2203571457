"""Standing orders in Temporal: the interval rule (pure) and one Schedule per order.

An interval is an ISO 8601 duration of whole months (`P1M`, `P3M`, `P1Y`), run on a
calendar (the day of the month and time of day of `start_at`, UTC), or of a fixed length
(`P7D`, `P1W`, `PT12H`), run every that long from `start_at`. See docs/decisions/0033.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import structlog
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleCalendarSpec,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleRange,
    ScheduleSpec,
    ScheduleState,
)
from temporalio.service import RPCError, RPCStatusCode

from contracts.money import Money
from contracts.standing_orders import (
    NEXT_RUNS_SHOWN,
    OCCURRENCE_WORKFLOW_NAME,
    OccurrenceWorkflowInput,
    StandingOrderCreate,
    schedule_id,
)
from transactions.errors import WorkflowServiceUnavailable

log = structlog.get_logger()

_DURATION: Final = re.compile(
    r"P(?:(?P<years>\d{1,2})Y)?(?:(?P<months>\d{1,2})M)?(?:(?P<weeks>\d{1,3})W)?"
    r"(?:(?P<days>\d{1,4})D)?(?:T(?:(?P<hours>\d{1,5})H)?(?:(?P<minutes>\d{1,6})M)?"
    r"(?:(?P<seconds>\d{1,7})S)?)?"
)
# A month is at least this long: what a monthly order is compared with the minimum.
_SHORTEST_MONTH: Final = timedelta(days=28)
# A missed occurrence (Temporal or the worker away) still runs if it is this late at most;
# later ones are skipped rather than paid in a burst. One day: a payment a day late is
# expected, one a week late is a surprise.
CATCHUP_WINDOW: Final = timedelta(days=1)
_RETRY_AFTER_SECONDS: Final = 5


class IntervalInvalid(ValueError):
    """Not an interval a standing order can run on; the message says why."""


@dataclass(frozen=True)
class Interval:
    """Every `months` calendar months, or every `every` (exactly one of the two)."""

    months: int = 0
    every: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        assert (self.months > 0) != (self.every > timedelta(0)), "months or a fixed length"

    @property
    def shortest(self) -> timedelta:
        """The shortest time between two occurrences."""
        return self.months * _SHORTEST_MONTH if self.months else self.every


def parse_interval(text: str) -> Interval:
    """The interval of an ISO 8601 duration; IntervalInvalid for anything else, for a mix
    of months and fixed lengths, and for months that do not divide a year evenly."""
    match = _DURATION.fullmatch(text)
    if match is None or text in ("P", "PT") or text.endswith("T"):
        raise IntervalInvalid(f"{text!r} is not an ISO 8601 duration such as P1M or P7D")
    parts = {name: int(value) for name, value in match.groupdict().items() if value is not None}
    months = 12 * parts.pop("years", 0) + parts.pop("months", 0)
    every = timedelta(**parts)
    if months and every:
        raise IntervalInvalid("an interval is whole months or a fixed length, not both")
    if months:
        if 12 % months:
            raise IntervalInvalid("a monthly interval divides a year: 1, 2, 3, 4, 6 or 12 months")
        return Interval(months=months)
    if not every:
        raise IntervalInvalid("an interval is longer than zero")
    return Interval(every=every)


def schedule_spec(interval: Interval, order: StandingOrderCreate) -> ScheduleSpec:
    """When the order's schedule fires: from `start_at` (included), until `end_at`."""
    start_at = order.start_at.astimezone(UTC)
    if interval.months:
        first_month = (start_at.month - 1) % interval.months + 1
        calendar = ScheduleCalendarSpec(
            second=[ScheduleRange(start_at.second)],
            minute=[ScheduleRange(start_at.minute)],
            hour=[ScheduleRange(start_at.hour)],
            day_of_month=[ScheduleRange(start_at.day)],
            month=[ScheduleRange(first_month, 12, interval.months)],
        )
        return ScheduleSpec(
            calendars=[calendar], start_at=start_at, end_at=order.end_at, time_zone_name="UTC"
        )
    # Interval times are the epoch plus whole intervals plus the offset: the offset puts
    # `start_at` itself on the grid.
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    offset = (start_at - epoch) % interval.every
    return ScheduleSpec(
        intervals=[ScheduleIntervalSpec(every=interval.every, offset=offset)],
        start_at=start_at,
        end_at=order.end_at,
    )


@dataclass(frozen=True)
class ScheduleView:
    """What the schedule's description tells an order's reader."""

    paused: bool
    next_run_at: list[datetime]


class StandingOrderSchedules:
    """Creates, describes, pauses, resumes and deletes the orders' Temporal Schedules."""

    def __init__(self, *, task_queue: str, rpc_timeout_seconds: float) -> None:
        assert rpc_timeout_seconds > 0
        self._task_queue = task_queue
        self._rpc_timeout = timedelta(seconds=rpc_timeout_seconds)

    async def create(
        self,
        client: Client,
        *,
        standing_order_id: uuid.UUID,
        order: StandingOrderCreate,
        customer_id: str | None,
    ) -> None:
        """Create the order's schedule; one that exists already (a retried create) is success."""
        interval = parse_interval(order.interval)
        occurrence = OccurrenceWorkflowInput(
            standing_order_id=standing_order_id,
            source_account_id=order.source_account_id,
            target_account_id=order.target_account_id,
            amount_minor=order.amount_minor,
            currency=order.currency,
            source_customer_id=customer_id,
        )
        action = ScheduleActionStartWorkflow(
            OCCURRENCE_WORKFLOW_NAME,
            occurrence,
            # Temporal appends each scheduled time to this id: one workflow per occurrence.
            id=f"{schedule_id(standing_order_id)}-occurrence",
            task_queue=self._task_queue,
            static_summary=_summary(order),
        )
        schedule = Schedule(
            action=action,
            spec=schedule_spec(interval, order),
            # Occurrences are independent transfers: a slow one never holds back the next.
            policy=SchedulePolicy(
                overlap=ScheduleOverlapPolicy.ALLOW_ALL, catchup_window=CATCHUP_WINDOW
            ),
            state=ScheduleState(
                note="standing order",
                limited_actions=order.count is not None,
                remaining_actions=order.count or 0,
            ),
        )
        try:
            await client.create_schedule(
                schedule_id(standing_order_id), schedule, rpc_timeout=self._rpc_timeout
            )
        except ScheduleAlreadyRunningError:
            log.info("standing_order.schedule_exists")
        except RPCError as error:
            log.warning("temporal.schedule_create_failed", error=error.message[:500])
            raise _unavailable() from error

    async def describe(self, client: Client, standing_order_id: uuid.UUID) -> ScheduleView | None:
        """The schedule's state and next run times; None if it does not exist (deleted)."""
        handle = client.get_schedule_handle(schedule_id(standing_order_id))
        try:
            description = await handle.describe(rpc_timeout=self._rpc_timeout)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return None
            log.warning("temporal.schedule_describe_failed", error=error.message[:500])
            raise _unavailable() from error
        paused = description.schedule.state.paused
        upcoming = [] if paused else list(description.info.next_action_times)
        return ScheduleView(paused=paused, next_run_at=upcoming[:NEXT_RUNS_SHOWN])

    async def pause(self, client: Client, standing_order_id: uuid.UUID, *, paused: bool) -> None:
        """Pause (or resume) the schedule; doing it twice changes nothing more."""
        handle = client.get_schedule_handle(schedule_id(standing_order_id))
        try:
            if paused:
                await handle.pause(note="paused by its owner", rpc_timeout=self._rpc_timeout)
            else:
                await handle.unpause(note="resumed by its owner", rpc_timeout=self._rpc_timeout)
        except RPCError as error:
            log.warning("temporal.schedule_pause_failed", error=error.message[:500])
            raise _unavailable() from error

    async def delete(self, client: Client, standing_order_id: uuid.UUID) -> None:
        """Delete the schedule; one already gone is success."""
        handle = client.get_schedule_handle(schedule_id(standing_order_id))
        try:
            await handle.delete(rpc_timeout=self._rpc_timeout)
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return
            log.warning("temporal.schedule_delete_failed", error=error.message[:500])
            raise _unavailable() from error


def _summary(order: StandingOrderCreate) -> str:
    money = Money(amount_minor=order.amount_minor, currency=order.currency)
    return (
        f"Standing order: {money.format()} every {order.interval} "
        f"from {order.source_account_id} to {order.target_account_id}"
    )


def _unavailable() -> WorkflowServiceUnavailable:
    return WorkflowServiceUnavailable(
        "Temporal did not answer; retry later.", retry_after_seconds=_RETRY_AFTER_SECONDS
    )
