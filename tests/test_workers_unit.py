"""Reading the workers' inspect replies: pure logic, on replies as Celery's pools give them (and odd ones)."""

from taskcenter.selectors.monitoring import WorkerState
from taskcenter.services.workers import registered_limits, worker_info


def test_registered_lines_give_each_task_its_limits_and_leave_out_the_unset_ones():
    lines = [
        "examples.add [rate_limit=10/s time_limit=30.5 soft_time_limit=20.0]",
        "examples.fail [time_limit=None]",
        "examples.flaky",
    ]
    assert registered_limits(lines) == {
        "examples.add": {"rate_limit": "10/s", "time_limit": "30.5", "soft_time_limit": "20.0"},
        "examples.fail": {},
        "examples.flaky": {},
    }
    assert registered_limits(None) == {} and registered_limits("not a list") == {}


def test_a_solo_pool_worker_without_autoscale_or_monitor_counts_is_read_without_guessing():
    answers = {
        "stats": {"w@h": {"pool": {"implementation": "celery.concurrency.solo:TaskPool", "max-concurrency": 1},
                          "pid": 42, "uptime": 7, "prefetch_count": 4, "total": {"examples.add": 3}}},
        "scheduled": {"w@h": [{"eta": "2026-12-03T08:00:00+00:00", "request": {"id": "a", "name": "examples.add"}}]},
    }  # fmt: skip
    worker = worker_info("w@h", answers)
    assert (worker.pool_implementation, worker.pool_processes) == ("solo:TaskPool", 1)
    assert (worker.pid, worker.uptime, worker.prefetch_count, worker.autoscaler) == (42, 7, 4, None)
    assert (worker.scheduled_count, worker.processed, worker.queues, worker.active) == (1, 3, [], [])
    assert (worker.succeeded, worker.failed, worker.retried) == (None, None, None)
    assert worker.started_at is not None


def test_odd_stats_values_are_unknown_not_errors_and_the_monitor_counts_are_taken():
    answers = {"stats": {"w@h": {"pid": "42", "uptime": True, "autoscaler": "N/A"}}}
    counted = WorkerState("w@h", True, None, 0, 0, None, succeeded=5, failed=1, retried=2)
    worker = worker_info("w@h", answers, counted)
    assert (worker.pid, worker.uptime, worker.autoscaler, worker.started_at) == (None, None, None, None)
    assert (worker.succeeded, worker.failed, worker.retried) == (5, 1, 2)
