"""The monitor process end to end: real Valkey, real workers, ``manage.py taskcenter_monitor`` as a subprocess."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import pytest
from celery import current_app
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import QueueSample, TaskMinute, TaskTotals
from taskcenter.monitor.histogram import histogram_parts
from taskcenter.monitor.redis_state import STARTED_KEY, WORKERS_KEY
from taskcenter.selectors import monitoring
from taskcenter.services.launch import run_launch
from tests.conftest import (
    LOG_DIR,
    ROOT,
    CeleryProcess,
    RedisServer,
    _die_with_parent,
    process_env,
    use_broker,
    wait_for,
    wait_for_state,
)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

#: Launches counted here go to a queue these tasks do not declare, so leftovers of other tests cannot mix in.
QUEUE = "low"


class MonitorProcess:
    """``manage.py taskcenter_monitor`` with short intervals, its output in test-output/logs/monitor.log."""

    def __init__(self, env: dict):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / "monitor.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self._offset = self.log_path.stat().st_size
        self.started_at = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "taskcenter_monitor", "--flush-interval", "0.5", "--sample-interval", "2"],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def log(self) -> str:
        with open(self.log_path, "rb") as log:
            log.seek(self._offset)
            return log.read().decode(errors="replace")

    def consuming(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"The monitor exited early:\n{self.log()[-3000:]}")
        return "consuming events" in self.log()

    def stop(self, timeout: float = 15) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


@pytest.fixture
def start_monitor(transactional_db, redis_server):
    """Start a monitor on a broker (the session's by default); every one started is stopped afterwards."""
    started: list[MonitorProcess] = []

    def start(server: RedisServer = redis_server, *, standby: bool = False) -> MonitorProcess:
        monitor = MonitorProcess(process_env(server))
        started.append(monitor)
        if standby:
            wait_for(lambda: "standing by" in monitor.log(), timeout=30, message="the monitor to stand by")
            return monitor
        wait_for(monitor.consuming, timeout=30, message="the monitor to consume events")
        client = server.client()
        wait_for(
            lambda: float(client.get(STARTED_KEY) or 0) >= monitor.started_at,
            timeout=10,
            message="the monitor to write its start time",
        )
        return monitor

    yield start
    for monitor in started:
        monitor.stop()


def launch(add: int, fail: int) -> list:
    runs = [run_launch(task_name="examples.add", args=[i, i], queue=QUEUE) for i in range(add)]
    runs += [run_launch(task_name="examples.fail", kwargs={"message": "monitored"}, queue=QUEUE) for _ in range(fail)]
    return runs


def minute_sums(task_name: str) -> dict:
    sums = {"sent": 0, "started": 0, "succeeded": 0, "failed": 0, "runtime": 0, "wait": 0, "wait_sum": 0.0}
    for row in TaskMinute.objects.filter(task_name=task_name, queue=QUEUE):
        for name in ("sent", "started", "succeeded", "failed"):
            sums[name] += getattr(row, name)
        sums["runtime"] += sum(histogram_parts(row.runtime_buckets)[0])
        sums["wait"] += sum(histogram_parts(row.wait_buckets)[0])
        sums["wait_sum"] += row.wait_sum
    return sums


def totals_of(task_name: str) -> TaskTotals | None:
    return TaskTotals.objects.filter(task_name=task_name, queue=QUEUE).first()


def assert_counted(*, add: int, fail: int) -> None:
    """Totals and per-minute rows both show exactly ``add`` successes and ``fail`` failures."""

    def totals_reached():
        adds, fails = totals_of("examples.add"), totals_of("examples.fail")
        return adds and fails and adds.succeeded >= add and fails.failed >= fail

    wait_for(totals_reached, timeout=20, message=f"the monitor to count {add} successes and {fail} failures")
    time.sleep(1.5)  # a few more flushes: nothing may be counted twice
    adds, fails = totals_of("examples.add"), totals_of("examples.fail")
    assert (adds.sent, adds.started, adds.succeeded, adds.failed) == (add, add, add, 0)
    assert (fails.sent, fails.started, fails.succeeded, fails.failed) == (fail, fail, 0, fail)
    assert sum(adds.runtime_buckets) == add and sum(fails.runtime_buckets) == fail
    assert sum(adds.wait_buckets) == add and sum(fails.wait_buckets) == fail
    assert adds.wait_sum > 0 and adds.runtime_sum > 0
    add_minutes, fail_minutes = minute_sums("examples.add"), minute_sums("examples.fail")
    assert add_minutes == {
        "sent": add,
        "started": add,
        "succeeded": add,
        "failed": 0,
        "runtime": add,
        "wait": add,
        "wait_sum": pytest.approx(adds.wait_sum),
    }
    assert (fail_minutes["sent"], fail_minutes["failed"], fail_minutes["runtime"]) == (fail, fail, fail)


def test_the_monitor_counts_tasks_and_continues_after_a_restart(start_monitor, celery_worker):
    since = timezone.now() - timedelta(minutes=1)
    monitor = start_monitor()

    def worker_online():
        return next((w for w in monitoring.workers_state() if w.hostname == celery_worker.hostname and w.online), None)

    worker = wait_for(worker_online, timeout=15, message="the monitor to report the test worker online")
    assert time.time() - worker.last_heartbeat < 10
    assert isinstance(worker.processed, int) and isinstance(worker.active, int)
    assert monitoring.monitor_alive(max_age=5)

    runs = launch(add=5, fail=2)
    wait_for_state(runs)
    assert_counted(add=5, fail=2)

    assert monitor.stop() == 0
    assert "stopped after" in monitor.log()
    assert not monitoring.monitor_alive()  # a monitor that stopped cleanly says so at once

    # Counted before the restart stays; the new process continues (same minute rows included).
    start_monitor()
    assert_counted(add=5, fail=2)
    runs = launch(add=3, fail=1)
    wait_for_state(runs)
    assert_counted(add=8, fail=3)

    # The read API sees the same figures.
    series = monitoring.minute_series(since=since, task_name="examples.add", queue=QUEUE)
    assert sum(point.succeeded for point in series) == 8
    assert any(point.runtime_p95 is not None and point.wait_p50 is not None for point in series)
    breakdown = {(row["task_name"], row["queue"]): row for row in monitoring.task_breakdown(since=since)}
    assert breakdown[("examples.fail", QUEUE)]["failed"] == 3
    assert breakdown[("examples.add", QUEUE)]["runtime_p95"] is not None
    overview = monitoring.summary(since=since)
    assert overview["succeeded"] >= 8 and overview["failed"] >= 3
    assert overview["runtime"]["p50"] is not None and overview["wait"]["p99"] is not None
    # Queue samples are taken every 2 s here.
    wait_for(lambda: QueueSample.objects.filter(queue=QUEUE).exists(), timeout=10, message="a queue sample")
    assert monitoring.queue_series(since=since)[QUEUE]


def test_a_second_monitor_stands_by_until_the_first_one_stops(start_monitor, celery_worker):
    first = start_monitor()
    second = start_monitor(standby=True)
    assert "holds the lock" in second.log()
    wait_for_state(launch(add=2, fail=0))
    wait_for(lambda: (t := totals_of("examples.add")) and t.succeeded == 2, timeout=20, message="2 successes")

    assert first.stop() == 0
    wait_for(lambda: "took the lock" in second.log(), timeout=15, message="the second monitor to take over")
    wait_for(second.consuming, timeout=10, message="the second monitor to consume events")
    wait_for_state(launch(add=1, fail=0))
    wait_for(lambda: totals_of("examples.add").succeeded == 3, timeout=20, message="3 successes")
    time.sleep(1.5)
    totals = totals_of("examples.add")
    assert (totals.sent, totals.started, totals.succeeded) == (3, 3, 3)  # counted once, by one monitor at a time


def test_a_run_started_on_a_worker_that_died_is_reported_stuck(
    start_monitor, celery_worker, redis_server, staff_client
):
    start_monitor()
    hostname = f"doomed-{os.getpid()}@localhost"
    replies = current_app.control.cancel_consumer(QUEUE, destination=[celery_worker.hostname], reply=True)
    assert replies, "the session worker did not answer"
    doomed = run = None
    try:
        # Threads pool: the task runs inside the worker process, so SIGKILL ends it with the worker.
        doomed = CeleryProcess(
            "worker-doomed",
            ["worker", "--loglevel=INFO", "--pool=threads", "--concurrency=1", f"--queues={QUEUE}",
             f"--hostname={hostname}", "--without-mingle", "--without-gossip"],
            process_env(redis_server),
        )  # fmt: skip
        wait_for(
            lambda: current_app.control.ping(destination=[hostname], timeout=0.5),
            timeout=60,
            message="the second worker to answer",
        )
        run = run_launch(task_name="examples.process_items", kwargs={"items": 60, "seconds_per_item": 1}, queue=QUEUE)
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="STARTED", worker=hostname).exists(),
            timeout=30,
            message="the long run to start on the second worker",
        )
        wait_for(
            lambda: any(w.hostname == hostname and w.online for w in monitoring.workers_state()),
            timeout=10,
            message="the monitor to see the second worker",
        )
        assert run.task_id not in {r.task_id for r in monitoring.stuck_runs()}

        doomed.process.kill()
        doomed.process.wait(timeout=10)
        killed_at = time.monotonic()
        stuck = wait_for(
            lambda: [r for r in monitoring.stuck_runs() if r.task_id == run.task_id],
            timeout=30,
            message="the run to be reported stuck",
        )
        assert time.monotonic() - killed_at >= 5  # not before the heartbeat expired
        assert stuck[0].state == "STARTED" and stuck[0].result_row.worker == hostname
        state = {w.hostname: w for w in monitoring.workers_state()}[hostname]
        assert not state.online
        run_url = reverse("taskcenter:run_detail", args=[run.task_id])
        assert "Stuck:" in staff_client.get(run_url).content.decode()  # flagged on the run page
        assert run_url in staff_client.get(reverse("taskcenter:dashboard")).content.decode()  # and the dashboard
        assert celery_worker.hostname in {w.hostname for w in monitoring.workers_state() if w.online}
    finally:
        if doomed is not None:
            doomed.stop()
        redis_server.client().hdel(WORKERS_KEY, hostname)
        if run is not None:
            current_app.control.revoke(run.task_id)
        current_app.control.add_consumer(QUEUE, destination=[celery_worker.hostname], reply=True)


def test_the_monitor_reconnects_after_a_broker_restart(start_monitor, redis_server, tmp_path):
    """A private broker is stopped and started again under a running monitor; counting resumes."""
    (tmp_path / "broker").mkdir()
    broker = RedisServer(tmp_path / "broker")
    broker.start()
    try:
        use_broker(broker.url)
        monitor = start_monitor(broker)

        def sent_count() -> int:
            totals = TaskTotals.objects.filter(task_name="examples.add", queue="high").first()
            return totals.sent if totals else 0

        run_launch(task_name="examples.add", args=[1, 2])  # no worker here: only task-sent is counted
        wait_for(lambda: sent_count() == 1, timeout=15, message="the first task-sent to be counted")

        broker.stop()
        wait_for(lambda: "Event stream lost" in monitor.log(), timeout=15, message="the monitor to notice")
        time.sleep(1)
        broker.start()
        use_broker(broker.url)
        wait_for(lambda: monitor.log().count("consuming events") >= 2, timeout=40, message="the monitor to reconnect")
        run_launch(task_name="examples.add", args=[3, 4])
        wait_for(lambda: sent_count() == 2, timeout=15, message="the second task-sent to be counted")
        assert monitor.process.poll() is None
    finally:
        use_broker(redis_server.url)
        broker.stop()


def test_read_api_answers_nothing_known_when_the_broker_is_down(tmp_path, redis_server):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server):
        assert monitoring.workers_state() == []
        assert monitoring.monitor_alive() is False
        assert monitoring.stuck_runs() == []
        assert monitoring.monitor_status()["reachable"] is False
