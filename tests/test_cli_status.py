"""``manage.py tc status`` and ``tc monitor health/progress``: health with exit codes, a live progress view.

A Redis server of this module's own holds the state a healthy system writes (a worker
online, a beat that ticked, a monitor that flushed), as in test_health.py.
"""

import io
import json
import time

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from taskcenter.models import Run
from taskcenter.progress import report_progress
from taskcenter.selectors.monitoring import TICK_KEY
from tests.cli_helpers import make_user, tc, tc_fails, tc_json
from tests.conftest import broker_down, use_broker
from tests.test_health import set_beat, set_worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def healthy(private_broker):
    set_worker(private_broker)
    set_beat(private_broker)
    private_broker.set(TICK_KEY, time.time())
    return private_broker


def test_status_exits_0_when_every_check_passes(healthy):
    out = tc("status")
    for name in ("database", "broker", "workers", "beat", "monitor"):
        assert f"ok   {name}" in out
    assert out.rstrip().endswith("Healthy.")
    document = tc_json("status")
    assert document["status"] == "ok" and list(document["checks"]) == [
        "database", "broker", "workers", "beat", "monitor",
    ]  # fmt: skip
    assert document["checked_at"][-6] in "+-"


def test_status_is_degraded_with_exit_1_without_a_monitor_or_worker(healthy):
    healthy.delete(TICK_KEY)
    error = tc_fails("status", code=1, match="taskcenter is degraded: monitor")
    assert "degraded" in str(error)
    set_worker(healthy, age=600)
    out = io.StringIO()
    with pytest.raises(CommandError, match="degraded: workers, monitor"):
        call_command("tc", "status", "--json", stdout=out)
    document = json.loads(out.getvalue())
    assert document["status"] == "degraded"
    assert document["checks"]["workers"] == {"ok": False, "message": "No worker is online."}


def test_status_fails_within_two_seconds_with_the_broker_down(redis_server, tmp_path):
    with broker_down(tmp_path, redis_server, frozen=True):
        began = time.monotonic()
        out = io.StringIO()
        with pytest.raises(CommandError, match="failing: broker") as raised:
            call_command("tc", "status", stdout=out)
        assert time.monotonic() - began < 2.0
    assert raised.value.returncode == 1
    assert "FAIL broker" in out.getvalue() and "Not checked: the broker is not reachable" in out.getvalue()


def test_status_and_monitor_are_refused_to_a_user_who_may_not_see_the_pages(healthy, django_user_model):
    make_user(django_user_model, "outsider", "view_run", staff=False)
    make_user(django_user_model, "viewer", "view_run")
    for args in (["status"], ["monitor", "health"], ["monitor", "progress", "--once"]):
        tc_fails(*args, "--user", "outsider", code=1, match="You may not view taskcenter")
    assert "Healthy." in tc("status", "--user", "viewer")


def test_monitor_health_lists_workers_queues_and_alerts(healthy):
    out = tc("monitor", "health")
    assert "w1@test" in out and "QUEUE" in out and "WAITING" in out
    document = tc_json("monitor", "health")
    assert document["status"] == "ok"
    assert document["workers"][0]["hostname"] == "w1@test" and document["workers"][0]["online"] is True
    assert {q["name"] for q in document["queues"]} >= {"high", "default", "low"}
    assert all(q["depth"] == 0 for q in document["queues"])
    assert isinstance(document["alerts"], list)


def test_monitor_health_with_the_broker_down_is_failing(redis_server, tmp_path):
    with broker_down(tmp_path, redis_server):
        out = io.StringIO()
        with pytest.raises(CommandError, match="failing") as raised:
            call_command("tc", "monitor", "health", stdout=out)
    assert raised.value.returncode == 1
    assert "Alerts not evaluated: the broker is not reachable." in out.getvalue()


def test_monitor_progress_once_shows_running_tasks_with_their_progress(private_broker):
    from django_celery_results.models import TaskResult

    for task_id, task_name in (("run-a", "examples.process_items"), ("run-b", "examples.add")):
        TaskResult.objects.create(task_id=task_id, task_name=task_name, status="STARTED")
        Run.objects.create(task_result_id=task_id, task_name=task_name, queue="low")
    TaskResult.objects.create(task_id="done", task_name="examples.add", status="SUCCESS")
    Run.objects.create(task_result_id="done", task_name="examples.add", queue="low")
    report_progress("run-a", done=3, total=10, message="item 3 of 10")
    out = tc("monitor", "progress", "--once")
    assert out.splitlines()[0].startswith("Running tasks at ") and out.splitlines()[0].endswith(": 2")
    assert "run-a  examples.process_items" in out and "30.0%  3/10" in out and "item 3 of 10" in out
    assert "run-b  examples.add" in out and "(no progress reported)" in out and "done" not in out
    frame = tc_json("monitor", "progress", "--once", "--task", "examples.process_items")
    assert [row["task_id"] for row in frame["running"]] == ["run-a"]
    assert frame["running"][0]["progress"]["done"] == 3 and frame["running"][0]["progress"]["total"] == 10
    assert frame["running"][0]["progress"]["updated_at"][-6] in "+-"
    assert frame["at"][-6] in "+-" and frame["problem"] is None
    tc_fails("monitor", "progress", "--once", "--limit", "0", code=2, match="must be positive")


def test_monitor_progress_without_the_broker_says_so(tmp_path, redis_server):
    from django_celery_results.models import TaskResult

    TaskResult.objects.create(task_id="run-c", task_name="examples.add", status="STARTED")
    Run.objects.create(task_result_id="run-c", task_name="examples.add", queue="low")
    use_broker(f"redis+socket://{tmp_path}/absent.sock")
    try:
        out = tc("monitor", "progress", "--once")
    finally:
        use_broker(redis_server.url)
    assert "Progress not read: the broker is not reachable." in out and "run-c" in out
