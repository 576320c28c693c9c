"""taskcenter's beat scheduler: django-celery-beat's database scheduler, made safe to run twice.

``TaskcenterScheduler`` subclasses ``DatabaseScheduler`` (schedules stay in the
django-celery-beat tables, changes are still detected through
``PeriodicTasks.last_update``) and adds:

1. **One sender.** Any number of beat processes may run; only the holder of the
   leader lock in Redis (``taskcenter.services.beat``) sends. The lock expires after
   ``lock_seconds()`` (``TASKCENTER_BEAT_LOCK_SECONDS``, default 30 s) and is renewed
   on every tick; a standby tries to take it on each of its ticks, so it takes over
   within the expiry plus one tick when the leader dies. A beat that becomes leader
   reloads the schedule from the database, where the previous leader saved each run.
2. **DST-correct crontabs.** A crontab is due when ``now`` reaches the next fire time
   after its last run, found by ``taskcenter.schedules.timing`` in the crontab's own
   time zone, instead of Celery's delta arithmetic.
3. **The schedule's ``SchedulePolicy``** (defaults without a row): missed due times
   (due more than ``max(5 s, max_interval)`` ago when beat sees them, e.g. after a
   downtime or while disabled) are coalesced into one run (``run_once``) or skipped
   (``skip``); a missed run later than ``grace_seconds`` is skipped; ``jitter_seconds``
   delays each run by a random countdown; ``max_instances`` skips a due run while that
   many runs of the schedule wait or run. Every skip is in the audit trail.

The due-or-not logic is the pure function ``decide()``; the rest adapts it to
Celery's ``Scheduler.tick()``: a skipped due time is "due" for the heap (so the entry
moves on to its next due time and ``last_run_at`` is saved) but ``apply_entry()``
records it instead of sending it.
"""

import logging
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from celery import schedules
from django.db import DatabaseError
from django.db.models import Q
from django.utils import timezone
from django_celery_beat.clockedschedule import clocked
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from django_celery_beat.utils import NEVER_CHECK_TIMEOUT

from taskcenter.models import ACTIVE_STATES, Run, SchedulePolicy
from taskcenter.schedules.timing import CronFields, fire_times, next_fire_after
from taskcenter.services import beat as beat_service
from taskcenter.services.audit import Action, Outcome, audit_record

logger = logging.getLogger(__name__)

SEND, SKIP, WAIT = "send", "skip", "wait"
RUN_ONCE, SKIP_MISSED = SchedulePolicy.Misfire.RUN_ONCE.value, SchedulePolicy.Misfire.SKIP.value

#: A due time is "missed" when beat sees it more than this many seconds late (or max_interval, if longer).
MIN_TOLERANCE = 5.0
#: Seconds after which a one-time schedule that was sent or skipped is looked at again (to disable it).
ONE_TIME_RECHECK = 1.0
#: Most past crontab fire times counted one by one for the skip message (more shows as "N+").
MAX_COUNTED = 10_000
#: Windows searched backwards from now for the latest fire time when there were too many to count.
_LATEST_WINDOWS = (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367))


# --- Pure logic: when is a schedule due, and what to do about it ----------------------


@dataclass(frozen=True)
class Policy:
    """A schedule's ``SchedulePolicy`` in plain values (defaults when it has no row)."""

    misfire: str = RUN_ONCE
    grace_seconds: int | None = None
    jitter_seconds: int = 0
    max_instances: int = 0

    @classmethod
    def of(cls, task) -> "Policy":
        """The policy of a ``PeriodicTask``; no query when ``taskcenter_policy`` was selected with it."""
        try:
            row = task.taskcenter_policy
        except SchedulePolicy.DoesNotExist:
            return cls()
        except DatabaseError:
            logger.exception("Could not read the policy of schedule %s; using the defaults", task.name)
            return cls()
        return cls(
            misfire=row.misfire,
            grace_seconds=row.grace_seconds,
            jitter_seconds=row.jitter_seconds or 0,
            max_instances=row.max_instances or 0,
        )


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
            reason = f"misfire: skipped {due.count(due.earlier)} missed run(s)"
            return Decision(SEND, delay, due.ref, covers=1, skipped=due.earlier, reason=reason, cause="misfire")
        return Decision(SEND, delay, due.ref, covers=due.total)
    if policy.misfire == SKIP_MISSED:
        reason = f"misfire: skipped {due.count(due.total)} missed run(s)"
        return Decision(SKIP, delay, due.ref, skipped=due.total, reason=reason, cause="misfire")
    if policy.grace_seconds is not None and late > policy.grace_seconds:
        reason = f"grace time exceeded by {late - policy.grace_seconds:.0f}s"
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


# --- Celery beat adapters ----------------------------------------------------------------


class PolicySchedule:
    """An entry's Celery schedule whose ``is_due`` asks ``decide()``; all else is the wrapped schedule's."""

    def __init__(self, schedule, timing, entry: "TaskcenterEntry"):
        self.schedule, self.timing, self.entry = schedule, timing, entry

    def is_due(self, last_run_at):
        decision = decide(
            self.timing,
            last_run_at=last_run_at,
            now=datetime.now(UTC),
            policy=self.entry.policy,
            tolerance=self.entry.tolerance,
        )
        self.entry.decision = decision
        return schedules.schedstate(decision.is_due, decision.delay)

    def remaining_estimate(self, last_run_at):
        now = datetime.now(UTC)
        first = self.timing.due(last_run_at, now).first
        return timedelta(seconds=NEVER_CHECK_TIMEOUT) if first is None else first - now

    def __getattr__(self, name):
        if name.startswith("__") or name in ("schedule", "timing", "entry"):
            raise AttributeError(name)
        return getattr(self.schedule, name)

    def __eq__(self, other):
        if isinstance(other, PolicySchedule):
            return (self.schedule, self.timing, self.entry.policy) == (other.schedule, other.timing, other.entry.policy)
        return NotImplemented

    def __repr__(self):
        return repr(self.schedule)


class TaskcenterEntry(ModelEntry):
    """A periodic task as beat sees it, with its policy and taskcenter's due-time logic."""

    #: Seconds late after which a due time counts as missed; the scheduler sets it from max_interval.
    tolerance = MIN_TOLERANCE

    def __init__(self, model, app=None):
        never_ran = model.last_run_at is None
        super().__init__(model, app=app)
        self.policy = Policy.of(model)
        self.decision: Decision | None = None
        schedule = getattr(self, "schedule", None)
        timing = timing_of(model, schedule) if schedule is not None else None
        if timing is not None:
            self.schedule = PolicySchedule(schedule, timing, self)
            if never_ran and model.start_time is not None:
                # ModelEntry dates a never-run task with a start time 30 years back so that it is
                # due at once; count its due times from the start instead, so none is "missed".
                self.last_run_at = timing.start_reference(model.start_time)

    def is_due(self):
        self.decision = None  # stays None when ModelEntry decides alone (disabled, not started, expired)
        return super().is_due()

    def __next__(self):
        entry = super().__next__()
        entry.tolerance = self.tolerance
        return entry


class TaskcenterScheduler(DatabaseScheduler):
    """``DatabaseScheduler`` with a leader lock, DST-correct crontabs and schedule policies."""

    Entry = TaskcenterEntry

    def __init__(self, *args, **kwargs):
        self.identity = beat_service.BeatIdentity.of_this_process()
        self._lock = None
        self._leading = False
        self._broker_ok = True
        self._leader_seen = None
        super().__init__(*args, **kwargs)
        # Save last_run_at after every run, so a beat taking over knows what was sent.
        if not self.sync_every_tasks:
            self.sync_every_tasks = 1

    def schedules_equal(self, old_schedules, new_schedules):
        """Skip Celery's comparison of the whole schedule on every send (O(N) per task).

        The database scheduler replaces its entries only when it reads the database
        again, and each read marks the heap invalid; between reads the schedule cannot
        differ from the copy the heap was built from. See docs/benchmarks.md.
        """
        if self._heap_invalidated:
            self._heap_invalidated = False
            return False
        return old_schedules is not None and new_schedules is not None

    # Leadership ---------------------------------------------------------------------

    @property
    def is_leader(self) -> bool:
        return self._leading

    def tick(self, *args, **kwargs):
        if not self._lead():
            return self._standby_interval()
        interval = super().tick(*args, **kwargs)
        # Tick again before the lock could expire.
        return min(interval, beat_service.lock_seconds() / 3)

    def _lead(self) -> bool:
        """Take or renew the leader lock; True if this beat may send now."""
        if self._lock is None:
            self._lock = beat_service.BeatLock(self.app, self.identity)
        try:
            status, holder = self._lock.tick(max_interval=float(self.max_interval))
        except beat_service.REDIS_ERRORS as exc:
            if self._broker_ok:
                logger.warning(
                    "beat %s: broker unreachable (%s); sending nothing until it answers", self.identity.id, exc
                )
            self._broker_ok = False
            self._stand_down()
            return False
        if not self._broker_ok:
            logger.info("beat %s: broker answers again", self.identity.id)
            self._broker_ok = True
        if status == beat_service.STANDBY:
            if self._leading:
                logger.warning("beat %s lost the leader lock to %s; standing by", self.identity.id, holder)
                self._stand_down()
            elif holder != self._leader_seen:
                logger.info("beat %s stands by; the leader is %s", self.identity.id, holder)
            self._leader_seen = holder
            return False
        if status == beat_service.ACQUIRED or not self._leading:
            logger.info(
                "beat %s is now the leader (lock expires after %ss without renewal)",
                self.identity.id,
                beat_service.lock_seconds(),
            )
        if status == beat_service.ACQUIRED:
            self._take_over()
        self._leading, self._leader_seen = True, self.identity.id
        return True

    def _take_over(self) -> None:
        """Reload every entry from the database: another beat may have sent runs meanwhile."""
        self._initial_read = True
        self._heap = None

    def _stand_down(self) -> None:
        self._leading = False
        self._heap = None

    def _standby_interval(self) -> float:
        return max(0.5, min(float(self.max_interval), beat_service.lock_seconds() / 3, 5.0))

    def close(self):
        try:
            super().close()
        finally:
            if self._lock is not None and self._lock.release():
                logger.info("beat %s released the leader lock", self.identity.id)
            self._leading = False

    # Loading ------------------------------------------------------------------------

    def enabled_models_qs(self):
        # Policies and schedules in the same query: nothing is read per entry afterwards.
        return (
            super().enabled_models_qs().select_related("taskcenter_policy", "interval", "crontab", "clocked", "solar")
        )

    def _get_crontab_exclude_query(self):
        # django-celery-beat leaves out crontabs whose hour is more than two hours away;
        # a run missed while beat was down must be seen when beat starts, so load them all.
        return Q(pk__in=[])

    def misfire_tolerance(self) -> float:
        return max(MIN_TOLERANCE, float(self.max_interval or 0))

    def populate_heap(self, *args, **kwargs):
        tolerance = self.misfire_tolerance()
        for entry in self.schedule.values():
            if isinstance(entry, TaskcenterEntry):
                entry.tolerance = tolerance
        return super().populate_heap(*args, **kwargs)

    # Sending ------------------------------------------------------------------------

    def apply_entry(self, entry, producer=None):
        decision = getattr(entry, "decision", None)
        policy = getattr(entry, "policy", None) or Policy()
        if decision is not None and decision.verdict == SKIP:
            self._skip(entry, decision.reason, cause=decision.cause, skipped=decision.skipped, due_at=decision.due_at)
            return
        if policy.max_instances:
            active = self._active_runs(entry.name, policy.max_instances)
            if active >= policy.max_instances:
                reason = f"max instances: {active} run{'' if active == 1 else 's'} still active"
                self._skip(entry, reason, cause="max_instances", skipped=1, due_at=decision and decision.due_at)
                return
        if decision is not None and decision.skipped:
            # The on-time run is sent; the missed ones before it are dropped (misfire "skip").
            self._record_skip(entry, decision.reason, cause=decision.cause, skipped=decision.skipped, due_at=None)
        if decision is not None and decision.covers > 1:
            logger.info("Schedule %s: one run stands for %s due times", entry.name, decision.covers)
        if policy.jitter_seconds <= 0:
            return super().apply_entry(entry, producer=producer)
        # Jitter: the run waits a random countdown on the worker. The options are put back
        # after sending, as the entry is compared with the next schedule read.
        options = entry.options
        entry.options = {**options, "countdown": round(random.uniform(0, policy.jitter_seconds), 3)}
        try:
            return super().apply_entry(entry, producer=producer)
        finally:
            entry.options = options

    def _skip(self, entry, reason: str, *, cause: str, skipped: int, due_at) -> None:
        """Drop a due run: ``reserve()`` already moved the entry on and counted it, so uncount it."""
        if not entry.model.one_off:  # a one-off counts, so that ModelEntry disables it
            entry.model.total_run_count = max(0, entry.model.total_run_count - 1)
        self._record_skip(entry, reason, cause=cause, skipped=skipped, due_at=due_at)
        self._tasks_since_sync += 1
        if self.should_sync():
            self._do_sync()

    def _record_skip(self, entry, reason: str, *, cause: str, skipped: int, due_at) -> None:
        logger.info("Schedule %s: due run skipped (%s)", entry.name, reason)
        policy = entry.policy
        try:
            audit_record(
                actor=None,
                action=Action.SCHEDULE_SKIP,
                target=entry.name,
                outcome=Outcome.OK,
                message=reason,
                detail={
                    "task": entry.task,
                    "cause": cause,
                    "skipped": skipped,
                    "due_at": due_at.isoformat() if due_at else None,
                    "beat": self.identity.id,
                    "policy": {
                        "misfire": policy.misfire,
                        "grace_seconds": policy.grace_seconds,
                        "jitter_seconds": policy.jitter_seconds,
                        "max_instances": policy.max_instances,
                    },
                },
            )
        except DatabaseError:
            logger.exception("Could not record the skip of schedule %s", entry.name)

    def _active_runs(self, name: str, limit: int) -> int:
        """Runs of the schedule that wait or run, counted up to ``limit`` in one indexed query.

        Only runs younger than ``result_expires`` count: older results are deleted, which
        would leave their runs PENDING for ever and block the schedule.
        """
        runs = Run.objects.filter(periodic_task_name=name)
        expires = self.app.conf.result_expires
        if expires:
            seconds = expires.total_seconds() if isinstance(expires, timedelta) else float(expires)
            runs = runs.filter(created_at__gte=timezone.now() - timedelta(seconds=seconds))
        active = Q(task_result__status__isnull=True, cancelled_at__isnull=True) | Q(
            task_result__status__in=ACTIVE_STATES
        )
        try:
            return runs.filter(active)[:limit].count()
        except DatabaseError:
            logger.exception("Could not count the active runs of schedule %s; sending anyway", name)
            return 0
