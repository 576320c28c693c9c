"""The monitor's database side and the read API over TaskMinute, TaskTotals and QueueSample."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import DURATION_BUCKETS, QueueSample, Run, TaskMinute, TaskTotals
from taskcenter.monitor.aggregate import Aggregator
from taskcenter.monitor.histogram import bucket_index, empty_buckets, histogram_parts, minute_start
from taskcenter.monitor.store import flush_write, minutes_load, old_rows_delete, runs_lookup
from taskcenter.selectors import monitoring

pytestmark = pytest.mark.django_db


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def flush(agg: Aggregator) -> None:
    """What the runner does at each flush, minus Redis."""
    unknown = agg.unknown_ids()
    agg.resolve(runs_lookup(unknown) if unknown else {})
    for minute, rows in minutes_load(agg.minutes_to_load()).items():
        agg.merge_loaded(minute, rows)
    rows = agg.rows_to_write()
    flush_write(rows, agg.totals)
    agg.flushed(rows)


def run_task(agg: Aggregator, uid: str, ts: float, *, name="examples.add", queue="high", fail=False) -> None:
    agg.handle({"type": "task-sent", "uuid": uid, "name": name, "queue": queue, "timestamp": ts})
    agg.handle({"type": "task-started", "uuid": uid, "timestamp": ts + 0.02})
    if fail:
        agg.handle({"type": "task-failed", "uuid": uid, "timestamp": ts + 0.3})
    else:
        agg.handle({"type": "task-succeeded", "uuid": uid, "timestamp": ts + 0.05, "runtime": 0.03})


def now_minute_ts() -> float:
    ts = timezone.now().timestamp()
    return ts - ts % 60


def test_a_restarted_monitor_continues_the_rows_of_the_current_minute():
    t0 = now_minute_ts()
    first = Aggregator(clock=Clock(t0 + 10))
    for i in range(3):
        run_task(first, f"a{i}", t0 + i)
    run_task(first, "f0", t0 + 4, name="examples.fail", fail=True)
    flush(first)
    row = TaskMinute.objects.get(task_name="examples.add", queue="high")
    assert (row.minute, row.sent, row.succeeded) == (minute_start(t0), 3, 3)
    wait_buckets, wait_sketch = histogram_parts(row.wait_buckets)
    assert sum(wait_buckets) == 3 == wait_sketch.count
    assert len(histogram_parts(row.runtime_buckets)[0]) == len(DURATION_BUCKETS) + 1

    # A flush with nothing new writes nothing and keeps the totals.
    flush(first)
    assert TaskTotals.objects.get(task_name="examples.add", queue="high").succeeded == 3

    # A new process (restart) counts more events in the same minute: it adds to the stored row.
    second = Aggregator(clock=Clock(t0 + 30))
    for i in range(2):
        run_task(second, f"b{i}", t0 + 20 + i)
    flush(second)
    row.refresh_from_db()
    assert (row.sent, row.started, row.succeeded) == (5, 5, 5)
    runtime_buckets, runtime_sketch = histogram_parts(row.runtime_buckets)
    assert runtime_buckets[bucket_index(0.03)] == 5 and row.runtime_sum == pytest.approx(0.15)
    assert runtime_sketch.count == 5 and runtime_sketch.quantile(0.5) == pytest.approx(0.03, rel=0.01)
    totals = TaskTotals.objects.get(task_name="examples.add", queue="high")
    assert (totals.sent, totals.succeeded, sum(totals.runtime_buckets)) == (5, 5, 5)
    failed = TaskTotals.objects.get(task_name="examples.fail", queue="high")
    assert failed.failed == 1 and failed.runtime_sum == pytest.approx(0.28)
    assert TaskMinute.objects.count() == 2


def test_totals_add_deltas_to_rows_written_elsewhere():
    TaskTotals.objects.create(task_name="examples.add", queue="high", succeeded=100, runtime_buckets=[1, 2])
    agg = Aggregator(clock=Clock(now_minute_ts() + 5))
    run_task(agg, "x", now_minute_ts())
    flush(agg)
    totals = TaskTotals.objects.get(task_name="examples.add", queue="high")
    assert totals.succeeded == 101 and totals.sent == 1
    assert totals.runtime_buckets[:2] == [1, 2 + (bucket_index(0.03) == 1)]
    assert len(totals.runtime_buckets) == len(DURATION_BUCKETS) + 1


def test_events_of_a_task_the_monitor_never_saw_sent_take_name_and_queue_from_its_run():
    started = now_minute_ts() + 10  # both events in one minute (a start at :59.5 once split them into two rows)
    created = datetime.fromtimestamp(started - 3, UTC)
    Run.objects.create(task_result_id="known-run", task_name="examples.process_items", queue="low", created_at=created)
    agg = Aggregator(clock=Clock(started + 1))
    agg.handle({"type": "task-started", "uuid": "known-run", "timestamp": started})
    agg.handle({"type": "task-succeeded", "uuid": "known-run", "timestamp": started + 1, "runtime": 1.0})
    flush(agg)
    row = TaskMinute.objects.get(task_name="examples.process_items", queue="low")
    assert (row.started, row.succeeded, row.sent) == (1, 1, 0)
    assert row.wait_sum == pytest.approx(started - created.timestamp(), abs=0.01)


def test_runs_lookup_batches_and_skips_missing_ids():
    Run.objects.bulk_create(
        [Run(task_result_id=f"id-{i}", task_name="examples.add", queue="high") for i in range(1200)]
    )
    found = runs_lookup([f"id-{i}" for i in range(0, 1200, 2)] + ["missing"])
    assert len(found) == 600 and "missing" not in found
    assert found["id-2"].task_name == "examples.add" and found["id-2"].queue == "high"
    assert found["id-2"].started_at is None
    started = timezone.now() - timedelta(seconds=5)
    TaskResult.objects.create(task_id="id-4", status="STARTED", date_started=started)
    assert runs_lookup(["id-4"])["id-4"].started_at == pytest.approx(started.timestamp())


def test_old_rows_are_deleted_after_their_retention(settings):
    now = timezone.now()
    settings.TASKCENTER_MONITOR_RETENTION_DAYS = 2
    settings.TASKCENTER_MONITOR_SAMPLE_RETENTION_DAYS = 1
    for days in (0, 1.5, 3):
        moment = now - timedelta(days=days)
        TaskMinute.objects.create(minute=moment.replace(second=0, microsecond=0), task_name="t", queue="q")
        QueueSample.objects.create(at=moment, queue="q", depth=1)
    assert old_rows_delete(now=now) == (1, 2)
    assert TaskMinute.objects.count() == 2 and QueueSample.objects.count() == 1


# --- the read API -------------------------------------------------------------------------


def minute_row(minute, task_name="examples.add", queue="high", *, runtimes=(), waits=(), **counts):
    runtime_buckets, wait_buckets = empty_buckets(), empty_buckets()
    for seconds in runtimes:
        runtime_buckets[bucket_index(seconds)] += 1
    for seconds in waits:
        wait_buckets[bucket_index(seconds)] += 1
    return TaskMinute.objects.create(
        minute=minute,
        task_name=task_name,
        queue=queue,
        runtime_buckets=runtime_buckets,
        runtime_sum=sum(runtimes),
        wait_buckets=wait_buckets,
        wait_sum=sum(waits),
        **counts,
    )


@pytest.fixture
def minutes():
    """Three minutes of rows ending at the current minute: two task types, one empty minute between."""
    end = timezone.now().astimezone(UTC).replace(second=0, microsecond=0)
    start = end - timedelta(minutes=2)
    minute_row(start, sent=10, succeeded=8, failed=0, runtimes=[0.02] * 8, waits=[0.2] * 8)
    minute_row(start, "examples.fail", sent=2, failed=2, runtimes=[3.0, 3.0], waits=[0.2, 0.2])
    minute_row(end, queue="low", sent=5, succeeded=5, retried=1, runtimes=[0.02] * 5, waits=[7.0] * 5)
    return start, end


def test_minute_series_has_one_point_per_minute_with_zeros_where_nothing_happened(minutes):
    start, end = minutes
    series = monitoring.minute_series(since=start + timedelta(seconds=30), until=end)
    assert [p.minute for p in series] == [start, start + timedelta(minutes=1), end]
    first, empty, last = series
    assert (first.sent, first.succeeded, first.failed) == (12, 8, 2)
    assert first.runtime_p50 == pytest.approx(0.01 + 0.015 * 5 / 8)  # rank 5 of 8 in (0.01, 0.025]
    assert first.runtime_p99 == pytest.approx(2.5 + 2.5 * (9.9 - 8) / 2)  # in (2.5, 5]
    assert (empty.sent, empty.succeeded, empty.runtime_p50, empty.wait_p95) == (0, 0, None, None)
    assert (last.succeeded, last.retried) == (5, 1)
    assert 5.0 < last.wait_p50 <= 10.0


def test_minute_series_filters_by_task_and_queue(minutes):
    start, end = minutes
    only_fail = monitoring.minute_series(since=start, until=end, task_name="examples.fail")
    assert [p.failed for p in only_fail] == [2, 0, 0]
    only_low = monitoring.minute_series(since=start, until=end, queue="low")
    assert [p.succeeded for p in only_low] == [0, 0, 5]
    assert monitoring.minute_series(since=end, until=start) == []


def test_summary_counts_rates_and_percentiles(minutes):
    start, _ = minutes
    overview = monitoring.summary(since=start)
    assert (overview["succeeded"], overview["failed"], overview["retried"], overview["revoked"]) == (13, 2, 1, 0)
    assert overview["success_rate"] == pytest.approx(13 / 15)
    assert overview["failure_rate"] == pytest.approx(2 / 15)
    assert overview["per_minute"] == pytest.approx(15 / overview["minutes"])
    assert set(overview["runtime"]) == {"p50", "p95", "p99", "estimated"} == set(overview["wait"])
    assert overview["runtime"]["estimated"] is True  # these rows are in the format from before sketches
    assert overview["runtime"]["p50"] < 0.025 and overview["wait"]["p99"] > 5
    empty = monitoring.summary(since=timezone.now() + timedelta(minutes=5))
    assert empty["success_rate"] is None and empty["runtime"]["p95"] is None and empty["per_minute"] == 0


def test_task_breakdown_per_task_and_queue(minutes):
    start, _ = minutes
    rows = monitoring.task_breakdown(since=start)
    assert [(r["task_name"], r["queue"]) for r in rows] == [
        ("examples.add", "high"),
        ("examples.add", "low"),
        ("examples.fail", "high"),
    ]
    fail = rows[2]
    assert fail["failed"] == 2 and fail["failure_rate"] == 1.0 and 2.5 < fail["runtime_p95"] <= 5
    assert rows[0]["runtime_avg"] == pytest.approx(0.02)


def test_queue_series_lists_every_configured_queue(settings):
    now = timezone.now()
    QueueSample.objects.create(at=now - timedelta(minutes=5), queue="high", depth=9)
    QueueSample.objects.create(at=now - timedelta(seconds=20), queue="high", depth=3, oldest_age=1.5)
    QueueSample.objects.create(at=now - timedelta(seconds=10), queue="high", depth=1, oldest_age=None)
    series = monitoring.queue_series(since=now - timedelta(minutes=1))
    assert list(series) == list(settings.TASKCENTER_QUEUES)
    assert [(depth, age) for _, depth, age in series["high"]] == [(3, 1.5), (1, None)]
    assert series["low"] == []


def test_totals_are_sorted_by_task_and_queue():
    TaskTotals.objects.create(task_name="b", queue="x")
    TaskTotals.objects.create(task_name="a", queue="y")
    TaskTotals.objects.create(task_name="a", queue="x")
    assert [(t.task_name, t.queue) for t in monitoring.totals()] == [("a", "x"), ("a", "y"), ("b", "x")]


def test_minute_rows_are_aware_utc_minutes():
    moment = datetime(2026, 3, 1, 12, 30, tzinfo=UTC)
    minute_row(moment, sent=1)
    (point,) = monitoring.minute_series(since=moment, until=moment)
    assert point.minute == moment and point.sent == 1
