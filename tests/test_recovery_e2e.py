"""Nothing lost, end to end: a killed worker, a restarted broker, a redelivery after the end.

Real processes on a Redis of the module's own (it is stopped and restarted): workers,
the monitor, and Valkey with its append-only file. Executions are counted in the
workers' logs (Celery logs one ``succeeded in`` line per execution that finished).
"""

import json
import os
import signal
import time
import uuid
from pathlib import Path

import pytest
from celery import current_app
from django_celery_results.models import TaskResult

from taskcenter.broker import BROKER_ERRORS
from taskcenter.models import AuditEntry, Run
from taskcenter.services.launch import run_launch
from tests.conftest import CeleryProcess, process_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

#: Fast recovery settings for the monitor of these tests (the defaults are 3 s, 5 s and 15 s).
RECOVERY_ENV = {
    "TASKCENTER_RECOVERY_INTERVAL": "1",
    "TASKCENTER_RECOVERY_MIN_AGE": "2",
    "TASKCENTER_WORKER_LOST_SECONDS": "8",
}


def start_worker(
    redis, name: str, *, concurrency: int = 1, queues: str = "default,high,low", env: dict | None = None
) -> CeleryProcess:
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    worker = CeleryProcess(
        f"recovery-{hostname}",
        ["worker", "--loglevel=INFO", f"--concurrency={concurrency}", f"--hostname={hostname}", f"--queues={queues}",
         "--without-mingle", "--without-gossip"],
        process_env(redis, **(env or {})),
    )  # fmt: skip
    worker.hostname = hostname

    def answers():
        if worker.process.poll() is not None:
            raise AssertionError(f"Worker exited early:\n{worker.log()[-3000:]}")
        try:
            return current_app.control.ping(destination=[hostname], timeout=0.5)
        except BROKER_ERRORS:  # a connection of this process's pool that a broker restart broke
            return False

    wait_for(answers, timeout=90, message=f"worker {hostname} to answer a ping")
    return worker


def start_monitor(redis) -> CeleryProcess:
    """Start a monitor on ``redis``, where a worker is running; return once it receives events."""
    began = time.time()
    monitor = CeleryProcess(
        f"recovery-monitor-{uuid.uuid4().hex[:6]}",
        ["taskcenter_monitor", "--flush-interval=0.5", "--sample-interval=5"],
        process_env(redis, **RECOVERY_ENV),
        program=CeleryProcess.MANAGE,
    )
    # An event received after it started (a worker's heartbeat, every 2 s): a tick alone may come
    # before its event stream is up, and a test's first task-started event would be missed.
    client = redis.client()
    wait_for(
        lambda: float(client.get("taskcenter:monitor:last_event") or 0) > began, timeout=60,
        message="the monitor to receive events",
    )  # fmt: skip
    return monitor


def kill_whole_worker(worker: CeleryProcess) -> None:
    """SIGKILL the worker's main process and its pool processes at once."""
    main = worker.process.pid
    children = [
        int(stat.parent.name)
        for stat in Path("/proc").glob("[0-9]*/stat")
        if _parent(stat) == main
    ]  # fmt: skip
    # Stop them all first: on a loaded machine the main process could otherwise see its child die
    # (and requeue the task) between two kills, which is not the fault being tested.
    for sig in (signal.SIGSTOP, signal.SIGKILL):
        for pid in [main, *children]:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
    worker.process.wait(timeout=10)


def _parent(stat: Path) -> int | None:
    try:
        return int(stat.read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def executions(task_id: str, *workers: CeleryProcess) -> int:
    """How many executions of ``task_id`` finished, from the workers' logs."""
    return sum(w.log().count(f"[{task_id}] succeeded in") for w in workers)


def stop_all(*processes) -> None:
    for process in processes:
        if process is not None:
            process.stop()


def test_the_run_of_a_killed_worker_runs_again_on_another_worker_within_a_minute_and_succeeds_once(
    private_redis, private_broker
):
    first = start_worker(private_redis, "doomed")
    monitor = second = None
    try:
        monitor = start_monitor(private_redis)
        run = run_launch(task_name="examples.process_items", kwargs={"items": 12, "seconds_per_item": 0.5})
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="STARTED").exists(),
            timeout=60, message="the run to start on the first worker",
        )  # fmt: skip
        second = start_worker(private_redis, "survivor")
        killed_at = time.monotonic()
        kill_whole_worker(first)
        assert private_broker.hlen("unacked") == 1  # its message waits, unacknowledged

        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=60, message="the run to succeed on the second worker",
        )  # fmt: skip
        assert time.monotonic() - killed_at < 60
        result = TaskResult.objects.get(task_id=run.task_id)
        assert result.worker == second.hostname
        assert executions(run.task_id, first, second) == 1
        attempts = wait_for(
            lambda: (a := Run.objects.get(pk=run.pk).attempts) and len(a) == 2 and a[-1]["ended"] and a,
            timeout=30, message="both attempts recorded",
        )  # fmt: skip
        assert attempts[0]["worker"] == first.hostname and attempts[0]["ended"] == "worker lost"
        assert attempts[1]["worker"] == second.hostname and attempts[1]["ended"] == "succeeded"
        assert "no worker holds it" in monitor.log()
        audit = AuditEntry.objects.get(action="run_recover", task_id=run.task_id)
        assert audit.actor is None and "worker lost" in audit.message and first.hostname in audit.message
        assert not private_broker.hlen("unacked")
    finally:
        stop_all(second, monitor, first)


def test_a_message_redelivered_after_its_run_finished_is_acknowledged_and_not_run_again(private_redis, private_broker):
    worker = start_worker(private_redis, "once", queues="high")
    monitor = None
    try:
        run = run_launch(task_name="examples.add", args=[20, 22])
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=60, message="the run to succeed",
        )  # fmt: skip
        done_at = TaskResult.objects.get(task_id=run.task_id).date_done
        # The same message, left unacknowledged as if the worker died before its acknowledgement
        # (made on a queue nobody consumes, then moved to kombu's unacked hash as delivered from "high").
        current_app.send_task("examples.add", args=[20, 22], task_id=run.task_id, queue="low")
        lists = [key for key in private_broker.keys("low*") if private_broker.llen(key)]
        message = json.loads(private_broker.rpop(lists[0]))
        message["properties"]["delivery_info"].update(exchange="high", routing_key="high")
        private_broker.hset("unacked", "lost-ack", json.dumps([message, "high", "high"]))
        private_broker.zadd("unacked_index", {"lost-ack": time.time() - 60})

        monitor = start_monitor(private_redis)  # gives it back, marked redelivered
        wait_for(lambda: "Acknowledged the redelivered message of" in worker.log(), timeout=60, message="the ack")
        assert not private_broker.hlen("unacked")
        assert all(not private_broker.llen(key) for key in private_broker.keys("high*"))
        assert executions(run.task_id, worker) == 1
        assert TaskResult.objects.get(task_id=run.task_id).date_done == done_at
    finally:
        stop_all(monitor, worker)


def test_runs_in_flight_during_a_broker_restart_run_again_within_ten_seconds_of_its_return(
    private_redis, private_broker
):
    worker = start_worker(private_redis, "steady", concurrency=2)
    monitor = None
    try:
        monitor = start_monitor(private_redis)
        runs = [
            run_launch(task_name="examples.process_items", kwargs={"items": 16, "seconds_per_item": 0.5})
            for _ in range(2)
        ]
        ids = [run.task_id for run in runs]
        wait_for(
            lambda: TaskResult.objects.filter(task_id__in=ids, status="STARTED").count() == 2,
            timeout=60, message="both runs to start",
        )  # fmt: skip
        time.sleep(1.5)  # the append-only file is written every second
        private_redis.stop()  # SIGTERM
        time.sleep(5)
        private_redis.start()
        back = time.time()

        def started_again():
            # STARTED is stored again, with a new date_started, when a run starts again.
            starts = [row.timestamp() for row in TaskResult.objects.filter(task_id__in=ids).values_list(
                "date_started", flat=True) if row is not None]  # fmt: skip
            return len(starts) == 2 and all(start > back for start in starts) and starts

        starts = wait_for(started_again, timeout=30, message="both runs to start again")
        assert all(start - back < 10 for start in starts), starts
        wait_for(
            lambda: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == 2,
            timeout=60, message="both runs to succeed",
        )  # fmt: skip
        assert all(executions(task_id, worker) == 1 for task_id in ids)
    finally:
        stop_all(monitor, worker)


# --- Delayed runs: held in the scheduled set, not on a worker ---------------------------------


def test_a_delayed_run_outlives_the_worker_that_was_up_when_it_was_launched_and_runs_once(
    private_redis, private_broker
):
    from taskcenter.scheduled_set import SCHEDULED_KEY

    first = start_worker(private_redis, "gone-before-due")
    second = None
    try:
        run = run_launch(task_name="examples.add", args=[3, 4], countdown=6)
        assert private_broker.zscore(SCHEDULED_KEY, run.task_id) is not None
        kill_whole_worker(first)
        assert not private_broker.hlen("unacked")  # nothing was parked on the dead worker
        second = start_worker(private_redis, "up-when-due")
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=60, message="the delayed run to succeed on the second worker",
        )  # fmt: skip
        assert executions(run.task_id, first, second) == 1
        assert TaskResult.objects.get(task_id=run.task_id).date_started >= run.eta
    finally:
        stop_all(second, first)


def test_a_delayed_run_survives_a_broker_restart_and_runs_once(private_redis, private_broker):
    from taskcenter.scheduled_set import SCHEDULED_KEY

    worker = start_worker(private_redis, "through-restart")
    try:
        run = run_launch(task_name="examples.add", args=[5, 6], countdown=8)
        assert private_broker.zscore(SCHEDULED_KEY, run.task_id) is not None
        time.sleep(1.5)  # the append-only file is written every second
        private_redis.stop()  # SIGTERM
        time.sleep(3)
        private_redis.start()
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=60, message="the delayed run to succeed after the restart",
        )  # fmt: skip
        assert executions(run.task_id, worker) == 1
    finally:
        stop_all(worker)


def test_a_countdown_longer_than_a_short_visibility_timeout_runs_once(private_redis, private_broker):
    """With a 60 s visibility timeout a run due in 65 s is not delivered twice (celery#2481)."""
    short = {"CELERY_VISIBILITY_TIMEOUT": "60", "CELERY_TASK_TIME_LIMIT": "50", "CELERY_TASK_SOFT_TIME_LIMIT": "40"}
    workers = []
    try:
        for name in ("short-a", "short-b"):
            workers.append(start_worker(private_redis, name, env=short))
        run = run_launch(task_name="examples.add", args=[6, 7], countdown=65)
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=120, message="the delayed run to succeed",
        )  # fmt: skip
        time.sleep(3)  # a second delivery would run at once
        assert executions(run.task_id, *workers) == 1
        assert not private_broker.hlen("unacked")
    finally:
        stop_all(*workers)
