"""The monitor's database work: look runs up, load and write minutes, totals, queue samples, retention.

Every query is bounded: runs by their unique task id (in batches), minutes by
the ``minute`` index, samples by the ``at`` index, totals per (task, queue).
"""

import logging
from collections.abc import Iterable
from datetime import datetime

from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter import broker
from taskcenter.models import QueueSample, Run, TaskMinute, TaskTotals
from taskcenter.monitor.aggregate import COUNTERS, Counts, MinuteRow, RunFacts
from taskcenter.monitor.histogram import add_buckets, empty_buckets

logger = logging.getLogger(__name__)

#: Task ids per query when runs are looked up (SQLite limits query parameters).
LOOKUP_BATCH_SIZE = 500
_MINUTE_FIELDS = [*COUNTERS, "runtime_sum", "runtime_buckets", "wait_sum", "wait_buckets"]


def runs_lookup(task_ids: Iterable[str]) -> dict[str, RunFacts]:
    """Name, queue, creation time, ETA and start time (from its result) of the runs of ``task_ids``.

    Missing ids are left out. Two queries per ``LOOKUP_BATCH_SIZE`` ids, both on
    a unique task id index (runs, then their results).
    """
    task_ids = list(task_ids)
    found: dict[str, RunFacts] = {}
    for start in range(0, len(task_ids), LOOKUP_BATCH_SIZE):
        batch = task_ids[start : start + LOOKUP_BATCH_SIZE]
        rows = (
            Run.objects.filter(task_result_id__in=batch)
            .order_by()
            .values_list("task_result_id", "task_name", "queue", "created_at", "eta")
        )
        runs = {row[0]: row[1:] for row in rows}
        if not runs:
            continue
        # A separate query: a join would be made INNER by the filter and drop runs without a result.
        started = dict(
            TaskResult.objects.filter(task_id__in=list(runs), date_started__isnull=False)
            .order_by()
            .values_list("task_id", "date_started")
        )
        for task_id, (task_name, queue, created_at, eta) in runs.items():
            found[task_id] = RunFacts(
                task_name=task_name,
                queue=queue,
                created_at=created_at.timestamp() if created_at else None,
                eta=eta.timestamp() if eta else None,
                started_at=started[task_id].timestamp() if task_id in started else None,
            )
    return found


def minutes_load(minutes: list[datetime]) -> dict[datetime, list[tuple[tuple[str, str], Counts]]]:
    """The stored rows of ``minutes``, as counts per (task name, queue); every minute asked is a key."""
    loaded: dict[datetime, list] = {minute: [] for minute in minutes}
    if not minutes:
        return loaded
    by_instant = {minute.timestamp(): minute for minute in minutes}
    for row in TaskMinute.objects.filter(minute__in=minutes):
        minute = by_instant.get(row.minute.timestamp(), row.minute)
        loaded.setdefault(minute, []).append(((row.task_name, row.queue), Counts.from_row(row)))
    return loaded


def flush_write(rows: list[MinuteRow], totals: dict[tuple[str, str], Counts]) -> None:
    """In one transaction: upsert the minute rows with their absolute values, add ``totals`` to TaskTotals."""
    with transaction.atomic():
        if rows:
            TaskMinute.objects.bulk_create(
                [TaskMinute(minute=r.minute, task_name=r.task_name, queue=r.queue, **r.counts.fields()) for r in rows],
                update_conflicts=True,
                unique_fields=["minute", "task_name", "queue"],
                update_fields=_MINUTE_FIELDS,
            )
        if totals:
            _totals_add(totals)


def _totals_add(totals: dict[tuple[str, str], Counts]) -> None:
    """Add deltas to the running totals: counters and sums with F(), histograms under the row lock."""
    names = {name for name, _ in totals}
    existing = _totals_locked(names, totals)
    missing = [key for key in totals if key not in existing]
    if missing:
        TaskTotals.objects.bulk_create(
            [
                TaskTotals(task_name=name, queue=queue, runtime_buckets=empty_buckets(), wait_buckets=empty_buckets())
                for name, queue in missing
            ],
            ignore_conflicts=True,
        )
        existing = _totals_locked(names, totals)
    for key, delta in totals.items():
        row = existing[key]
        TaskTotals.objects.filter(pk=row.pk).update(
            **{name: F(name) + getattr(delta, name) for name in COUNTERS},
            runtime_sum=F("runtime_sum") + delta.runtime_sum,
            wait_sum=F("wait_sum") + delta.wait_sum,
            runtime_buckets=add_buckets(add_buckets(empty_buckets(), row.runtime_buckets), delta.runtime_buckets),
            wait_buckets=add_buckets(add_buckets(empty_buckets(), row.wait_buckets), delta.wait_buckets),
        )


def _totals_locked(names: set[str], wanted) -> dict[tuple[str, str], TaskTotals]:
    rows = TaskTotals.objects.select_for_update().filter(task_name__in=names)
    return {(row.task_name, row.queue): row for row in rows if (row.task_name, row.queue) in wanted}


def queue_samples_record(names: list[str], *, at: datetime | None = None) -> list[QueueSample]:
    """Store the depth and oldest-message age of every queue in ``names``; none when the broker is down."""
    at = at or timezone.now()
    try:
        backlogs = broker.queue_backlogs(names)
    except broker.BROKER_ERRORS as exc:
        logger.debug("Queue sample skipped, broker unreachable: %s", exc)
        return []
    ages = broker.oldest_ages(backlogs)
    samples = [
        QueueSample(at=at, queue=name, depth=backlog.depth, oldest_age=ages.get(name))
        for name, backlog in backlogs.items()
    ]
    QueueSample.objects.bulk_create(samples)
    return samples


def old_rows_delete(*, now: datetime | None = None) -> tuple[int, int]:
    """Delete minutes and queue samples older than their retention, in bounded batches; return how many of each."""
    from taskcenter.services.retention import kind_delete_expired, retention_kinds

    kinds = {kind.name: kind for kind in retention_kinds()}
    now = now or timezone.now()
    minutes, _ = kind_delete_expired(kinds["task_minutes"], now=now)
    samples, _ = kind_delete_expired(kinds["queue_samples"], now=now)
    return minutes, samples
