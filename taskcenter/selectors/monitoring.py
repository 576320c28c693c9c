"""Monitoring figures for pages and /metrics, read from what the monitor process wrote.

Worker states and liveness come from Redis (``taskcenter.monitor.redis_state``);
when the broker cannot be reached those functions answer "nothing known" and
never raise. Task figures come from ``TaskMinute`` (one row per minute, task
type and queue), ``TaskTotals`` and ``QueueSample``; every query is bounded by a
time window on the ``minute`` / ``at`` indexes or reads a small table. The run
history is only touched by ``stuck_runs``, through the indexed state of runs, for
runs that are STARTED.
"""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from taskcenter.broker import BROKER_ERRORS, broker_client
from taskcenter.models import QueueSample, Run, TaskMinute, TaskTotals
from taskcenter.monitor.aggregate import COUNTERS, Counts
from taskcenter.monitor.histogram import floor_minute, percentile_from_buckets
from taskcenter.monitor.redis_state import (
    LAST_EVENT_KEY,
    STARTED_KEY,
    TICK_KEY,
    WORKERS_KEY,
    as_float,
    decode_workers,
    is_online,
)

__all__ = [
    "MinutePoint",
    "WorkerState",
    "minute_series",
    "monitor_alive",
    "monitor_status",
    "percentile_from_buckets",
    "queue_series",
    "stuck_runs",
    "summary",
    "task_breakdown",
    "totals",
    "workers_state",
]

logger = logging.getLogger(__name__)

#: A monitor younger than this may not have heard of every worker yet: runs on workers it
#: does not know are not called stuck until then.
MONITOR_WARMUP_SECONDS = 15.0
_MINUTE_COLUMNS = (*COUNTERS, "runtime_sum", "runtime_buckets", "wait_sum", "wait_buckets")
_QUANTILES = (("p50", 0.50), ("p95", 0.95), ("p99", 0.99))


# --- Workers and the monitor itself (Redis) ------------------------------------------------


@dataclass(frozen=True)
class WorkerState:
    hostname: str
    online: bool
    last_heartbeat: float | None  # Unix time
    active: int | None
    processed: int | None
    loadavg: list | None
    #: Runs the worker ended that way since it came online, as the monitor counted them from its events.
    succeeded: int | None = None
    failed: int | None = None
    retried: int | None = None


def _read_monitor_keys() -> dict | None:
    """Worker states and liveness keys in one round trip; None when Redis cannot be reached."""
    try:
        with broker_client() as client:  # the request timeout: a page answers within 2 s
            pipe = client.pipeline(transaction=False)
            pipe.hgetall(WORKERS_KEY)
            pipe.mget([TICK_KEY, STARTED_KEY, LAST_EVENT_KEY])
            workers, (tick, started, last_event) = pipe.execute()
    except BROKER_ERRORS as exc:
        logger.warning("Monitoring state not read, broker unreachable: %s", exc)
        return None
    except Exception:  # pages and /metrics must answer whatever Redis holds
        logger.exception("Monitoring state not read")
        return None
    return {
        "workers": decode_workers(workers),
        "tick": as_float(tick),
        "started": as_float(started),
        "last_event": as_float(last_event),
    }


def _worker_state(state: dict, now: float) -> WorkerState:
    heartbeat = state.get("last_heartbeat")
    return WorkerState(
        hostname=str(state.get("hostname")),
        online=is_online(state, now),
        last_heartbeat=float(heartbeat) if isinstance(heartbeat, int | float) else None,
        active=state.get("active"),
        processed=state.get("processed"),
        loadavg=state.get("loadavg"),
        succeeded=state.get("succeeded"),
        failed=state.get("failed"),
        retried=state.get("retried"),
    )


def workers_state() -> list[WorkerState]:
    """Every worker the monitor has heard of, by hostname; [] when Redis is down (never raises)."""
    keys = _read_monitor_keys()
    if keys is None:
        return []
    now = time.time()
    return sorted((_worker_state(state, now) for state in keys["workers"]), key=lambda w: w.hostname)


def monitor_alive(max_age: float = 30) -> bool:
    """Whether the monitor process flushed within ``max_age`` seconds (False when Redis is down)."""
    return bool(monitor_status(max_age=max_age)["alive"])


def monitor_status(max_age: float = 30) -> dict:
    """``{"alive", "reachable", "started", "last_event", "tick"}``; times are aware datetimes or None."""
    keys = _read_monitor_keys()
    if keys is None:
        return {"alive": False, "reachable": False, "started": None, "last_event": None, "tick": None}
    tick = keys["tick"]

    def moment(value):
        return datetime.fromtimestamp(value, tz=timezone.get_current_timezone()) if value else None

    return {
        "alive": tick is not None and time.time() - tick < max_age,
        "reachable": True,
        "started": moment(keys["started"]),
        "last_event": moment(keys["last_event"]),
        "tick": moment(tick),
    }


def stuck_runs(*, limit: int = 100) -> list[Run]:
    """Runs STARTED on a worker that is gone, oldest first, at most ``limit``.

    A run is stuck when it is STARTED and its worker is not online:
    known to the monitor with a heartbeat older than max(3 * freq, 10) s, or
    unknown to a monitor that has been running for a while, or online again
    but restarted since the run started. Without a live monitor nothing is
    known about workers, so the answer is [].
    """
    keys = _read_monitor_keys()
    now = time.time()
    if keys is None or keys["tick"] is None or now - keys["tick"] >= 30:
        return []
    online, offline, restarted = [], [], Q(pk__in=[])
    for state in keys["workers"]:
        hostname = str(state.get("hostname"))
        if is_online(state, now):
            online.append(hostname)
            since = state.get("online_since")
            if isinstance(since, int | float):
                restarted |= Q(worker=hostname, task_result__date_started__lt=datetime.fromtimestamp(since - 1, tz=UTC))
        else:
            offline.append(hostname)
    # Started runs, oldest first, walked on the (state, created_at, id) index: no sort, however
    # long the history. The worker is the run's own column (the result's is copied into it).
    started = Run.objects.filter(recorded_state="STARTED")
    warming_up = keys["started"] is None or now - keys["started"] < MONITOR_WARMUP_SECONDS
    gone = Q(worker__in=offline) if warming_up else ~Q(worker__in=online) | Q(worker="")
    task_ids = list(
        started.filter(gone | restarted).order_by("created_at", "id").values_list("task_result_id", flat=True)[:limit]
    )
    if not task_ids:
        return []
    runs = {run.task_id: run for run in Run.objects.filter(task_result_id__in=task_ids).select_related("task_result")}
    return [runs[task_id] for task_id in task_ids if task_id in runs]


# --- Task figures (database) -------------------------------------------------------------


@dataclass(frozen=True)
class MinutePoint:
    minute: datetime  # start of the minute, UTC
    sent: int
    succeeded: int
    failed: int
    retried: int
    revoked: int
    runtime_p50: float | None
    runtime_p95: float | None
    runtime_p99: float | None
    wait_p50: float | None
    wait_p95: float | None
    wait_p99: float | None


def _rows(since: datetime, until: datetime | None = None, *, task_name: str = "", queue: str = ""):
    rows = TaskMinute.objects.filter(minute__gte=floor_minute(since))
    if until is not None:
        rows = rows.filter(minute__lte=until)
    if task_name:
        rows = rows.filter(task_name=task_name)
    if queue:
        rows = rows.filter(queue=queue)
    return rows


class _Row:
    """A TaskMinute row read as a tuple, with the attributes ``Counts.add`` reads."""

    __slots__ = _MINUTE_COLUMNS

    def __init__(self, values):
        for name, value in zip(_MINUTE_COLUMNS, values, strict=True):
            setattr(self, name, value)


def _quantiles(counts: Counts, kind: str) -> dict:
    """p50/p95/p99 of ``kind`` ("runtime" or "wait"), and ``estimated``.

    From the sketch (within 1 % of the exact value) when it holds every duration
    counted; else, for windows that reach back before sketches were stored, an
    estimate from the coarse buckets, with ``estimated`` True.
    """
    sketch, buckets = getattr(counts, f"{kind}_sketch"), getattr(counts, f"{kind}_buckets")
    if counts.sketch_complete(kind):
        values = {name: sketch.quantile(q) for name, q in _QUANTILES}
        return {**values, "estimated": False}
    return {**{name: percentile_from_buckets(buckets, q) for name, q in _QUANTILES}, "estimated": True}


def minute_series(
    *, since: datetime, until: datetime | None = None, task_name: str = "", queue: str = ""
) -> list[MinutePoint]:
    """One point per minute from ``since`` to ``until`` (default now), both cut to the minute.

    Counts and histograms are summed over task types and queues unless
    ``task_name`` / ``queue`` filter them; minutes without rows are zeros.
    """
    start = floor_minute(since)
    end = floor_minute(until or timezone.now())
    if end < start:
        return []
    by_minute: dict[float, Counts] = {}
    for minute, *values in _rows(start, end, task_name=task_name, queue=queue).values_list("minute", *_MINUTE_COLUMNS):
        by_minute.setdefault(minute.timestamp(), Counts()).add(_Row(values))
    points = []
    minute = start
    while minute <= end:
        counts = by_minute.get(minute.timestamp()) or Counts()
        runtime, wait = _quantiles(counts, "runtime"), _quantiles(counts, "wait")
        points.append(
            MinutePoint(
                minute=minute,
                sent=counts.sent,
                succeeded=counts.succeeded,
                failed=counts.failed,
                retried=counts.retried,
                revoked=counts.revoked,
                runtime_p50=runtime["p50"],
                runtime_p95=runtime["p95"],
                runtime_p99=runtime["p99"],
                wait_p50=wait["p50"],
                wait_p95=wait["p95"],
                wait_p99=wait["p99"],
            )
        )
        minute += timedelta(minutes=1)
    return points


def summary(*, since: datetime) -> dict:
    """Figures since ``since`` (cut to the minute), summed over every task type and queue.

    ``per_minute`` is tasks finished (succeeded + failed) per minute of the
    window; ``success_rate`` and ``failure_rate`` are shares of the finished
    tasks (None when none finished); ``runtime`` and ``wait`` hold p50/p95/p99 in
    seconds (None without observations). Also ``sent``, ``started``,
    ``finished`` and ``minutes`` (the window's length).
    """
    total = Counts()
    for values in _rows(since).values_list(*_MINUTE_COLUMNS):
        total.add(_Row(values))
    minutes = max((timezone.now() - since).total_seconds() / 60, 1.0)
    finished = total.succeeded + total.failed
    return {
        "sent": total.sent,
        "started": total.started,
        "succeeded": total.succeeded,
        "failed": total.failed,
        "retried": total.retried,
        "revoked": total.revoked,
        "finished": finished,
        "minutes": minutes,
        "per_minute": finished / minutes,
        "success_rate": total.succeeded / finished if finished else None,
        "failure_rate": total.failed / finished if finished else None,
        "runtime": _quantiles(total, "runtime"),
        "wait": _quantiles(total, "wait"),
    }


def task_breakdown(*, since: datetime) -> list[dict]:
    """Per (task name, queue) since ``since``: counts, failure rate, run-time p50/p95/p99 and wait p95.

    Each dict: ``task_name``, ``queue``, ``sent``, ``started``, ``succeeded``,
    ``failed``, ``retried``, ``revoked``, ``failure_rate`` (None when nothing
    finished), ``runtime_p50``, ``runtime_p95``, ``runtime_p99``,
    ``runtime_avg``, ``wait_p95``. Sorted by task name, then queue.
    """
    per_task: dict[tuple[str, str], Counts] = {}
    for task_name, queue, *values in _rows(since).values_list("task_name", "queue", *_MINUTE_COLUMNS):
        per_task.setdefault((task_name, queue), Counts()).add(_Row(values))
    breakdown = []
    for (task_name, queue), counts in sorted(per_task.items()):
        finished = counts.succeeded + counts.failed
        runtime, wait = _quantiles(counts, "runtime"), _quantiles(counts, "wait")
        observed = sum(counts.runtime_buckets)
        breakdown.append(
            {
                "task_name": task_name,
                "queue": queue,
                **{name: getattr(counts, name) for name in COUNTERS},
                "failure_rate": counts.failed / finished if finished else None,
                "runtime_p50": runtime["p50"],
                "runtime_p95": runtime["p95"],
                "runtime_p99": runtime["p99"],
                "runtime_avg": counts.runtime_sum / observed if observed else None,
                "wait_p95": wait["p95"],
                "percentiles_estimated": runtime["estimated"] or wait["estimated"],
            }
        )
    return breakdown


def queue_series(*, since: datetime) -> dict[str, list[tuple[datetime, int, float | None]]]:
    """``{queue: [(at, depth, oldest_age), ...]}`` from the samples since ``since``, oldest first.

    Every configured queue is a key (an empty list without samples), then any
    other queue that has samples.
    """
    series: dict[str, list] = {name: [] for name in settings.TASKCENTER_QUEUES}
    for at, queue, depth, age in (
        QueueSample.objects.filter(at__gte=since).order_by("at", "id").values_list("at", "queue", "depth", "oldest_age")
    ):
        series.setdefault(queue, []).append((at, depth, age))
    return series


def totals() -> list[TaskTotals]:
    """Running totals per (task name, queue) since the monitor first counted (for Prometheus)."""
    return list(TaskTotals.objects.order_by("task_name", "queue"))
