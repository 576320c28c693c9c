"""Pure parts of the monitor: histograms, minutes, the in-memory aggregator, the worker tracker."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from taskcenter.models import DURATION_BUCKETS
from taskcenter.monitor.aggregate import UNKNOWN, Aggregator, Counts, RunFacts, WorkerTracker
from taskcenter.monitor.histogram import (
    BUCKET_COUNT,
    add_buckets,
    bucket_index,
    empty_buckets,
    floor_minute,
    minute_start,
    percentile_from_buckets,
)
from taskcenter.monitor.redis_state import is_online, online_window
from taskcenter.selectors.monitoring import percentile_from_buckets as exported_percentile

T0 = 1_700_000_040.0  # the start of a minute (1_700_000_040 % 60 == 0)


class Clock:
    def __init__(self, now: float = T0 + 30):
        self.now = now

    def __call__(self) -> float:
        return self.now


def buckets(**counts) -> list[int]:
    """A histogram with ``b<i>=count`` entries."""
    values = empty_buckets()
    for name, count in counts.items():
        values[int(name[1:])] = count
    return values


# --- histograms ---------------------------------------------------------------------------


def test_a_histogram_has_one_bucket_per_bound_plus_overflow():
    assert BUCKET_COUNT == len(DURATION_BUCKETS) + 1 == len(empty_buckets())


@pytest.mark.parametrize(
    ("seconds", "index"),
    [(0, 0), (0.004, 0), (0.005, 0), (0.0051, 1), (0.3, 6), (1.0, 7), (1.01, 8), (600, 15), (600.5, 16), (1e9, 16)],
)
def test_bucket_index_counts_a_value_in_the_first_bucket_whose_bound_is_not_below_it(seconds, index):
    assert bucket_index(seconds) == index


def test_percentile_of_an_empty_histogram_is_none():
    assert percentile_from_buckets([], 0.5) is None
    assert percentile_from_buckets(None, 0.5) is None
    assert percentile_from_buckets(empty_buckets(), 0.99) is None


def test_percentile_interpolates_linearly_inside_the_bucket():
    # 10 observations in (0.1, 0.25]: the median is half-way through that bucket.
    h = buckets(b5=10)
    assert percentile_from_buckets(h, 0.5) == pytest.approx(0.175)
    assert percentile_from_buckets(h, 1.0) == pytest.approx(0.25)
    assert percentile_from_buckets(h, 0.0) == pytest.approx(0.1)
    # The first bucket starts at 0.
    assert percentile_from_buckets(buckets(b0=4), 0.5) == pytest.approx(0.0025)


def test_percentile_finds_the_bucket_holding_the_rank():
    h = buckets(b0=90, b7=9, b10=1)  # 90 at <= 5 ms, 9 in (0.5, 1], 1 in (5, 10]
    assert percentile_from_buckets(h, 0.5) == pytest.approx(0.005 * 50 / 90)
    assert percentile_from_buckets(h, 0.95) == pytest.approx(0.5 + 0.5 * 5 / 9)
    assert percentile_from_buckets(h, 0.99) == pytest.approx(1.0)
    assert percentile_from_buckets(h, 0.995) == pytest.approx(5.0 + 5.0 * 0.5)


def test_percentile_in_the_overflow_bucket_is_the_largest_bound():
    assert percentile_from_buckets(buckets(b16=3), 0.5) == DURATION_BUCKETS[-1]


def test_percentile_accepts_percent_and_refuses_nonsense():
    h = buckets(b3=7, b8=3)
    assert percentile_from_buckets(h, 95) == percentile_from_buckets(h, 0.95)
    with pytest.raises(ValueError):
        percentile_from_buckets(h, -0.1)
    with pytest.raises(ValueError):
        percentile_from_buckets(h, 101)
    assert exported_percentile is percentile_from_buckets


def test_add_buckets_treats_short_or_missing_lists_as_zeros():
    total = empty_buckets()
    add_buckets(total, [1, 2])
    add_buckets(total, [])
    add_buckets(total, None)
    assert total[:3] == [1, 2, 0] and len(total) == BUCKET_COUNT


# --- minutes ----------------------------------------------------------------------------------


def test_minute_start_cuts_a_unix_time_to_its_utc_minute():
    moment = minute_start(T0 + 59.999)
    assert moment == datetime.fromtimestamp(T0, UTC)
    assert moment.tzinfo is not None and moment.utcoffset() == timedelta(0)
    assert minute_start(T0) == moment
    assert minute_start(T0 - 0.001) == moment - timedelta(minutes=1)


def test_floor_minute_works_in_utc_whatever_the_zone():
    shanghai = datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert floor_minute(shanghai) == datetime(2026, 1, 1, 19, 4, tzinfo=UTC)


# --- the aggregator -----------------------------------------------------------------------------


def sent(uid, ts, name="examples.add", queue="high", **extra):
    return {"type": "task-sent", "uuid": uid, "name": name, "queue": queue, "routing_key": queue, "timestamp": ts,
            **extra}  # fmt: skip


def ev(kind, uid, ts, **extra):
    return {"type": f"task-{kind}", "uuid": uid, "timestamp": ts, "hostname": "w1@h", **extra}


def minute_counts(agg: Aggregator, ts: float, name="examples.add", queue="high") -> Counts:
    return agg.minutes[minute_start(ts)][(name, queue)]


def test_a_successful_task_is_counted_with_its_wait_and_run_time():
    agg = Aggregator(clock=Clock())
    for event in (
        sent("a", T0 + 1),
        ev("received", "a", T0 + 1.2, name="examples.add"),
        ev("started", "a", T0 + 1.3),
        ev("succeeded", "a", T0 + 1.35, runtime=0.04),
    ):
        agg.handle(event)
    counts = minute_counts(agg, T0)
    assert (counts.sent, counts.started, counts.succeeded, counts.failed) == (1, 1, 1, 0)
    assert counts.wait_buckets[bucket_index(0.3)] == 1 and counts.wait_sum == pytest.approx(0.3)
    assert counts.runtime_buckets[bucket_index(0.04)] == 1 and counts.runtime_sum == pytest.approx(0.04)
    assert agg.totals[("examples.add", "high")] == counts
    assert agg.dirty == {(minute_start(T0), "examples.add", "high")}
    assert not agg.pending


def test_a_failure_run_time_comes_from_its_start_and_end_times():
    agg = Aggregator(clock=Clock())
    agg.handle(sent("f", T0, name="examples.fail", queue="default"))
    agg.handle(ev("started", "f", T0 + 2))
    agg.handle(ev("failed", "f", T0 + 4.5, exception="boom"))
    counts = minute_counts(agg, T0, "examples.fail", "default")
    assert counts.failed == 1 and counts.runtime_sum == pytest.approx(2.5)
    assert sum(counts.runtime_buckets) == 1


def test_retries_revokes_and_rejects():
    agg = Aggregator(clock=Clock())
    agg.handle(sent("r", T0))
    agg.handle(ev("started", "r", T0 + 1))
    agg.handle(ev("retried", "r", T0 + 2))
    agg.handle(sent("r", T0 + 2.1))
    agg.handle(ev("rejected", "r", T0 + 3, requeue=True))
    agg.handle(ev("revoked", "r", T0 + 4, terminated=False))
    counts = minute_counts(agg, T0)
    assert (counts.sent, counts.started, counts.retried, counts.revoked) == (2, 1, 1, 1)


def test_the_wait_of_a_delayed_task_counts_from_its_eta():
    agg = Aggregator(clock=Clock())
    eta = datetime.fromtimestamp(T0 + 10, UTC).isoformat()
    agg.handle(sent("e", T0, eta=eta))
    agg.handle(ev("started", "e", T0 + 10.5))
    assert minute_counts(agg, T0).wait_sum == pytest.approx(0.5)


def test_events_are_counted_in_the_minute_they_happened():
    agg = Aggregator(clock=Clock())
    agg.handle(sent("m", T0 + 59.5))
    agg.handle(ev("started", "m", T0 + 60.2))
    assert minute_counts(agg, T0).sent == 1 and minute_counts(agg, T0).started == 0
    assert minute_counts(agg, T0 + 60).started == 1
    assert agg.totals[("examples.add", "high")].sent == 1


def test_events_of_unknown_ids_wait_for_the_run_lookup():
    agg = Aggregator(clock=Clock())
    agg.handle(ev("received", "u", T0 + 5, name="examples.add"))
    agg.handle(ev("started", "u", T0 + 5.5))
    agg.handle(ev("succeeded", "u", T0 + 6, runtime=0.5))
    assert not agg.minutes and not agg.totals
    assert agg.unknown_ids() == ["u"]
    agg.resolve({"u": RunFacts(task_name="examples.add", queue="low", created_at=T0 + 1, eta=None)})
    counts = minute_counts(agg, T0, queue="low")
    assert (counts.started, counts.succeeded) == (1, 1)
    assert counts.wait_sum == pytest.approx(4.5)  # from the run's creation
    assert counts.runtime_sum == pytest.approx(0.5)
    assert not agg.pending and not agg.unresolved
    # A finished id is forgotten (no memory per finished task); a later event of it is looked up again.
    assert "u" not in agg.tasks
    agg.handle(ev("retried", "u", T0 + 7))
    agg.resolve({"u": RunFacts(task_name="examples.add", queue="low", created_at=T0 + 1, eta=None)})
    assert minute_counts(agg, T0, queue="low").retried == 1


def test_a_sent_event_that_arrives_after_the_start_resolves_the_id_in_order():
    agg = Aggregator(clock=Clock())
    agg.handle(ev("started", "late", T0 + 2))
    agg.handle(sent("late", T0 + 1.9))
    agg.handle(ev("succeeded", "late", T0 + 2.1, runtime=0.1))
    assert agg.unknown_ids() == []  # task-sent told name and queue: no lookup needed
    agg.resolve({})
    counts = minute_counts(agg, T0)
    assert (counts.sent, counts.started, counts.succeeded) == (1, 1, 1)
    assert counts.wait_sum == pytest.approx(0.1)


def test_ids_not_found_wait_a_little_then_count_as_unknown():
    clock = Clock()
    agg = Aggregator(clock=clock, resolve_grace=5)
    agg.handle(ev("started", "x", T0 + 1))
    agg.resolve({})
    assert len(agg.pending) == 1 and not agg.minutes  # maybe its Run row is not committed yet
    clock.now += 6
    agg.resolve({})
    assert minute_counts(agg, T0, UNKNOWN, UNKNOWN).started == 1
    agg.handle(ev("received", "y", T0 + 2, name="examples.fail"))
    agg.handle(ev("failed", "y", T0 + 3))
    agg.resolve({}, final=True)  # at shutdown nothing waits
    assert minute_counts(agg, T0, "examples.fail", UNKNOWN).failed == 1


def test_stored_rows_make_the_counts_of_a_minute_absolute():
    agg = Aggregator(clock=Clock())
    agg.handle(sent("a", T0 + 1))
    minute = minute_start(T0)
    assert agg.minutes_to_load() == [minute]
    assert agg.rows_to_write() == []  # never write a minute before its stored rows were read
    stored = Counts()
    stored.sent, stored.succeeded = 5, 4
    stored.observe_runtime(0.2)
    other = Counts()
    other.sent = 2
    agg.merge_loaded(minute, [(("examples.add", "high"), stored), (("examples.fail", "high"), other)])
    (row,) = agg.rows_to_write()
    assert (row.task_name, row.queue, row.counts.sent, row.counts.succeeded) == ("examples.add", "high", 6, 4)
    assert sum(row.counts.runtime_buckets) == 1
    assert agg.totals[("examples.add", "high")].sent == 1  # totals stay deltas
    agg.flushed([row])
    assert not agg.dirty and not agg.totals and agg.minutes_to_load() == []


def test_old_minutes_are_forgotten_after_a_flush_and_reloaded_if_needed():
    clock = Clock(T0 + 200)
    agg = Aggregator(clock=clock)
    agg.handle(sent("old", T0 + 1))
    agg.merge_loaded(minute_start(T0), [])
    agg.flushed(agg.rows_to_write())
    assert minute_start(T0) not in agg.minutes and minute_start(T0) not in agg.loaded
    agg.handle(sent("late", T0 + 2))  # a late event for that minute: a delta again, loaded before writing
    assert agg.minutes_to_load() == [minute_start(T0)]
    assert minute_counts(agg, T0).sent == 1


def test_the_task_map_is_bounded():
    agg = Aggregator(clock=Clock(), max_tasks=3)
    for i in range(10):
        agg.handle(sent(f"t{i}", T0 + i))
    assert list(agg.tasks) == ["t7", "t8", "t9"]
    assert agg.totals[("examples.add", "high")].sent == 10


def test_events_without_id_or_of_other_kinds_are_ignored():
    agg = Aggregator(clock=Clock())
    agg.handle({"type": "task-started", "timestamp": T0})
    agg.handle({"type": "worker-heartbeat", "hostname": "w1@h", "timestamp": T0})
    agg.handle({"type": "something-else"})
    assert not agg.minutes and not agg.pending and agg.events_seen == 3


def test_forget_counts_drops_everything_not_written():
    agg = Aggregator(clock=Clock())
    agg.handle(sent("a", T0))
    agg.handle(ev("started", "b", T0))
    agg.forget_counts()
    assert not agg.minutes and not agg.totals and not agg.pending and not agg.dirty


# --- workers ------------------------------------------------------------------------------


def heartbeat(host="w1@h", ts=T0, kind="heartbeat", **extra):
    return {"type": f"worker-{kind}", "hostname": host, "timestamp": ts, "freq": 2.0, "active": 1, "processed": 10,
            "loadavg": [0.5, 0.4, 0.3], **extra}  # fmt: skip


def test_worker_states_are_written_at_most_once_per_second():
    clock = Clock(T0)
    tracker = WorkerTracker(clock=clock)
    tracker.handle(heartbeat(kind="online"))
    due = tracker.due()
    assert due["w1@h"] == {
        "hostname": "w1@h",
        "online": True,
        "last_heartbeat": T0,
        "active": 1,
        "processed": 10,
        "loadavg": [0.5, 0.4, 0.3],
        "freq": 2.0,
        "online_since": T0,
        "succeeded": 0,
        "failed": 0,
        "retried": 0,
    }
    tracker.written(due)
    tracker.handle(heartbeat(ts=T0 + 0.5, processed=11))
    clock.now = T0 + 0.5
    assert tracker.due() == {}
    clock.now = T0 + 1.0
    assert tracker.due()["w1@h"]["processed"] == 11


def test_task_events_keep_a_known_worker_alive_but_task_sent_does_not():
    tracker = WorkerTracker(clock=Clock(T0))
    tracker.handle(heartbeat())
    tracker.handle(ev("succeeded", "a", T0 + 5))
    assert tracker.workers["w1@h"]["last_heartbeat"] == T0 + 5
    tracker.handle({**sent("b", T0 + 9), "hostname": "w1@h"})
    tracker.handle({**ev("started", "c", T0 + 9), "hostname": "unknown@h"})
    assert tracker.workers["w1@h"]["last_heartbeat"] == T0 + 5
    assert "unknown@h" not in tracker.workers


def test_the_runs_a_worker_ended_are_counted_by_outcome_since_it_came_online():
    tracker = WorkerTracker(clock=Clock(T0))
    tracker.handle(heartbeat(kind="online"))
    for kind, task_id in (("succeeded", "a"), ("succeeded", "b"), ("failed", "c"), ("retried", "d")):
        tracker.handle(ev(kind, task_id, T0 + 1))
    tracker.handle(ev("started", "e", T0 + 2))
    state = tracker.workers["w1@h"]
    assert (state["succeeded"], state["failed"], state["retried"]) == (2, 1, 1)
    assert tracker.due()["w1@h"]["succeeded"] == 2

    tracker.handle(heartbeat(kind="online", ts=T0 + 60))  # the worker restarted: its own totals start again
    assert (state["succeeded"], state["failed"], state["retried"]) == (0, 0, 0)


def test_counts_restored_from_an_older_state_go_on_from_there():
    tracker = WorkerTracker(clock=Clock(T0))
    tracker.restore([{"hostname": "w1@h", "last_heartbeat": T0, "online": True, "freq": 2.0}])  # no counts written
    tracker.handle(ev("failed", "a", T0 + 1))
    assert tracker.workers["w1@h"]["failed"] == 1


def test_an_offline_worker_is_not_online():
    tracker = WorkerTracker(clock=Clock(T0))
    tracker.handle(heartbeat())
    tracker.handle(heartbeat(kind="offline", ts=T0 + 1))
    state = tracker.workers["w1@h"]
    assert state["online"] is False
    assert not is_online(state, T0 + 2)


def test_a_worker_is_online_while_its_heartbeat_is_younger_than_three_periods_or_ten_seconds():
    assert online_window(2.0) == 10 and online_window(5) == 15 and online_window(None) == 10
    state = {"online": True, "last_heartbeat": T0, "freq": 2.0}
    assert is_online(state, T0 + 9.9)
    assert not is_online(state, T0 + 10)
    assert is_online({**state, "freq": 5}, T0 + 14)
    assert not is_online({"online": True, "last_heartbeat": None}, T0)


def test_restored_states_are_kept_until_they_change():
    tracker = WorkerTracker(clock=Clock(T0))
    tracker.restore([{"hostname": "old@h", "online": True, "last_heartbeat": T0 - 100, "online_since": T0 - 500}])
    assert tracker.due() == {}
    tracker.handle(heartbeat(host="old@h", ts=T0))
    assert tracker.due()["old@h"]["online_since"] == T0 - 500


def test_overlong_names_are_cut_to_the_column_widths():
    agg = Aggregator(clock=Clock())
    agg.handle(sent("long", T0, name="n" * 300, queue="q" * 300))
    ((name, queue),) = agg.totals
    assert (len(name), len(queue)) == (255, 200)


def test_a_failure_of_a_task_started_before_the_monitor_ran_takes_its_start_from_the_result():
    agg = Aggregator(clock=Clock())
    agg.handle(ev("failed", "old", T0 + 9))
    facts = RunFacts(task_name="examples.fail", queue="default", created_at=T0, eta=None, started_at=T0 + 1)
    agg.resolve({"old": facts})
    counts = minute_counts(agg, T0, "examples.fail", "default")
    assert counts.failed == 1 and counts.runtime_sum == pytest.approx(8.0)
