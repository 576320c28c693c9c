"""Prometheus metrics of taskcenter, computed at each scrape from the database and Redis.

Nothing here counts inside a process: web processes come and go and each would
report its own numbers. ``TaskcenterCollector`` reads, per scrape, the
``TaskTotals`` rows (one per task type and queue, written by the monitor), the
queue lengths in Redis, the workers' and beat's heartbeats, and one bounded
query for stuck runs. It is registered on its own ``REGISTRY``;
``render()`` joins its output to django-prometheus' default registry (process,
HTTP and database metrics of this web process).

Labels are task names and queue names only, never a task id or argument.
"""

import logging
import os

import prometheus_client
from django.db import DatabaseError
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from taskcenter.models import DURATION_BUCKETS, TaskTotals

logger = logging.getLogger(__name__)

#: States counted in ``celery_tasks_total``, each a ``TaskTotals`` field of the same name.
TASK_STATES = ("sent", "started", "succeeded", "failed", "retried", "revoked")
#: Most stuck runs counted per scrape (the gauge stops there).
STUCK_LIMIT = 1000
#: Most new failure groups counted per scrape.
NEW_GROUPS_LIMIT = 1000
CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


def cumulative_buckets(counts, total_sum: float) -> tuple[list[tuple[str, float]], float]:
    """Prometheus buckets from per-bucket counts (``DURATION_BUCKETS`` then one overflow bucket).

    Returns ``([(le, cumulative count), ..., ("+Inf", count)], sum)``. Missing
    counts are zeros; counts beyond the overflow bucket are added to it.
    """
    counts = [int(c) if isinstance(c, int | float) and not isinstance(c, bool) else 0 for c in (counts or [])]
    counts += [0] * (len(DURATION_BUCKETS) + 1 - len(counts))
    buckets, running = [], 0
    for bound, count in zip(DURATION_BUCKETS, counts, strict=False):
        running += count
        buckets.append((floatToGoString(bound), running))
    running += sum(counts[len(DURATION_BUCKETS) :])
    buckets.append(("+Inf", running))
    return buckets, float(total_sum or 0.0)


class TaskcenterCollector(Collector):
    """Task counters and histograms from ``TaskTotals``; live queue, worker, beat and monitor gauges."""

    def describe(self):
        # Names only, so registering never reads the database or Redis.
        return [
            CounterMetricFamily("celery_tasks", "", labels=["task", "queue", "state"]),
            HistogramMetricFamily("celery_task_runtime_seconds", "", labels=["task", "queue"]),
            HistogramMetricFamily("celery_task_wait_seconds", "", labels=["task", "queue"]),
            GaugeMetricFamily("celery_queue_length", "", labels=["queue"]),
            GaugeMetricFamily("celery_queue_oldest_message_age_seconds", "", labels=["queue"]),
            GaugeMetricFamily("celery_workers_online", ""),
            GaugeMetricFamily("taskcenter_broker_up", ""),
            GaugeMetricFamily("taskcenter_beat_last_tick_timestamp_seconds", ""),
            GaugeMetricFamily("taskcenter_stuck_runs", ""),
            GaugeMetricFamily("taskcenter_monitor_up", ""),
            CounterMetricFamily("taskcenter_dead_letters", "", labels=["reason", "task"]),
            GaugeMetricFamily("taskcenter_dead_letters_unresolved", "", labels=["reason", "task"]),
            GaugeMetricFamily("taskcenter_failure_groups_new", "", labels=["task"]),
        ]

    def collect(self):
        yield from self._task_families()
        yield from self._live_families()
        yield from self._dead_letter_families()
        yield from self._new_failure_group_families()

    def _new_failure_group_families(self):
        from django.conf import settings

        from taskcenter.selectors.failures import new_failure_groups_per_task

        try:
            counts = new_failure_groups_per_task(limit=NEW_GROUPS_LIMIT)
        except DatabaseError as exc:
            logger.warning("Metrics: new failure groups not read: %s", exc)
            return
        minutes = settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES
        new = GaugeMetricFamily(
            "taskcenter_failure_groups_new",
            f"Failure groups first seen in the last {minutes} minutes (TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES), "
            f"not ignored, per task (counted up to {NEW_GROUPS_LIMIT}); task types without one are left out.",
            labels=["task"],
        )
        for task_name, count in counts.items():
            new.add_metric([task_name], count)
        yield new

    def _dead_letter_families(self):
        from taskcenter.selectors.deadletters import deadletter_counts

        try:
            rows = deadletter_counts()
        except DatabaseError as exc:
            logger.warning("Metrics: dead letters not read: %s", exc)
            return
        total = CounterMetricFamily(
            "taskcenter_dead_letters",
            "Dead letters kept, per reason (failed, rejected, expired) and task.",
            labels=["reason", "task"],
        )
        unresolved = GaugeMetricFamily(
            "taskcenter_dead_letters_unresolved",
            "Dead letters neither replayed nor discarded, per reason and task.",
            labels=["reason", "task"],
        )
        for row in rows:
            labels = [row["reason"], row["task_name"]]
            total.add_metric(labels, row["total"])
            unresolved.add_metric(labels, row["unresolved"])
        yield from (total, unresolved)

    def _task_families(self):
        try:
            rows = list(
                TaskTotals.objects.order_by("task_name", "queue").values(
                    "task_name", "queue", *TASK_STATES, "runtime_sum", "runtime_buckets", "wait_sum", "wait_buckets"
                )
            )
        except DatabaseError as exc:
            logger.warning("Metrics: task totals not read: %s", exc)
            return
        tasks = CounterMetricFamily(
            "celery_tasks",
            "Tasks per task name, queue and state since the monitor started counting.",
            labels=["task", "queue", "state"],
        )
        runtime = HistogramMetricFamily(
            "celery_task_runtime_seconds", "Run time of finished tasks, from start to end.", labels=["task", "queue"]
        )
        wait = HistogramMetricFamily(
            "celery_task_wait_seconds",
            "Time tasks waited in the queue before they started.",
            labels=["task", "queue"],
        )
        for row in rows:
            labels = [row["task_name"], row["queue"]]
            for state in TASK_STATES:
                tasks.add_metric([*labels, state], row[state] or 0)
            runtime.add_metric(labels, *cumulative_buckets(row["runtime_buckets"], row["runtime_sum"]))
            wait.add_metric(labels, *cumulative_buckets(row["wait_buckets"], row["wait_sum"]))
        yield from (tasks, runtime, wait)

    def _live_families(self):
        from taskcenter.selectors.alerts import live_state

        try:
            live = live_state(stuck_limit=STUCK_LIMIT)
        except Exception as exc:  # a scrape reports what it can
            logger.warning("Metrics: live figures not read: %s", exc)
            return
        broker = GaugeMetricFamily("taskcenter_broker_up", "1 when the broker (Redis) answered this scrape, else 0.")
        broker.add_metric([], 0 if live.problem else 1)
        yield broker

        if not live.problem:
            length = GaugeMetricFamily(
                "celery_queue_length", "Messages waiting in a queue, all priority lists together.", labels=["queue"]
            )
            age = GaugeMetricFamily(
                "celery_queue_oldest_message_age_seconds",
                "Seconds the oldest waiting message of a queue has waited; 0 when the queue is empty.",
                labels=["queue"],
            )
            for queue in live.queues.queues:
                length.add_metric([queue.name], queue.depth or 0)
                age.add_metric([queue.name], queue.oldest_age or 0.0)
            yield from (length, age)

        workers = GaugeMetricFamily("celery_workers_online", "Workers whose heartbeat is recent.")
        workers.add_metric([], live.workers_online)
        yield workers

        if live.beat.available and live.beat.reachable:
            tick = GaugeMetricFamily(
                "taskcenter_beat_last_tick_timestamp_seconds",
                "Unix time of the active beat's last tick; 0 when no beat ever ticked.",
            )
            tick.add_metric([], live.beat.last_tick or 0.0)
            yield tick

        if live.stuck is not None:
            stuck = GaugeMetricFamily("taskcenter_stuck_runs", f"Runs that look stuck (counted up to {STUCK_LIMIT}).")
            stuck.add_metric([], len(live.stuck))
            yield stuck

        up = GaugeMetricFamily("taskcenter_monitor_up", "1 when the event monitor reported recently, else 0.")
        up.add_metric([], 1 if live.monitor_alive else 0)
        yield up


#: taskcenter's own registry; nothing else is registered on it.
REGISTRY = CollectorRegistry(auto_describe=False)
REGISTRY.register(TaskcenterCollector())


def default_registry():
    """django-prometheus' registry: the multiprocess one when ``PROMETHEUS_MULTIPROC_DIR`` is set."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return registry
    return prometheus_client.REGISTRY


def render() -> bytes:
    """The text exposition of both registries, as one scrape."""
    return generate_latest(default_registry()) + generate_latest(REGISTRY)
