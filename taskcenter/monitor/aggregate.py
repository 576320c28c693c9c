"""In-memory counting of Celery events; no database or broker access here.

``Aggregator`` turns task events into counts per (minute UTC, task name, queue)
and running-total deltas per (task name, queue). Task name and queue are on
task-sent only, so a bounded LRU map remembers them per task id, with the send
and start times that give the wait time and the run time of failures. Events of
ids it does not know (the monitor started while the task waited or ran) wait in
``pending`` until the runner looks their ``Run`` rows up, in one batched query
per flush, and hands them to ``resolve``.

``WorkerTracker`` keeps the last state of every worker from its heartbeats, with
the runs it finished (succeeded, failed, retried) since it came online, and says
which ones are due to be written (at most once per second each).
"""

import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from taskcenter.monitor.histogram import (
    DurationSketch,
    add_buckets,
    bucket_index,
    empty_buckets,
    histogram_json,
    histogram_parts,
    minute_start,
)

logger = logging.getLogger(__name__)

#: Counters of ``TaskMinute`` and ``TaskTotals``, one per counted event type.
COUNTERS = ("sent", "started", "succeeded", "failed", "retried", "revoked")
#: Task name or queue recorded when neither the events nor the Run table tell it.
UNKNOWN = "unknown"
#: Counted task event -> counter.
#: Task event -> the worker state's counter of runs it ended that way (``WorkerTracker``).
WORKER_COUNTED_EVENTS = {"task-succeeded": "succeeded", "task-failed": "failed", "task-retried": "retried"}
COUNTED_EVENTS = {
    "task-sent": "sent",
    "task-started": "started",
    "task-succeeded": "succeeded",
    "task-failed": "failed",
    "task-retried": "retried",
    "task-revoked": "revoked",
}
#: Events after which nothing more is counted for a task id, so the LRU map forgets it (a retry is not one).
FINAL_EVENTS = ("task-succeeded", "task-failed", "task-revoked")
#: Column widths of ``task_name`` and ``queue``: longer values are cut so a row can always be written.
NAME_LENGTH, QUEUE_LENGTH = 255, 200
WORKER_EVENTS = ("worker-online", "worker-heartbeat", "worker-offline")


class Counts:
    """Counters, histograms and sums of one task type on one queue (in a minute, or a delta).

    Each duration goes into the coarse buckets (for ``/metrics``) and into a
    ``DurationSketch`` (for percentiles within 1 %).
    """

    __slots__ = (
        *COUNTERS, "runtime_sum", "runtime_buckets", "runtime_sketch", "wait_sum", "wait_buckets", "wait_sketch"
    )  # fmt: skip

    def __init__(self):
        for name in COUNTERS:
            setattr(self, name, 0)
        self.runtime_sum = 0.0
        self.runtime_buckets = empty_buckets()
        self.runtime_sketch = DurationSketch()
        self.wait_sum = 0.0
        self.wait_buckets = empty_buckets()
        self.wait_sketch = DurationSketch()

    @classmethod
    def from_row(cls, row) -> "Counts":
        """Counts of a ``TaskMinute`` or ``TaskTotals`` row (or any object with the same attributes)."""
        counts = cls()
        counts.add(row)
        return counts

    def observe_runtime(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.runtime_sum += seconds
        self.runtime_buckets[bucket_index(seconds)] += 1
        self.runtime_sketch.add(seconds)

    def observe_wait(self, seconds: float) -> None:
        seconds = max(0.0, seconds)
        self.wait_sum += seconds
        self.wait_buckets[bucket_index(seconds)] += 1
        self.wait_sketch.add(seconds)

    def add(self, other) -> None:
        """Add another ``Counts``, or a stored row (histogram fields in either stored form)."""
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + (getattr(other, name) or 0))
        self.runtime_sum += other.runtime_sum or 0.0
        self.wait_sum += other.wait_sum or 0.0
        for kind in ("runtime", "wait"):
            buckets, sketch = histogram_parts(getattr(other, f"{kind}_buckets"))
            add_buckets(getattr(self, f"{kind}_buckets"), buckets)
            getattr(self, f"{kind}_sketch").merge(getattr(other, f"{kind}_sketch", None) or sketch)

    def sketch_complete(self, kind: str) -> bool:
        """Whether the sketch of ``kind`` ("runtime" or "wait") holds every duration counted.

        False when some came from rows written before sketches were stored: their
        percentiles can only be estimated from the coarse buckets.
        """
        return getattr(self, f"{kind}_sketch").count >= sum(getattr(self, f"{kind}_buckets"))

    def fields(self) -> dict:
        """The model fields with these values."""
        values = {name: getattr(self, name) for name in COUNTERS}
        values.update(
            runtime_sum=self.runtime_sum,
            runtime_buckets=histogram_json(self.runtime_buckets, self.runtime_sketch),
            wait_sum=self.wait_sum,
            wait_buckets=histogram_json(self.wait_buckets, self.wait_sketch),
        )
        return values

    def __eq__(self, other) -> bool:
        return isinstance(other, Counts) and self.fields() == other.fields()

    def __repr__(self) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)}" for name in COUNTERS if getattr(self, name))
        return f"Counts({inner})"


class TaskInfo:
    """What the monitor knows of one task id."""

    __slots__ = ("name", "queue", "sent_at", "started_at", "eta")

    def __init__(self):
        self.name: str | None = None
        self.queue: str | None = None  # None: not known yet
        self.sent_at: float | None = None
        self.started_at: float | None = None
        self.eta: float | None = None

    def wait_until(self, started: float) -> float | None:
        """Seconds from when the task could run (sent, or its ETA if later) to ``started``."""
        if self.sent_at is None:
            return None
        ready = self.sent_at if self.eta is None else max(self.sent_at, self.eta)
        return max(0.0, started - ready)


@dataclass(frozen=True)
class RunFacts:
    """What the ``Run`` row of a task id says, for ids the events did not describe."""

    task_name: str
    queue: str
    created_at: float | None
    eta: float | None
    started_at: float | None = None  # from the task's result, when a worker reported STARTED


@dataclass(frozen=True)
class PendingEvent:
    kind: str
    task_id: str
    timestamp: float
    runtime: float | None
    seen_at: float  # local clock when it arrived


@dataclass(frozen=True)
class MinuteRow:
    minute: datetime
    task_name: str
    queue: str
    counts: Counts


class Aggregator:
    """Counts task events in memory until the runner flushes them."""

    def __init__(self, *, max_tasks: int = 100_000, resolve_grace: float = 5.0, clock=time.time):
        self.max_tasks = max_tasks
        self.resolve_grace = resolve_grace
        self.clock = clock
        self.tasks: OrderedDict[str, TaskInfo] = OrderedDict()
        #: minute -> (task name, queue) -> counts. Absolute values for minutes in ``loaded``, else deltas.
        self.minutes: dict[datetime, dict[tuple[str, str], Counts]] = {}
        self.loaded: set[datetime] = set()
        self.dirty: set[tuple[datetime, str, str]] = set()
        #: (task name, queue) -> counts added since the last successful flush.
        self.totals: dict[tuple[str, str], Counts] = {}
        self.pending: list[PendingEvent] = []
        self.unresolved: set[str] = set()
        self.events_seen = 0
        self.last_event_at: float | None = None

    # --- events -----------------------------------------------------------------------

    def handle(self, event: dict) -> None:
        """Take one event (a dict as ``EventReceiver`` passes it); unknown types are ignored."""
        kind = event.get("type")
        self.events_seen += 1
        self.last_event_at = self.clock()
        if not kind or not kind.startswith("task-"):
            return
        task_id = event.get("uuid")
        if not task_id:
            return
        timestamp = _number(event.get("timestamp")) or _number(event.get("local_received")) or self.clock()
        info = self._info(task_id)
        if kind in ("task-sent", "task-received"):
            info.name = event.get("name") or info.name
            eta = _eta_timestamp(event.get("eta"))
            if eta is not None:
                info.eta = eta
        if kind == "task-sent":
            info.queue = event.get("queue") or event.get("routing_key") or info.queue or UNKNOWN
            info.sent_at = timestamp
        elif kind == "task-started":
            info.started_at = timestamp
        counter = COUNTED_EVENTS.get(kind)
        if counter is None:  # task-received, task-rejected: nothing to count
            return
        runtime = _number(event.get("runtime")) if kind == "task-succeeded" else None
        if info.queue is None or task_id in self.unresolved:
            self.unresolved.add(task_id)
            self.pending.append(PendingEvent(kind, task_id, timestamp, runtime, self.clock()))
            return
        self._apply(kind, info, timestamp, runtime)
        if kind in FINAL_EVENTS:  # a finished task needs no memory: the map holds waiting and running ones
            self.tasks.pop(task_id, None)

    def _info(self, task_id: str) -> TaskInfo:
        info = self.tasks.get(task_id)
        if info is None:
            info = self.tasks[task_id] = TaskInfo()
            if len(self.tasks) > self.max_tasks:
                self.tasks.popitem(last=False)
        else:
            self.tasks.move_to_end(task_id)
        return info

    def _apply(self, kind: str, info: TaskInfo, timestamp: float, runtime: float | None) -> None:
        key = ((info.name or UNKNOWN)[:NAME_LENGTH], (info.queue or UNKNOWN)[:QUEUE_LENGTH])
        minute = minute_start(timestamp)
        per_minute = self.minutes.setdefault(minute, {}).get(key)
        if per_minute is None:
            per_minute = self.minutes[minute][key] = Counts()
        total = self.totals.get(key)
        if total is None:
            total = self.totals[key] = Counts()
        counter = COUNTED_EVENTS[kind]
        wait = duration = None
        if kind == "task-started":
            wait = info.wait_until(timestamp)
        elif kind in ("task-succeeded", "task-failed"):
            duration = runtime
            if duration is None and info.started_at is not None:
                duration = timestamp - info.started_at
        for counts in (per_minute, total):
            setattr(counts, counter, getattr(counts, counter) + 1)
            if wait is not None:
                counts.observe_wait(wait)
            if duration is not None:
                counts.observe_runtime(duration)
        self.dirty.add((minute, *key))

    # --- ids the events did not describe ------------------------------------------------

    def unknown_ids(self) -> list[str]:
        """Ids of pending events whose name and queue are still unknown: look them up in the Run table."""
        ids = []
        for task_id in self.unresolved:
            info = self.tasks.get(task_id)
            if info is None or info.queue is None:
                ids.append(task_id)
        return ids

    def resolve(self, found: dict[str, RunFacts], *, final: bool = False) -> None:
        """Count the pending events, with what ``found`` (Run rows by task id) tells.

        An id that is neither known by now nor found waits for the next flush
        while its first event is younger than ``resolve_grace`` (its Run row may
        not be committed yet), unless ``final``; then it is counted under
        ``UNKNOWN`` names.
        """
        if not self.pending:
            return
        now = self.clock()
        kept: list[PendingEvent] = []
        for event in self.pending:
            info = self.tasks.get(event.task_id)
            if info is None:  # pushed out of the LRU map while it waited
                info = self._info(event.task_id)
            if info.queue is None:
                facts = found.get(event.task_id)
                if facts is not None:
                    info.name = facts.task_name or info.name
                    info.queue = facts.queue or UNKNOWN
                    if info.sent_at is None:
                        info.sent_at = facts.created_at
                    if info.eta is None:
                        info.eta = facts.eta
                    if info.started_at is None:  # started before this monitor ran: a failure's run time
                        info.started_at = facts.started_at
                elif not final and now - event.seen_at < self.resolve_grace:
                    kept.append(event)
                    continue
                else:
                    info.queue = UNKNOWN
            self._apply(event.kind, info, event.timestamp, event.runtime)
            if event.kind in FINAL_EVENTS:
                self.tasks.pop(event.task_id, None)
        self.pending = kept
        self.unresolved = {event.task_id for event in kept}

    # --- flushing -------------------------------------------------------------------

    def minutes_to_load(self) -> list[datetime]:
        """Minutes with new counts whose stored rows this process has not read yet."""
        return sorted({minute for minute, _, _ in self.dirty} - self.loaded)

    def merge_loaded(self, minute: datetime, rows: list[tuple[tuple[str, str], Counts]]) -> None:
        """Add the stored rows of ``minute`` to what was counted, making its counts absolute."""
        if minute in self.loaded:
            return
        per_minute = self.minutes.setdefault(minute, {})
        for key, counts in rows:
            per_minute.setdefault(key, Counts()).add(counts)
        self.loaded.add(minute)

    def rows_to_write(self) -> list[MinuteRow]:
        """Absolute values of every (minute, task, queue) changed since the last flush (loaded minutes only)."""
        return [
            MinuteRow(minute, name, queue, self.minutes[minute][(name, queue)])
            for minute, name, queue in sorted(self.dirty)
            if minute in self.loaded
        ]

    def flushed(self, rows: list[MinuteRow], *, now: float | None = None) -> None:
        """The runner wrote ``rows`` and the totals: forget deltas and minutes older than the previous one."""
        self.dirty -= {(row.minute, row.task_name, row.queue) for row in rows}
        self.totals = {}
        keep_from = minute_start((self.clock() if now is None else now) - 60)
        dirty_minutes = {minute for minute, _, _ in self.dirty}
        for minute in [m for m in self.minutes if m < keep_from and m not in dirty_minutes]:
            del self.minutes[minute]
            self.loaded.discard(minute)

    def forget_counts(self) -> None:
        """Drop every count not written yet (the monitor lost its lock to another one)."""
        self.minutes.clear()
        self.loaded.clear()
        self.dirty.clear()
        self.totals = {}
        self.pending = []
        self.unresolved = set()


class WorkerTracker:
    """The last known state of every worker, from worker events and the task events they send."""

    def __init__(self, *, min_interval: float = 1.0, clock=time.time):
        self.min_interval = min_interval
        self.clock = clock
        self.workers: dict[str, dict] = {}
        self.dirty: set[str] = set()
        self.written_at: dict[str, float] = {}

    def handle(self, event: dict) -> None:
        kind = event.get("type") or ""
        hostname = event.get("hostname")
        if not hostname:
            return
        timestamp = _number(event.get("timestamp")) or _number(event.get("local_received")) or self.clock()
        if kind in WORKER_EVENTS:
            state = self.workers.setdefault(hostname, _new_worker(hostname))
            state["online"] = kind != "worker-offline"
            if kind == "worker-online":  # the worker (re)started: runs it had started before are lost
                state["online_since"] = timestamp
                state.update(dict.fromkeys(WORKER_COUNTED_EVENTS.values(), 0))  # counted anew, as its own totals
            state["last_heartbeat"] = max(timestamp, state["last_heartbeat"] or 0.0)
            for field in ("active", "processed", "loadavg", "freq"):
                if event.get(field) is not None:
                    state[field] = event[field]
            self.dirty.add(hostname)
        elif kind.startswith("task-") and kind != "task-sent":
            # The worker's main process sent this, so it is alive (task-sent comes from publishers).
            state = self.workers.get(hostname)
            if state is None:
                return
            counter = WORKER_COUNTED_EVENTS.get(kind)
            if counter:
                state[counter] = (state.get(counter) or 0) + 1
                self.dirty.add(hostname)
            if timestamp > (state["last_heartbeat"] or 0.0):
                state["last_heartbeat"] = timestamp
                state["online"] = True
                self.dirty.add(hostname)

    def restore(self, states: list[dict]) -> None:
        """Start from the states a previous monitor wrote (not written again until they change)."""
        for state in states:
            hostname = state.get("hostname")
            if hostname and hostname not in self.workers:
                self.workers[hostname] = {**_new_worker(hostname), **state}

    def due(self, now: float | None = None) -> dict[str, dict]:
        """States of the workers that changed and were not written within ``min_interval``."""
        now = self.clock() if now is None else now
        return {
            hostname: dict(self.workers[hostname])
            for hostname in self.dirty
            if now - self.written_at.get(hostname, 0.0) >= self.min_interval
        }

    def written(self, hostnames, now: float | None = None) -> None:
        now = self.clock() if now is None else now
        for hostname in hostnames:
            self.written_at[hostname] = now
            self.dirty.discard(hostname)


def _new_worker(hostname: str) -> dict:
    return {
        "hostname": hostname,
        "online": True,
        "last_heartbeat": None,
        "active": None,
        "processed": None,
        "loadavg": None,
        "freq": 2.0,
        **dict.fromkeys(WORKER_COUNTED_EVENTS.values(), 0),
    }


def _number(value) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _eta_timestamp(value) -> float | None:
    """Unix time of an ETA as events carry it (ISO 8601 text), None when absent or unreadable."""
    if not value:
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        moment = datetime.fromisoformat(str(value))
    except ValueError:
        logger.debug("Unreadable ETA %r in an event", value)
        return None
    if moment.tzinfo is None:  # Celery sends aware ETAs; a naive one is taken as UTC
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
