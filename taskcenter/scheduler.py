"""taskcenter's beat scheduler: django-celery-beat's database scheduler, made safe to run twice.

``TaskcenterScheduler`` subclasses ``DatabaseScheduler`` (schedules stay in the
django-celery-beat tables, changes are still detected through
``PeriodicTasks.last_update``) and adds:

1. **One sender.** Any number of beat processes may run; only the holder of the
   leader lock in Redis (``taskcenter.services.beat``) sends. The lock expires after
   ``lock_seconds()`` (``TASKCENTER_BEAT_LOCK_SECONDS``, default 30 s) and is renewed
   every third of that (or every ``max_interval``, if shorter); a standby tries to take
   it on each of its ticks, so it takes over within the expiry plus one tick when the
   leader dies. A beat that becomes leader reloads the schedule from the database,
   where the previous leader saved each run at the end of the tick that sent it.
2. **DST-correct crontabs.** A crontab is due when ``now`` reaches the next fire time
   after its last run, found by ``taskcenter.schedules.timing`` in the crontab's own
   time zone, instead of Celery's delta arithmetic.
3. **The schedule's ``SchedulePolicy``** (defaults without a row): missed due times
   (due more than ``max(5 s, max_interval)`` ago when beat sees them, e.g. after a
   downtime or while disabled) are coalesced into one run (``run_once``) or skipped
   (``skip``); a missed run later than ``grace_seconds`` is skipped; ``jitter_seconds``
   delays each run by a random countdown; ``max_instances`` skips a due run while that
   many runs of the schedule wait or run. Every skip is in the audit trail.

4. **Speed at 10,000 schedules** (docs/benchmarks.md): a tick sends every due run and
   saves them together (``last_run_at`` and the ``Run`` rows, one transaction); a change
   rebuilds only the entries whose rows changed; Celery's whole-schedule comparison on
   every send is skipped.

5. **No schedule stops beat.** A row that cannot be read, built, evaluated or sent
   is marked in error (``services.schedules.schedule_mark_error``) and left out; the
   others keep sending. At send time an entry whose task is not catalogued, or whose
   message headers, exchange or routing key are set (they could rename the task or
   reuse another run's id), is refused the same way (``send_refusal``).

The due-or-not logic is the pure function ``decide()`` in ``taskcenter.schedules.due``;
the rest adapts it to Celery's ``Scheduler.tick()``: a skipped due time is "due" for
the heap (so the entry moves on to its next due time and ``last_run_at`` is saved) but
``apply_entry()`` records it instead of sending it.
"""

import heapq
import json
import logging
import random
import time
from datetime import UTC, datetime, timedelta

from celery import schedules
from celery.beat import event_t
from django.conf import settings
from django.db import DatabaseError, InterfaceError, close_old_connections, transaction
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django_celery_beat.models import PeriodicTask
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry
from django_celery_beat.utils import NEVER_CHECK_TIMEOUT
from kombu.exceptions import OperationalError

from taskcenter import catalogue
from taskcenter.broker import BROKER_ERRORS
from taskcenter.models import ACTIVE_STATES, SENT_BY_SCHEDULE, Run, SchedulePolicy
from taskcenter.schedules.due import (  # noqa: F401  (re-exported: the beat's vocabulary)
    MAX_COUNTED,
    MIN_TOLERANCE,
    ONE_TIME_RECHECK,
    SEND,
    SKIP,
    WAIT,
    ClockedTiming,
    CrontabTiming,
    Decision,
    DueTimes,
    EstimateTiming,
    IntervalTiming,
    Policy,
    decide,
    timing_of,
)
from taskcenter.selectors.runs import state_in
from taskcenter.services import beat as beat_service
from taskcenter.services import schedules as schedule_service
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.recording import runs_collected, runs_write

logger = logging.getLogger(__name__)

#: Longest a tick sends before it saves what it sent (a leader killed in between leaves these unsaved).
FLUSH_SECONDS = 0.2
#: Seconds between two looks for schedule changes (``PeriodicTasks.last_update``).
CHANGE_POLL_SECONDS = 1.0
#: Seconds between comparisons with the database without a change notice (clocked tasks come in range).
FULL_CHECK_SECONDS = 300.0
#: Changed rows read per query on a reload.
CHANGED_BATCH = 500
#: Run records kept for another try while the database refuses them, at most.
MAX_PENDING_RUNS = 100_000
#: What beat compares to find changed schedules: every field that affects sending, not the
#: last run it saved itself. ``date_changed`` catches any other save of the row.
FINGERPRINT_FIELDS = (
    "name",
    "date_changed",
    "task",
    "args",
    "kwargs",
    "queue",
    "exchange",
    "routing_key",
    "headers",
    "priority",
    "expires",
    "expire_seconds",
    "one_off",
    "start_time",
    "enabled",
    "interval__every",
    "interval__period",
    "crontab__minute",
    "crontab__hour",
    "crontab__day_of_week",
    "crontab__day_of_month",
    "crontab__month_of_year",
    "crontab__timezone",
    "solar__event",
    "solar__latitude",
    "solar__longitude",
    "clocked__clocked_time",
    "taskcenter_policy__misfire",
    "taskcenter_policy__grace_seconds",
    "taskcenter_policy__jitter_seconds",
    "taskcenter_policy__max_instances",
)
NAME_INDEX = FINGERPRINT_FIELDS.index("name")
#: Tasks outside the catalogue that beat sends, without arguments: the entries Celery installs itself
#: (``celery.backend_cleanup`` deletes results older than ``CELERY_RESULT_EXPIRES``) and taskcenter's
#: own daily ``taskcenter.retention_cleanup`` (see ``taskcenter.services.retention``).
SYSTEM_TASKS = frozenset({"celery.backend_cleanup", "taskcenter.retention_cleanup"})
#: Seconds before a schedule in error is looked at again (an edit reloads it at once).
ERROR_RECHECK = 300.0


def stored_error(task) -> str:
    """The error beat last recorded for a ``PeriodicTask`` (empty: none); no query when selected with it."""
    try:
        return task.taskcenter_policy.error
    except (SchedulePolicy.DoesNotExist, DatabaseError):
        return ""


def send_refusal(entry) -> str:
    """Why ``entry`` must not be sent (empty: it may be).

    Only catalogued tasks are sent, and nothing in the stored message options may
    change what is sent: headers can rename the task (``task``), reuse another run's
    id (``id``, ``root_id``, ``parent_id``, ``group``) or forge taskcenter's own
    markers; exchange and routing key can send it past its queue. taskcenter never
    sets them, so any value was written around it.
    """
    if catalogue.get_entry(entry.task) is None and not (
        entry.task in SYSTEM_TASKS and not entry.args and not entry.kwargs
    ):
        return gettext("task %(task)r is not in the catalogue; only catalogued tasks are sent") % {"task": entry.task}
    options = entry.options or {}
    headers = options.get("headers") or {}
    if not isinstance(headers, dict):
        return gettext("its message headers are not an object")
    extra = sorted(str(key) for key in headers if key != "periodic_task_name")
    if extra:
        return gettext("its message headers (%(headers)s) could change the task sent or its id; clear them") % {
            "headers": ", ".join(extra)
        }
    for option in ("exchange", "routing_key"):
        if options.get(option):
            return gettext("its %(option)s %(value)r is set; taskcenter routes by queue only") % {
                "option": option.replace("_", " "),
                "value": options[option],
            }
    queue = options.get("queue")
    if queue and queue not in settings.TASKCENTER_QUEUES:
        return gettext("its queue %(queue)r is not one of the configured queues (%(queues)s)") % {
            "queue": queue,
            "queues": ", ".join(settings.TASKCENTER_QUEUES),
        }
    priority = options.get("priority")
    if priority is not None and (isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 9):
        return gettext("its priority %(priority)r is not a broker priority from 0 to 9") % {"priority": priority}
    return ""


def policy_of(task) -> Policy:
    """The policy of a ``PeriodicTask``; no query when ``taskcenter_policy`` was selected with it."""
    try:
        row = task.taskcenter_policy
    except SchedulePolicy.DoesNotExist:
        return Policy()
    except DatabaseError:
        logger.exception("Could not read the policy of schedule %s; using the defaults", task.name)
        return Policy()
    return Policy(
        misfire=row.misfire,
        grace_seconds=row.grace_seconds,
        jitter_seconds=row.jitter_seconds or 0,
        max_instances=row.max_instances or 0,
    )


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
        # ModelEntry disables a schedule whose arguments are not JSON and says so only in the
        # log; refuse it here instead, so that it is marked in error where operators look.
        for label, text, kind in (("arguments", model.args, list), ("keyword arguments", model.kwargs, dict)):
            try:
                value = json.loads(text or ("[]" if kind is list else "{}"))
            except ValueError as exc:
                raise ValueError(f"its {label} are not valid JSON ({exc})") from None
            if not isinstance(value, kind):
                raise ValueError(f"its {label} are not a JSON {'list' if kind is list else 'object'}")
        super().__init__(model, app=app)
        self.policy = policy_of(model)
        self.stored_error = stored_error(model)
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
        self._renew_at = 0.0  # monotonic time of the next lock renewal
        self._next_poll = 0.0  # monotonic time of the next look for schedule changes
        self._next_full_check = 0.0  # monotonic time of the next comparison without a change notice
        self._fingerprints: dict[int, tuple] = {}  # what each loaded row looked like, by primary key
        self._pending_runs: list = []  # Run rows of sent tasks, written with the next sync
        self._errors: dict[str, str] = {}  # schedules in error, as recorded by this beat
        self._next_connection_check = 0.0  # monotonic time of the next close_old_connections()
        super().__init__(*args, **kwargs)

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
        """Send every due run (for up to ``FLUSH_SECONDS``), then save them all in one transaction.

        Celery's ``tick()`` sends one run per call; calling it in a loop here means the
        lock, the change check and the database writes are paid once per batch of sends,
        not once per send. What was sent is written before the next tick sends anything.
        """
        if time.monotonic() >= self._next_connection_check:
            # As DatabaseScheduler does: drop a connection the database closed or that outlived
            # CONN_MAX_AGE (once a poll interval, not on each of hundreds of ticks a second).
            self._next_connection_check = time.monotonic() + CHANGE_POLL_SECONDS
            close_old_connections()
        if not self._lead():
            return self._standby_interval()
        deadline = time.monotonic() + FLUSH_SECONDS
        with runs_collected(self._pending_runs):
            while True:
                interval = super().tick(*args, **kwargs)
                if (interval and interval > 0) or time.monotonic() >= deadline:
                    break
        if self._dirty or self._pending_runs:
            self._do_sync()
        # Tick again before the lock is due for renewal.
        return max(0.0, min(interval, self._renew_at - time.monotonic()))

    def adjust(self, n, drift=0.0):
        """Sleep until the next due time, not 10 ms less (Celery's drift): at hundreds of
        runs a second, waking early means spinning through ticks that find nothing due."""
        return n

    def _renew_interval(self) -> float:
        """Seconds between renewals: well inside the lock's expiry, and often enough for the heartbeat."""
        return max(0.1, min(beat_service.lock_seconds() / 3, float(self.max_interval)))

    def _lead(self) -> bool:
        """Take or renew the leader lock; True if this beat may send now."""
        if self._leading and time.monotonic() < self._renew_at:
            return True
        if self._lock is None:
            self._lock = beat_service.BeatLock(self.app, self.identity)
        try:
            status, holder = self._lock.tick(max_interval=float(self.max_interval))
        except BROKER_ERRORS as exc:
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
        self._renew_at = time.monotonic() + self._renew_interval()
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

    @property
    def schedule(self):
        """The entries, kept in step with the database without reading every row on each change.

        Every ``CHANGE_POLL_SECONDS`` beat asks whether ``PeriodicTasks`` changed (and every
        ``FULL_CHECK_SECONDS`` it looks anyway). On a change it reads one small row per
        enabled schedule (``FINGERPRINT_FIELDS``) and rebuilds only the entries whose row
        differs: an edit costs milliseconds at 10,000 schedules instead of a full reload.
        """
        now = time.monotonic()
        if self._initial_read:
            self._initial_read = False
            self._load_all()
            self._next_poll, self._next_full_check = now + CHANGE_POLL_SECONDS, now + FULL_CHECK_SECONDS
        elif now >= self._next_poll:
            self._next_poll = now + CHANGE_POLL_SECONDS
            changed = self.schedule_changed()
            if changed or now >= self._next_full_check:
                self._next_full_check = now + FULL_CHECK_SECONDS
                self._load_changes()
        return self._schedule

    def schedule_changed(self) -> bool:
        # django-celery-beat misses the first change when there was no change mark at the last look.
        last = self._last_timestamp
        changed = super().schedule_changed()
        return changed or (last is None and self._last_timestamp is not None)

    def _fingerprint_rows(self) -> dict[int, tuple]:
        # As text, compared as read: no conversion to Python values (half the time at 10,000 rows).
        as_text = {f"fingerprint_{i}": Cast(field, TextField()) for i, field in enumerate(FINGERPRINT_FIELDS)}
        rows = self.enabled_models_qs().annotate(**as_text).values_list("pk", *as_text)
        return {row[0]: row[1:] for row in rows}

    def _entry_of(self, model):
        """The entry of a row; None, with the schedule marked in error, when it cannot be built."""
        try:
            return self.Entry(model, app=self.app)
        except Exception as exc:  # any row written around the forms: beat must keep running
            message = gettext("could not be loaded: %(error)s") % {"error": _describe(exc)}
            self._report_error(model.name, message, stored=stored_error(model))
            return None

    def _read_entries(self, pks=None) -> dict:
        """Entries of the enabled rows (of ``pks``, or all); a row that cannot even be read is skipped and reported.

        A value the ORM cannot convert (an unknown time zone in a crontab row) fails the
        whole query, so the rows are then read one at a time to find it.
        """
        queryset = self.enabled_models_qs()
        if pks is not None:
            queryset = queryset.filter(pk__in=pks)
        try:
            models = list(queryset)
        except DatabaseError:
            raise
        except Exception:
            logger.warning("beat %s: a schedule row cannot be read; reading them one by one", self.identity.id)
            ids = list(queryset.values_list("pk", flat=True))
            models = []
            for pk in ids:
                try:
                    models.extend(self.enabled_models_qs().filter(pk=pk))
                except DatabaseError:
                    raise
                except Exception as exc:
                    name = PeriodicTask.objects.filter(pk=pk).values_list("name", flat=True).first() or f"#{pk}"
                    self._report_error(name, gettext("could not be read: %(error)s") % {"error": _describe(exc)})
        entries = {}
        for model in models:
            entry = self._entry_of(model)
            if entry is not None:
                entries[model.name] = entry
        return entries

    def _report_error(self, name: str, message: str, *, stored: str = "") -> None:
        """Mark schedule ``name`` in error (page, list, alerts, audit) once per distinct message."""
        if self._errors.get(name) == message:
            return
        self._errors[name] = message
        if stored == message:
            logger.error("Schedule %s is still in error: %s", name, message)
            return
        try:
            schedule_service.schedule_mark_error(name=name, error=message)
        except Exception:  # the database may be down too: the log keeps it
            logger.exception("beat %s could not record the error of schedule %s: %s", self.identity.id, name, message)

    def _clear_error(self, entry) -> None:
        if entry.name not in self._errors and not getattr(entry, "stored_error", ""):
            return
        self._errors.pop(entry.name, None)
        entry.stored_error = ""
        try:
            schedule_service.schedule_clear_error(name=entry.name)
            if hasattr(entry.model, "taskcenter_policy"):
                entry.model.taskcenter_policy.error = ""
        except Exception:
            logger.exception("beat %s could not clear the error of schedule %s", self.identity.id, entry.name)

    def _load_all(self) -> None:
        self.sync()
        # The change mark first: a change made while the rows are read is seen at the next poll.
        self._last_timestamp = self.Changes.last_change()
        fingerprints = self._fingerprint_rows()
        # Read after the fingerprints: a row that changes in between is only rebuilt once more.
        schedule = self._read_entries()
        self._schedule, self._fingerprints = schedule, fingerprints
        logger.info("beat %s loaded %s schedules", self.identity.id, len(schedule))

    def _load_changes(self) -> None:
        """Replace the entries of rows added, changed or removed since the last read, and their heap events."""
        self.sync()  # what was sent is saved before rows are read back
        if self._dirty:
            return  # the database refused the save: reading rows back now would forget runs sent
        try:
            fingerprints = self._fingerprint_rows()
        except DatabaseError:
            logger.exception("beat %s could not read the schedules; keeping the loaded ones", self.identity.id)
            return
        changed = [pk for pk, row in fingerprints.items() if self._fingerprints.get(pk) != row]
        removed = self._fingerprints.keys() - fingerprints.keys()
        if not changed and not removed:
            return
        stale = {self._fingerprints[pk][NAME_INDEX] for pk in removed}
        stale.update(self._fingerprints[pk][NAME_INDEX] for pk in changed if pk in self._fingerprints)
        fresh = {}
        for name in stale:
            self._errors.pop(name, None)  # a changed row is judged afresh
        try:
            for start in range(0, len(changed), CHANGED_BATCH):
                fresh.update(self._read_entries(changed[start : start + CHANGED_BATCH]))
        except DatabaseError:
            logger.exception("beat %s could not read the changed schedules; keeping the loaded ones", self.identity.id)
            return
        stale.update(fresh)  # a new entry replaces any other of the same name
        for name in stale:
            self._schedule.pop(name, None)
        self._schedule.update(fresh)
        self._fingerprints = fingerprints
        if self._heap is not None:
            self._heap = [event for event in self._heap if event.entry.name not in stale]
            heapq.heapify(self._heap)
            tolerance = self.misfire_tolerance()
            for entry in fresh.values():
                entry.tolerance = tolerance
                heapq.heappush(self._heap, self._event(entry))
        logger.info(
            "beat %s: schedule changed (%s added or changed, %s removed)",
            self.identity.id,
            len(fresh),
            len(stale - fresh.keys()),
        )

    def sync(self):
        """Save ``last_run_at`` of every entry sent since the last sync and the runs collected, in one transaction.

        django-celery-beat reads and saves each entry's row in turn (two queries each);
        here the rows are updated in batches, so a beat taking over finds every run sent
        up to the end of the last tick.
        """
        names = list(self._dirty)
        models = [self._schedule[name].model for name in names if name in self._schedule]
        runs = list(self._pending_runs)
        if not models and not runs:
            self._dirty.difference_update(names)
            return
        try:
            with transaction.atomic():
                if models:
                    PeriodicTask.objects.bulk_update(models, ["last_run_at", "total_run_count"], batch_size=500)
                if runs:
                    runs_write(runs)
        except (DatabaseError, InterfaceError):
            logger.exception("beat %s could not save %s sent runs; trying again", self.identity.id, len(runs))
            if len(self._pending_runs) > MAX_PENDING_RUNS:
                logger.error("beat %s dropped %s unsaved run records", self.identity.id, len(self._pending_runs))
                self._pending_runs.clear()
            return
        self._dirty.difference_update(names)
        del self._pending_runs[: len(runs)]

    def misfire_tolerance(self) -> float:
        return max(MIN_TOLERANCE, float(self.max_interval or 0))

    def populate_heap(self, event_t=event_t, heapify=heapq.heapify):
        """Celery's ``populate_heap``, with each entry evaluated on its own (``is_due`` below)."""
        tolerance = self.misfire_tolerance()
        self._heap = []
        for entry in self.schedule.values():
            if isinstance(entry, TaskcenterEntry):
                entry.tolerance = tolerance
            self._heap.append(self._event(entry))
        heapify(self._heap)

    def _event(self, entry):
        is_due, delay = self.is_due(entry)
        try:
            when = self._when(entry, 0 if is_due else delay) or 0
        except Exception as exc:
            self._report_error(entry.name, gettext("could not be evaluated: %(error)s") % {"error": _describe(exc)})
            when = time.time() + ERROR_RECHECK
        return event_t(when, 5, entry)

    def is_due(self, entry):
        """Whether ``entry`` is due; a schedule that raises is marked in error and looked at again later."""
        try:
            return entry.is_due()
        except Exception as exc:  # one schedule must never stop beat
            message = gettext("could not be evaluated: %(error)s") % {"error": _describe(exc)}
            self._report_error(entry.name, message, stored=getattr(entry, "stored_error", ""))
            return schedules.schedstate(False, ERROR_RECHECK)

    # Sending ------------------------------------------------------------------------

    def apply_entry(self, entry, producer=None):
        refusal = send_refusal(entry)
        if refusal:
            # reserve() already moved the entry on; a refused run is not counted (a one-off is, to end it).
            if not entry.model.one_off:
                entry.model.total_run_count = max(0, entry.model.total_run_count - 1)
            logger.error("Schedule %s not sent: %s", entry.name, refusal)
            message = gettext("refused at send time: %(refusal)s") % {"refusal": refusal}
            self._report_error(entry.name, message, stored=entry.stored_error)
            return
        decision = getattr(entry, "decision", None)
        policy = getattr(entry, "policy", None) or Policy()
        if decision is not None and decision.verdict == SKIP:
            self._skip(entry, decision.reason, cause=decision.cause, skipped=decision.skipped, due_at=decision.due_at)
            return
        if policy.max_instances:
            active = self._active_runs(entry.name, policy.max_instances)
            if active >= policy.max_instances:
                reason = ngettext(
                    "max instances: %(count)s run still active", "max instances: %(count)s runs still active", active
                ) % {"count": active}
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

    def apply_async(self, entry, producer=None, advance=True, **kwargs):
        """Send ``entry``; a schedule whose message cannot be built or sent is marked in error.

        A broker that is down is not the schedule's fault: that is logged, not recorded.
        """
        try:
            result = super().apply_async(entry, producer=producer, advance=advance, **kwargs)
        except Exception as exc:
            cause = exc.__context__ or exc
            if not isinstance(cause, (OperationalError, *BROKER_ERRORS)):
                message = gettext("could not be sent: %(error)s") % {"error": _describe(cause)}
                self._report_error(entry.name, message, stored=entry.stored_error)
            raise
        self._clear_error(entry)
        return result

    def _skip(self, entry, reason: str, *, cause: str, skipped: int, due_at) -> None:
        """Drop a due run: ``reserve()`` already moved the entry on and counted it, so uncount it."""
        if not entry.model.one_off:  # a one-off counts, so that ModelEntry disables it
            entry.model.total_run_count = max(0, entry.model.total_run_count - 1)
        self._record_skip(entry, reason, cause=cause, skipped=skipped, due_at=due_at)

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
        runs = Run.objects.filter(SENT_BY_SCHEDULE, periodic_task_name=name)
        expires = self.app.conf.result_expires
        if expires:
            seconds = expires.total_seconds() if isinstance(expires, timedelta) else float(expires)
            runs = runs.filter(created_at__gte=timezone.now() - timedelta(seconds=seconds))
        try:
            return runs.filter(state_in(ACTIVE_STATES))[:limit].count()
        except DatabaseError:
            logger.exception("Could not count the active runs of schedule %s; sending anyway", name)
            return 0


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
