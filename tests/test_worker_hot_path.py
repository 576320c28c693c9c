"""The worker's hot path (issue 12): what a pool process costs the database per task.

A real worker (prefork, 2 processes) of the project's app with a statement counter
(``tests/worker_sql_probe.py``) on a Redis of this module's own.
"""

import base64
import json

import pytest
from celery import current_app
from django_celery_results.models import TaskResult

from tests.conftest import CeleryProcess, process_env, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

TASKS = 30


@pytest.fixture
def probe_worker(private_broker, private_redis, tmp_path):
    worker = CeleryProcess(
        "sql-probe-worker",
        ["worker", "--loglevel=INFO", "--concurrency=2", "--hostname=sql-probe@localhost",
         "--without-mingle", "--without-gossip"],
        process_env(private_redis, TASKCENTER_SQL_PROBE_DIR=str(tmp_path)),
        program=("-m", "celery", "-A", "tests.worker_sql_probe"),
    )  # fmt: skip
    try:
        wait_for(lambda: current_app.control.ping(destination=["sql-probe@localhost"], timeout=0.5),
                 timeout=60, message="the probe worker to answer")  # fmt: skip
        yield worker, tmp_path
    finally:
        worker.stop()


def event_body(data: bytes):
    """The event, or list of events, a kombu fanout message on Redis carries."""
    message = json.loads(data)
    body = message["body"]
    if message.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    return json.loads(body)


def pool_counts(folder) -> list[dict]:
    return [json.loads(path.read_text()) for path in folder.glob("*.json")]


def test_pool_process_reuses_its_connection_and_writes_a_short_task_in_one_statement(probe_worker):
    worker, folder = probe_worker
    task = current_app.tasks["examples.add"]
    ids = [task.apply_async(args=[i, 1]).id for i in range(TASKS)]
    wait_for(lambda: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == TASKS,
             timeout=60, message="every result")  # fmt: skip
    wait_for(lambda: sum(c["tasks"] for c in pool_counts(folder)) == TASKS, timeout=10, message="the counts")
    counts = pool_counts(folder)
    tasks = sum(c["tasks"] for c in counts)
    statements = sum(c["statements"] for c in counts)
    # One upsert per task: a no-op ends before its held STARTED is due, so only SUCCESS is written
    # (django-celery-results' path took four statements: SELECT + INSERT, SELECT + UPDATE).
    assert statements == tasks, counts
    # One connection per pool process, not one per task (Celery's Django fixup closed it after each).
    assert all(c["connections"] <= 1 for c in counts), counts


def test_result_row_is_complete_when_the_task_is_done(probe_worker):
    result = current_app.tasks["examples.add"].apply_async(args=[20, 22])
    assert result.get(timeout=30) == 42
    row = TaskResult.objects.get(task_id=result.id)
    assert row.status == "SUCCESS"
    assert json.loads(row.result) == 42
    assert row.task_name == "examples.add"
    assert row.worker == "sql-probe@localhost"
    assert row.date_started is not None and row.date_created <= row.date_started <= row.date_done


def test_prefetch_multiplier_must_leave_prefetched_messages_within_the_visibility_timeout():
    """A message prefetched behind m - 1 runs of the longest kind is acknowledged after m time limits."""
    from tests.test_settings import load_settings

    refused = load_settings(DEBUG="true", CELERY_WORKER_PREFETCH_MULTIPLIER="6")  # 6 x 600 s >= 3600 s
    assert refused.returncode != 0
    assert "times CELERY_WORKER_PREFETCH_MULTIPLIER (6)" in refused.stderr
    accepted = load_settings(DEBUG="true", CELERY_WORKER_PREFETCH_MULTIPLIER="4")  # 2,400 s < 3,600 s
    assert accepted.returncode == 0, accepted.stderr


def test_task_events_leave_in_batches_and_none_is_lost(probe_worker, private_redis):
    """Every task's received, started and succeeded events reach a subscriber, in fewer messages than tasks."""
    pubsub = private_redis.client().pubsub(ignore_subscribe_messages=True)
    pubsub.psubscribe("*celeryev*")
    events, messages = [], 0
    task = current_app.tasks["examples.add"]
    ids = {task.apply_async(args=[i, 1]).id for i in range(TASKS)}

    def received_all() -> bool:
        nonlocal messages
        while (message := pubsub.get_message(timeout=0.1)) is not None:
            body = event_body(message["data"])
            batch = [e for e in (body if isinstance(body, list) else [body]) if e.get("uuid") in ids]
            worker_events = [e for e in batch if e["type"] != "task-sent"]  # task-sent comes from this process
            messages += bool(worker_events)
            events.extend(worker_events)
        done = {(e["type"], e["uuid"]) for e in events}
        return all((kind, i) in done for i in ids for kind in ("task-received", "task-started", "task-succeeded"))

    try:
        wait_for(received_all, timeout=60, message="every task's events")
    finally:
        pubsub.close()
    assert messages < TASKS, f"{messages} event messages for {TASKS} tasks"


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_worker_killed_mid_drain_loses_no_result(private_redis, private_broker):
    """SIGKILL of the worker and its pool mid-drain: every task still ends with its SUCCESS in the database.

    The monitor runs through it, as in production: it gives the killed worker's unacknowledged
    messages back, and sends again one that kombu lost between taking it off the queue and
    recording it unacknowledged (it judges only runs launched while it watched).
    """
    from tests.test_recovery_e2e import kill_whole_worker, start_monitor, start_worker, stop_all

    # The doomed worker starts once the queue is full: a slow publish (PostgreSQL, a loaded
    # machine) must not let it drain everything before the kill. The monitor starts first, as in
    # production, on the events of a bystander worker that listens to another queue.
    bystander = start_worker(private_redis, "drain-bystander", queues="low")
    first = monitor = second = None
    try:
        monitor = start_monitor(private_redis)
        task = current_app.tasks["examples.add"]
        with current_app.producer_or_acquire() as producer:
            ids = [task.apply_async(args=[i, 1], producer=producer).id for i in range(3000)]
        first = start_worker(private_redis, "drain-doomed", concurrency=2)
        done = wait_for(lambda: (n := TaskResult.objects.filter(status="SUCCESS").count()) >= 200 and n,
                        timeout=60, message="part of the drain")  # fmt: skip
        kill_whole_worker(first)
        finished_before = set(TaskResult.objects.filter(status="SUCCESS").values_list("task_id", flat=True))
        assert len(finished_before) >= done and len(finished_before) < len(ids), "killed too late to mean anything"
        second = start_worker(private_redis, "drain-survivor", concurrency=2)
        wait_for(lambda: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == len(ids),
                 timeout=200, message="every task's result")  # fmt: skip
        results = dict(TaskResult.objects.filter(task_id__in=ids).values_list("task_id", "result"))
        assert all(json.loads(results[task_id]) == i + 1 for i, task_id in enumerate(ids))
        # The last results are written just before their messages are acknowledged.
        wait_for(lambda: not private_broker.hlen("unacked"), timeout=10, message="every message acknowledged")
    finally:
        stop_all(second, monitor, first, bystander)
