"""The monitor process: consume Celery events, flush counts, sample queues, survive broker outages.

One thread does everything: ``drain_events`` with a short timeout hands events
to the aggregator, the worker tracker and the run recorder, and between (and during) bursts the
due periodic jobs run: worker states to Redis at most once per second per
worker, a flush every ``flush_interval`` seconds, queue samples every
``sample_interval`` seconds, retention every ten minutes. No event causes a
database query; a flush costs a handful of statements whatever the event rate,
plus two per 500 runs that had events (their state, times, worker and attempts,
see ``taskcenter.monitor.runs``), and for failed runs their failure groups (a few
statements per flush, see ``taskcenter.monitor.failures``).

Only one monitor counts at a time: it holds ``taskcenter:monitor:lock`` in
Redis, renewed at every flush. A second monitor stands by until the lock is
free (a restart, or the first one died and the lock expired). SIGTERM and
SIGINT end the process after a last flush and release the lock.

Every ``TASKCENTER_RECOVERY_INTERVAL`` seconds it also gives back to their queues the
task messages that no live worker holds any more (a killed worker's, a broker
restart's), see ``taskcenter.recovery``, and ends their open attempt as lost; the
runs of a worker that is gone follow their task type's recovery strategy (SKIP and
MANUAL take the message out and record the run failed instead).
"""

import logging
import os
import signal
import socket
import time
import uuid
from contextlib import ExitStack
from datetime import UTC, datetime
from functools import partial

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from kombu import Consumer

from taskcenter.broker import BROKER_ERRORS
from taskcenter.monitor.aggregate import Aggregator, WorkerTracker
from taskcenter.monitor.failures import FailureCollector, failures_write
from taskcenter.monitor.redis_state import MonitorRedis
from taskcenter.monitor.runs import RunChanges, runs_changes_write, runs_lost_reconcile
from taskcenter.monitor.store import flush_write, minutes_load, old_rows_delete, queue_samples_record, runs_lookup
from taskcenter.recovery import HolderTracker, Recovery, recovery_settings

logger = logging.getLogger("taskcenter.monitor")

DEFAULT_FLUSH_INTERVAL = 2.0
DEFAULT_SAMPLE_INTERVAL = 10.0
DEFAULT_MAX_TASKS = 100_000
#: Seconds between two runs of the retention clean-up.
CLEANUP_INTERVAL = 600.0
#: Seconds between two catch-ups of SQLite's text index (taskcenter.search_index).
SEARCH_INDEX_INTERVAL = 1.0
#: Seconds between two writes of worker states (each worker is written at most once per second).
WORKER_WRITE_INTERVAL = 0.25
#: Longest wait in drain_events, so periodic jobs run on time when no event comes.
POLL_TIMEOUT = 0.5
#: Pause after a drain that delivered events, so the next one reads a batch instead of one message:
#: it caps the wake-ups (and their system calls) at about 50 a second; capacity is unchanged.
BATCH_PAUSE = 0.02
#: Reconnection backoff after a broker failure: first and longest wait (seconds).
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
#: Recovered messages kept in memory at most while their record fails.
MAX_UNRECORDED = 10_000
#: Seconds between two activity lines in the log.
REPORT_INTERVAL = 60.0


class HoldersOrResults(dict):
    """The worker that last held each task id, from events; for an id the monitor saw no event of
    (it started, or its stream reconnected, after the task was received), the worker its STARTED
    result names. So a run orphaned then still gets its task type's strategy, not a plain give-back.
    One indexed read per such id and sweep, only for the orphans a sweep looks at."""

    def __init__(self, known):
        super().__init__(known)
        self._from_results: dict[str, str | None] = {}

    def get(self, task_id, default=None):
        if task_id in self:
            return self[task_id]
        if task_id not in self._from_results:
            from django_celery_results.models import TaskResult

            try:
                self._from_results[task_id] = (
                    TaskResult.objects.filter(task_id=task_id, status="STARTED")
                    .values_list("worker", flat=True)
                    .first()
                )
            except DatabaseError:
                self._from_results[task_id] = None
        return self._from_results[task_id] or default


class _Interrupt(Exception):
    """Raised from the event callback to leave drain_events (stop asked or lock lost)."""


class _BrokerLost(Exception):
    """The event stream's connection failed; reconnect."""


class Monitor:
    def __init__(
        self,
        *,
        app=None,
        flush_interval: float | None = None,
        sample_interval: float | None = None,
        max_tasks: int | None = None,
    ):
        if app is None:
            from celery import current_app as app
        self.app = app
        self.flush_interval = float(
            flush_interval or getattr(settings, "TASKCENTER_MONITOR_FLUSH_INTERVAL", DEFAULT_FLUSH_INTERVAL)
        )
        self.sample_interval = float(
            sample_interval or getattr(settings, "TASKCENTER_MONITOR_SAMPLE_INTERVAL", DEFAULT_SAMPLE_INTERVAL)
        )
        max_tasks = int(max_tasks or getattr(settings, "TASKCENTER_MONITOR_MAX_TASKS", DEFAULT_MAX_TASKS))
        self.identity = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.aggregator = Aggregator(max_tasks=max_tasks)
        self.workers = WorkerTracker()
        self.runs = RunChanges()
        self.failures = FailureCollector()
        self.lost_suspects: set[str] = set()
        self.watching_since: datetime | None = None  # since when the event stream is read without a break
        self.lost_check_interval = float(settings.TASKCENTER_MONITOR_LOST_CHECK_INTERVAL)
        self.redis = MonitorRedis(app, identity=self.identity, lock_seconds=max(30.0, 10 * self.flush_interval))
        self.holders = HolderTracker(max_ids=max_tasks)
        self.recovery = Recovery(app)
        self.recovery_interval = recovery_settings()[0]
        self.stream_since: float | None = None  # Unix time the event stream was last connected, None while down
        self.stream_lost_at: float | None = None
        self.unrecorded: list = []  # recovered messages whose record failed (see _recover)
        self.stopping: str | bool = False
        self.lost_lock = False
        now = time.monotonic()
        self._next = {
            "workers": now,
            "flush": now + self.flush_interval,
            "sample": now,
            "cleanup": now,
            "lost": now + self.lost_check_interval,
            "notify": now + 1.0,
            "recover": now + self.recovery_interval,
            "search_index": now,
        }
        self._next_due = now
        self._last_event_written: float | None = None
        self._redis_failing = False
        self._db_failing = False
        self._report = {"at": now, "events": 0, "flushes": 0, "rows": 0, "flush_seconds": 0.0}

    # --- life cycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM or SIGINT."""
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._on_signal)
        logger.info(
            "Monitor %s starting: flush every %gs, queue samples every %gs", self.identity, self.flush_interval,
            self.sample_interval,
        )  # fmt: skip
        holding = False
        while not self.stopping:
            if not self._acquire_lock():
                break
            holding, self.lost_lock = True, False
            try:
                self.workers.restore(self.redis.read_workers())
                self.redis.write(started=time.time(), tick=time.time())
            except BROKER_ERRORS as exc:
                self._redis_problem(exc)
            self._consume_with_reconnects()
            if self.lost_lock:
                holding = False
                logger.error(
                    "Monitor %s lost its lock to %s; dropping counts not written and standing by",
                    self.identity, self._holder(),
                )  # fmt: skip
                self.aggregator.forget_counts()
                self.runs.forget()
                self.failures.forget()
        if self.stopping:
            logger.info("Monitor %s: %s received, flushing and stopping", self.identity, self.stopping)
        if holding:
            self._flush(final=True)
            try:
                self.redis.release_lock()
            except BROKER_ERRORS:
                logger.warning("Could not release the monitor lock (broker unreachable); it expires by itself")
        self.redis.disconnect()
        logger.info("Monitor %s stopped after %d events", self.identity, self.aggregator.events_seen)

    def _on_signal(self, signum, frame) -> None:
        self.stopping = signal.Signals(signum).name  # truthy; logged once the loop has stopped

    def _acquire_lock(self) -> bool:
        announced = False
        while not self.stopping:
            try:
                if self.redis.hold_lock():
                    if announced:
                        logger.info("Monitor %s took the lock; counting events", self.identity)
                    return True
                reason = f"monitor {self._holder()} holds the lock"
            except BROKER_ERRORS as exc:
                reason = f"broker unreachable ({exc})"
            if not announced:
                logger.warning("Monitor %s standing by: %s; retrying every 2 s", self.identity, reason)
                announced = True
            self._sleep(2.0, periodic=False)
        return False

    def _holder(self) -> str:
        try:
            return self.redis.lock_holder() or "nobody"
        except BROKER_ERRORS:
            return "unknown"

    def _consume_with_reconnects(self) -> None:
        backoff = BACKOFF_FIRST
        while not self.stopping and not self.lost_lock:
            connected_at = time.monotonic()
            try:
                self._consume()
            except (_BrokerLost, *BROKER_ERRORS) as exc:
                if time.monotonic() - connected_at > 60:
                    backoff = BACKOFF_FIRST
                if self.stream_since is not None:
                    self.stream_since, self.stream_lost_at = None, time.time()
                logger.warning("Event stream lost: %s; reconnecting in %.0f s", exc or type(exc).__name__, backoff)
                self._sleep(backoff)
                backoff = min(backoff * 2, BACKOFF_MAX)

    def _consume(self) -> None:
        conn = self.app.connection_for_read()
        broken = False
        try:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=5)
            receiver = self.app.events.Receiver(conn, handlers={"*": self._on_event})
            channel = conn.default_channel
            with ExitStack() as stack:
                for consumer in receiver.get_consumers(partial(Consumer, channel), channel):
                    stack.enter_context(consumer)
                try:  # ask every worker for a heartbeat now, to learn them at once
                    receiver.wakeup_workers(channel=channel)
                except BROKER_ERRORS as exc:
                    logger.warning("Could not ask workers for a heartbeat: %s", exc)
                logger.info("Monitor %s consuming events from %s", self.identity, conn.as_uri())
                self.watching_since = datetime.now(UTC)  # events before this were not seen
                self.stream_since = time.time()
                while not self.stopping and not self.lost_lock:
                    try:
                        conn.drain_events(timeout=POLL_TIMEOUT)
                    except TimeoutError:
                        pass
                    except _Interrupt:
                        break
                    else:
                        time.sleep(BATCH_PAUSE)
                    self._periodic()
        except Exception as exc:
            if not isinstance(exc, (*BROKER_ERRORS, *conn.connection_errors, *conn.channel_errors)):
                raise
            broken = True
            raise _BrokerLost(str(exc) or type(exc).__name__) from exc
        finally:
            if broken:
                conn.collect()
            else:
                conn.release()

    def _on_event(self, event: dict) -> None:
        try:
            self.aggregator.handle(event)
            self.workers.handle(event)
            self.runs.handle(event)
            self.failures.handle(event)
            self.holders.handle(event)
        except Exception:
            logger.exception("Could not count event %.300r", event)
        if time.monotonic() >= self._next_due:
            self._periodic()
        if self.stopping or self.lost_lock:
            raise _Interrupt

    def _sleep(self, seconds: float, *, periodic: bool = True) -> None:
        """Wait ``seconds`` (less if stopping), running due periodic jobs meanwhile."""
        end = time.monotonic() + seconds
        while not self.stopping and (left := end - time.monotonic()) > 0:
            time.sleep(min(left, 0.25))
            if periodic:
                self._periodic()

    # --- periodic jobs ------------------------------------------------------------------

    def _periodic(self) -> None:
        now = time.monotonic()
        if now < self._next_due:
            return
        if now >= self._next["workers"]:
            self._write_workers()
            self._next["workers"] = now + WORKER_WRITE_INTERVAL
        if now >= self._next["flush"]:
            self._flush()
            self._next["flush"] = time.monotonic() + self.flush_interval
        if now >= self._next["sample"]:
            self._sample_queues()
            self._next["sample"] = time.monotonic() + self.sample_interval
        if now >= self._next["cleanup"]:
            self._cleanup()
            self._next["cleanup"] = time.monotonic() + CLEANUP_INTERVAL
        if now >= self._next["lost"]:
            self._reconcile_lost()
            self._next["lost"] = time.monotonic() + self.lost_check_interval
        if now >= self._next["notify"]:
            self._notify()
        if now >= self._next["recover"]:
            self._recover()
            self._next["recover"] = time.monotonic() + self.recovery_interval
        if now >= self._next["search_index"]:
            self._index_search()
            self._next["search_index"] = time.monotonic() + SEARCH_INDEX_INTERVAL
        if now - self._report["at"] >= REPORT_INTERVAL:
            self._log_activity(now)
        self._next_due = min(self._next.values())

    def _notify(self) -> None:
        """Evaluate the alerts and send notifications in a thread of their own (services.notifications)."""
        from taskcenter.services.notifications import notifications_pass_start

        interval = float(getattr(settings, "TASKCENTER_NOTIFY_INTERVAL", 30.0))
        self._next["notify"] = time.monotonic() + (interval if interval > 0 else 3600.0)
        if interval > 0:
            notifications_pass_start()

    def _write_workers(self) -> None:
        due = self.workers.due()
        last_event = self.aggregator.last_event_at
        if last_event == self._last_event_written:
            last_event = None
        if not due and last_event is None:
            return
        try:
            self.redis.write(workers=due, last_event=last_event)
        except BROKER_ERRORS as exc:
            self._redis_problem(exc)
            return
        self._redis_ok()
        self.workers.written(due)
        if last_event is not None:
            self._last_event_written = last_event

    def _flush(self, *, final: bool = False) -> bool:
        """Write what was counted; keep it in memory when the database fails. Returns whether it wrote."""
        started = time.monotonic()
        if not final:
            try:
                if not self.redis.hold_lock():
                    self.lost_lock = True
                    return False
            except BROKER_ERRORS as exc:
                self._redis_problem(exc)  # no events come either; the lock is checked again next time
        aggregator = self.aggregator
        try:
            close_old_connections()
            unknown = aggregator.unknown_ids()
            aggregator.resolve(runs_lookup(unknown) if unknown else {}, final=final)
            to_load = aggregator.minutes_to_load()
            if to_load:
                for minute, rows in minutes_load(to_load).items():
                    aggregator.merge_loaded(minute, rows)
            rows = aggregator.rows_to_write()
            if rows or aggregator.totals:
                flush_write(rows, aggregator.totals)
            aggregator.flushed(rows)
            self._write_runs(final=final)
            self._write_failures()
        except DatabaseError as exc:
            if not self._db_failing:
                logger.warning("Flush failed, counts kept in memory and written later: %s", exc)
            self._db_failing = True
            connection.close_if_unusable_or_obsolete()
            return False
        if self._db_failing:
            logger.info("Database answers again; counts written")
            self._db_failing = False
        try:
            self.redis.write(tick=time.time())
        except BROKER_ERRORS as exc:
            self._redis_problem(exc)
        elapsed = time.monotonic() - started
        self._report["flushes"] += 1
        self._report["rows"] += len(rows)
        self._report["flush_seconds"] = max(self._report["flush_seconds"], elapsed)
        if rows:
            logger.debug("Flushed %d minute rows in %.0f ms", len(rows), elapsed * 1000)
        return True

    def _write_runs(self, *, final: bool) -> None:
        """Write the runs' own records from their events; keep them in memory when the database fails."""
        if not self.runs:
            return
        taken = self.runs.take()
        try:
            later = runs_changes_write(taken, now=float("inf") if final else None)
        except DatabaseError:
            self.runs.keep(taken)
            raise
        self.runs.keep(later)

    def _write_failures(self) -> None:
        """Group the failures seen (after the runs' rows are written); keep them when the database fails."""
        if not self.failures:
            return
        taken = self.failures.take()
        try:
            later = failures_write(taken)
        except DatabaseError:
            self.failures.keep(taken)
            raise
        self.failures.keep(later)

    def _recover(self) -> None:
        """Give back (or, per their strategy, take out) the messages no live worker holds; record what was done."""
        if self.recovery_interval <= 0 or (self.stream_since is None and self.stream_lost_at is None):
            return  # no heartbeat seen yet: no worker can be judged gone
        try:
            with self.redis.connection.calls():
                channel = self.redis.connection._connection.default_channel
                restored = self.recovery.sweep(
                    channel,
                    workers=list(self.workers.workers.values()),
                    holders=HoldersOrResults(self.holders.holders),
                    watching_since=self.stream_since,
                    stream_lost_at=self.stream_lost_at,
                    plan=self._plan_orphans,
                )
        except BROKER_ERRORS as exc:
            self._redis_problem(exc)
            return
        now = time.time()
        from taskcenter.services.recovery import orphan_exception, recovery_record

        for item in restored:
            self.runs.handle({"type": "task-restored", "uuid": item.task_id, "timestamp": now, "reason": item.reason})
            if item.removed:  # SKIP, MANUAL: the run ends here, failed as lost
                failed = {
                    "type": "task-failed", "uuid": item.task_id, "timestamp": now, "hostname": item.holder or "",
                    "exception": repr(orphan_exception(item)), "traceback": "",
                }  # fmt: skip
                for consumer in (self.aggregator, self.runs, self.failures, self.holders):
                    consumer.handle(failed)
        if restored:
            logger.warning("Recovered %d message(s) that no live worker held", len(restored))
        # What could not be recorded (database down) is recorded at a later sweep: a run taken out
        # of the broker (SKIP, MANUAL) still gets its failed result and its recovery action.
        pending, self.unrecorded = self.unrecorded + restored, []
        if pending:
            try:
                close_old_connections()
                recovery_record(restored=pending)
            except DatabaseError as exc:
                self.unrecorded = pending[-MAX_UNRECORDED:]
                logger.warning("Could not record %d recovered message(s), will try again: %s", len(pending), exc)

    def _plan_orphans(self, orphans: list) -> dict | None:
        """The strategies of the orphans found (a few indexed reads per sweep); None while the database fails."""
        from taskcenter.services.recovery import orphans_plan

        try:
            close_old_connections()
            return orphans_plan(orphans)
        except DatabaseError as exc:
            logger.warning("Orphaned messages left for the next sweep: their strategies cannot be read: %s", exc)
            return None

    def _reconcile_lost(self) -> None:
        from taskcenter.services.errors import ServiceError

        try:
            close_old_connections()
            if self.watching_since is not None:
                self.lost_suspects, _ = runs_lost_reconcile(self.lost_suspects, since=self.watching_since)
        except ServiceError as exc:  # BrokerDown
            logger.debug("Search for lost runs skipped: %s", exc)
        except DatabaseError as exc:
            logger.warning("Search for lost runs failed: %s", exc)

    def _sample_queues(self) -> None:
        from taskcenter.services.errors import ServiceError

        try:
            close_old_connections()
            queue_samples_record(list(settings.TASKCENTER_QUEUES))
        except ServiceError as exc:  # BrokerDown
            logger.debug("Queue sample skipped: %s", exc)
        except DatabaseError as exc:
            logger.warning("Queue sample not stored: %s", exc)

    def _cleanup(self) -> None:
        try:
            close_old_connections()
            minutes, samples = old_rows_delete()
        except DatabaseError as exc:
            logger.warning("Retention clean-up failed: %s", exc)
        else:
            if minutes or samples:
                logger.info("Deleted %d old minute rows and %d old queue samples", minutes, samples)
        try:
            forgotten = self.redis.forget_old_workers()
        except BROKER_ERRORS as exc:
            self._redis_problem(exc)
        else:
            if forgotten:
                logger.info("Forgot workers not seen for a day: %s", ", ".join(forgotten))

    def _index_search(self) -> None:
        """Index the runs noted since the last pass (SQLite; a no-op on PostgreSQL)."""
        from taskcenter.search_index import search_index_catch_up

        try:
            search_index_catch_up()
        except DatabaseError as exc:
            logger.warning("Text index catch-up failed (retried in %gs): %s", SEARCH_INDEX_INTERVAL, exc)
            close_old_connections()

    def _redis_problem(self, exc) -> None:
        if not self._redis_failing:
            logger.warning("Broker unreachable, worker states and liveness not written: %s", exc)
        self._redis_failing = True

    def _redis_ok(self) -> None:
        if self._redis_failing:
            logger.info("Broker answers again; worker states written")
        self._redis_failing = False

    def _log_activity(self, now: float) -> None:
        report = self._report
        events = self.aggregator.events_seen - report["events"]
        seconds = max(now - report["at"], 1e-9)
        logger.info(
            "Monitor: %d events in %.0f s (%.0f/s), %d flushes, %d minute rows written, slowest flush %.0f ms, "
            "%d events waiting for a run lookup, %d task ids remembered",
            events, seconds, events / seconds, report["flushes"], report["rows"], report["flush_seconds"] * 1000,
            len(self.aggregator.pending), len(self.aggregator.tasks),
        )  # fmt: skip
        self._report = {"at": now, "events": self.aggregator.events_seen, "flushes": 0, "rows": 0, "flush_seconds": 0.0}
