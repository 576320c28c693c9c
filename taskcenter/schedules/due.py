"""When a schedule is due and what beat does about it: pure logic, no database, no broker.

``decide()`` takes a schedule's due-time logic (a *timing*: ``CrontabTiming``,
``IntervalTiming``, ``ClockedTiming`` or ``EstimateTiming``), its last run, the time
now and its ``Policy``, and answers send, skip or wait. ``taskcenter.scheduler``
adapts this to Celery beat; the tests call it directly at fixed times.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from celery import schedules
from django.utils.translation import gettext
from django_celery_beat.clockedschedule import clocked
from django_celery_beat.utils import NEVER_CHECK_TIMEOUT

from taskcenter.schedules.timing import CronFields, fire_times, next_fire_after

logger = logging.getLogger(__name__)

SEND, SKIP, WAIT = "send", "skip", "wait"
#: Misfire policies, as ``SchedulePolicy.Misfire`` stores them.
RUN_ONCE, SKIP_MISSED = "run_once", "skip"

#: A due time is "missed" when beat sees it more than this many seconds late (or max_interval, if longer).
MIN_TOLERANCE = 5.0
#: Seconds after which a one-time schedule that was sent or skipped is looked at again (to disable it).
ONE_TIME_RECHECK = 1.0
#: Most past crontab fire times counted one by one for the skip message (more shows as "N+").
MAX_COUNTED = 10_000
#: Windows searched backwards from now for the latest fire time when there were too many to count.
_LATEST_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367))


@dataclass(frozen=True)
class Policy:
    """A schedule's ``SchedulePolicy`` in plain values (defaults when it has no row)."""

    misfire: str = RUN_ONCE
    grace_seconds: int | None = None
    jitter_seconds: int = 0
    max_instances: int = 0


@dataclass(frozen=True)
class DueTimes:
    """A schedule's due times around ``now``, given its last run."""

    first: datetime | None  # first due time after the last run; None: never again
    ref: datetime | None = None  # the past due time a run sent now stands for; None: nothing due yet
    earlier: int = 0  # past due times before ``ref`` (coalesced into the run, or skipped)
    total: int = 0  # past due times since the last run, ``ref`` included
    exact: bool = True  # False when ``total`` was capped at MAX_COUNTED
    following: datetime | None = None  # the next due time after now; None: none (one-time schedule)

    def count(self, n: int) -> str:
        return f"{n}{'' if self.exact else '+'}"


class CrontabTiming:
    """Fire times of a crontab in its own time zone, DST included (``schedules.timing``)."""

    def __init__(self, fields: CronFields, tz: ZoneInfo):
        self.fields, self.tz = fields, tz

    def __eq__(self, other):
        return isinstance(other, CrontabTiming) and (self.fields, self.tz) == (other.fields, other.tz)

    def due(self, last_run_at: datetime, now: datetime) -> DueTimes:
        first = next_fire_after(self.fields, self.tz, last_run_at)
        if first is None or first > now:
            return DueTimes(first=first)
        latest, total, exact = first, 0, True
        for fire in fire_times(self.fields, self.tz, last_run_at):
            if fire.at > now:
                break
            latest, total = fire.at, total + 1
            if total >= MAX_COUNTED:
                latest, exact = self._latest_until(now, floor=last_run_at) or latest, False
                break
        return DueTimes(
            first=first,
            ref=latest,
            earlier=total - 1,
            total=total,
            exact=exact,
            following=next_fire_after(self.fields, self.tz, now),
        )

    def start_reference(self, start_time: datetime) -> datetime:
        return start_time - timedelta(microseconds=1)  # the first fire time at or after the start

    def _latest_until(self, now: datetime, *, floor: datetime) -> datetime | None:
        for window in _LATEST_WINDOWS:
            latest = None
            for fire in fire_times(self.fields, self.tz, max(floor, now - window)):
                if fire.at > now:
                    break
                latest = fire.at
            if latest is not None:
                return latest
        return None


class IntervalTiming:
    """Every ``every`` after the last run (Celery's interval): one due time, however long ago."""

    def __init__(self, every: timedelta):
        self.every = every

    def __eq__(self, other):
        return isinstance(other, IntervalTiming) and self.every == other.every

    def due(self, last_run_at: datetime, now: datetime) -> DueTimes:
        first = last_run_at + self.every
        if first > now:
            return DueTimes(first=first)
        periods = max(1, int((now - last_run_at) / self.every))
        return DueTimes(first=first, ref=first, total=periods, following=now + self.every)

    def start_reference(self, start_time: datetime) -> datetime:
        return start_time - self.every  # first due at the start time, as Celery does


class ClockedTiming:
    """Once, at a given time (a one-off ``ClockedSchedule``)."""

    def __init__(self, at: datetime):
        self.at = at

    def __eq__(self, other):
        return isinstance(other, ClockedTiming) and self.at == other.at

    def due(self, last_run_at: datetime, now: datetime) -> DueTimes:
        if now < self.at:
            return DueTimes(first=self.at)
        return DueTimes(first=self.at, ref=self.at, total=1)

    def start_reference(self, start_time: datetime) -> datetime:
        return start_time


class EstimateTiming:
    """Any other Celery schedule (solar): due times from its own ``remaining_estimate``."""

    def __init__(self, schedule):
        self.schedule = schedule

    def __eq__(self, other):
        return isinstance(other, EstimateTiming) and self.schedule == other.schedule

    def due(self, last_run_at: datetime, now: datetime) -> DueTimes:
        first = now + self.schedule.remaining_estimate(last_run_at)
        if first > now:
            return DueTimes(first=first)
        return DueTimes(first=first, ref=first, total=1, following=now + self.schedule.remaining_estimate(now))

    def start_reference(self, start_time: datetime) -> datetime:
        return start_time - timedelta(microseconds=1)


@dataclass(frozen=True)
class Decision:
    """What beat does with a schedule now: ``send``, ``skip`` or ``wait``."""

    verdict: str
    delay: float  # seconds until the schedule should be looked at again
    due_at: datetime | None = None  # the due time a send or skip stands for
    covers: int = 0  # due times one sent run stands for (more than 1: coalesced)
    skipped: int = 0  # due times dropped (recorded in the audit trail)
    reason: str = ""  # the audit message of the skipped due times
    cause: str = ""  # "misfire" or "grace" when due times were skipped

    @property
    def is_due(self) -> bool:
        return self.verdict != WAIT


def decide(
    timing, *, last_run_at: datetime, now: datetime, policy: Policy | None = None, tolerance: float = MIN_TOLERANCE
):
    """Decide whether a schedule with these due times is sent, skipped or waited for at ``now``.

    A due time more than ``tolerance`` seconds in the past is *missed*. When the most
    recent due time is on time, it is sent; with ``misfire="skip"`` the missed ones
    before it are skipped, else they are coalesced into it. When every due time was
    missed, ``skip`` drops them all; ``run_once`` sends one run for all of them unless
    the most recent is more than ``grace_seconds`` late, then it drops them too. After a
    send or skip beat waits for the next due time.
    """
    policy = policy or Policy()
    # In UTC: arithmetic on aware datetimes of one DST zone is wall-clock arithmetic.
    last_run_at, now = _utc(last_run_at), _utc(now)
    due = timing.due(last_run_at, now)
    if due.ref is None:
        return Decision(WAIT, _seconds_until(due.first, now, default=NEVER_CHECK_TIMEOUT))
    delay = _seconds_until(due.following, now, default=ONE_TIME_RECHECK)
    late = (now - due.ref).total_seconds()
    if late <= tolerance:
        if due.earlier and policy.misfire == SKIP_MISSED:
            reason = gettext("misfire: skipped %(count)s missed run(s)") % {"count": due.count(due.earlier)}
            return Decision(SEND, delay, due.ref, covers=1, skipped=due.earlier, reason=reason, cause="misfire")
        return Decision(SEND, delay, due.ref, covers=due.total)
    if policy.misfire == SKIP_MISSED:
        reason = gettext("misfire: skipped %(count)s missed run(s)") % {"count": due.count(due.total)}
        return Decision(SKIP, delay, due.ref, skipped=due.total, reason=reason, cause="misfire")
    if policy.grace_seconds is not None and late > policy.grace_seconds:
        reason = gettext("grace time exceeded by %(seconds)ss") % {"seconds": f"{late - policy.grace_seconds:.0f}"}
        return Decision(SKIP, delay, due.ref, skipped=due.total, reason=reason, cause="grace")
    return Decision(SEND, delay, due.ref, covers=due.total)


def _utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive one is taken as UTC, as Celery's ``maybe_make_aware`` does."""
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _seconds_until(when: datetime | None, now: datetime, *, default: float) -> float:
    if when is None:
        return default
    return max(0.0, (when - now).total_seconds())


def timing_of(task, schedule):
    """The due-time logic of a ``PeriodicTask`` whose Celery schedule is ``schedule``; None: Celery's own."""
    if isinstance(schedule, schedules.crontab) and task.crontab is not None:
        cron = task.crontab
        try:
            fields = CronFields.parse(cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week)
            return CrontabTiming(fields, ZoneInfo(str(cron.timezone)))
        except (ValueError, KeyError):
            logger.warning("Crontab of schedule %s not understood; timed by Celery", task.name)
            return None
    if isinstance(schedule, clocked):
        return ClockedTiming(schedule.clocked_time)
    if type(schedule) is schedules.schedule:  # an interval
        return IntervalTiming(schedule.run_every)
    if hasattr(schedule, "remaining_estimate"):
        return EstimateTiming(schedule)
    return None
