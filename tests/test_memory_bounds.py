"""Long-lived processes keep no memory per finished task (bench/memory.py measures the whole)."""

from taskcenter.monitor.aggregate import Aggregator, RunFacts


def events(agg: Aggregator, uid: str, ts: float, *kinds: str) -> None:
    for i, kind in enumerate(kinds):
        event = {"type": kind, "uuid": uid, "timestamp": ts + i * 0.01}
        if kind == "task-sent":
            event |= {"name": "examples.add", "queue": "high"}
        if kind == "task-succeeded":
            event["runtime"] = 0.005
        agg.handle(event)


def test_the_monitor_forgets_each_task_once_it_finished_and_still_counts_it():
    agg = Aggregator(clock=lambda: 1_000.0)
    for i in range(3000):
        final = ("task-succeeded", "task-failed", "task-revoked")[i % 3]
        events(agg, f"t{i}", 1_000.0, "task-sent", "task-received", "task-started", final)
    assert len(agg.tasks) == 0
    counts = agg.totals[("examples.add", "high")]
    assert (counts.sent, counts.started, counts.succeeded, counts.failed, counts.revoked) == (3000, 3000) + (1000,) * 3
    assert sum(counts.wait_buckets) == 3000 and sum(counts.runtime_buckets) == 2000  # revoked runs have no run time


def test_the_monitor_keeps_what_it_needs_of_tasks_still_waiting_running_or_retrying():
    agg = Aggregator(clock=lambda: 1_000.0)
    events(agg, "waiting", 1_000.0, "task-sent")
    events(agg, "running", 1_000.0, "task-sent", "task-started")
    events(agg, "retrying", 1_000.0, "task-sent", "task-started", "task-retried")
    assert set(agg.tasks) == {"waiting", "running", "retrying"}
    events(agg, "retrying", 1_001.0, "task-sent", "task-started", "task-succeeded")  # its retry ran
    assert set(agg.tasks) == {"waiting", "running"}
    assert agg.totals[("examples.add", "high")].succeeded == 1


def test_a_task_the_monitor_learnt_of_from_its_run_row_is_forgotten_once_counted():
    agg = Aggregator(clock=lambda: 1_000.0)
    events(agg, "before-start", 1_000.0, "task-started", "task-succeeded")  # sent before the monitor ran
    assert agg.unknown_ids() == ["before-start"]
    agg.resolve({"before-start": RunFacts(task_name="examples.add", queue="high", created_at=999.0, eta=None)})
    assert len(agg.tasks) == 0 and not agg.pending
    assert agg.totals[("examples.add", "high")].succeeded == 1


def test_the_worker_timer_drops_the_time_limit_entries_of_finished_tasks():
    from kombu.asynchronous.timer import Timer

    from taskcenter.worker_timer import timer_drop_cancelled

    timer, fired = Timer(), []
    entries = [timer.call_after(540 + i, fired.append, (i,)) for i in range(1000)]
    for i, entry in enumerate(entries):
        if i % 100:  # as the pool does when a task ends before its limits
            entry.cancel()
    assert len(timer.queue) == 1000
    assert timer_drop_cancelled(timer) == 990
    assert [item.entry.args for item in sorted(timer.queue)] == [(i,) for i in range(0, 1000, 100)]
    assert timer_drop_cancelled(timer) == 0


def test_every_worker_of_the_app_sweeps_its_timer():
    from config.celery import app
    from taskcenter.worker_timer import TimerSweep

    assert TimerSweep in app.steps["worker"]
