"""Alerts: the Prometheus rules (checked and unit-tested by promtool), the Grafana dashboard's
queries, the real /metrics output (``promtool check metrics``), and the alerts page's own
rules (``taskcenter.selectors.alerts``) fed with crafted data.

promtool comes from Debian's ``prometheus`` package (``bin/install-test-tools``). Without it
these tests skip locally and fail under CI (when the ``CI`` environment variable is set).
"""

import json
import os
import re
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import DURATION_BUCKETS, Run, TaskMinute, TaskTotals
from taskcenter.selectors import alerts
from tests.conftest import broker_down

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
GRAFANA = ROOT / "deploy" / "grafana" / "taskcenter.json"
INSTALL = "apt-get update && apt-get install -y --no-install-recommends prometheus"
TOKEN = "rules-test-token"
QUEUE = "alerts-test"
PRIORITY_SEPARATOR = "\x06\x16"
RULE_NAMES = {
    "TaskFailureRateHigh",
    "QueueBacklogHigh",
    "QueueMessagesTooOld",
    "NoWorkersOnline",
    "BeatNotTicking",
    "StuckRuns",
    "MonitorDown",
    "DeadLettersArriving",
    "TaskTypeFailureRateHigh",
    "NewFailureGroup",
}

# --- promtool ---------------------------------------------------------------------------


@pytest.fixture
def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail(f"promtool is not installed but CI is set; install it with: {INSTALL}", pytrace=False)
    pytest.skip(f"promtool is not installed (install it with: {INSTALL})")


def run_promtool(promtool: str, *args: str, stdin: bytes | None = None) -> str:
    result = subprocess.run([promtool, *args], input=stdin, capture_output=True, timeout=60, cwd=ROOT)
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def test_alert_rules_are_valid(promtool):
    output = run_promtool(promtool, "check", "rules", str(RULES))
    assert "SUCCESS" in output
    names = set(re.findall(r"^\s*- alert: (\w+)", RULES.read_text(), flags=re.M))
    assert names >= RULE_NAMES


def test_alert_rules_pass_their_unit_tests(promtool):
    run_promtool(promtool, "test", "rules", str(RULE_TESTS))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested >= RULE_NAMES, f"rules without tests: {RULE_NAMES - tested}"


def test_grafana_dashboard_queries_parse_and_use_taskcenter_metrics(promtool, tmp_path):
    dashboard = json.loads(GRAFANA.read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs
    text = "\n".join(exprs)
    for metric in (
        "celery_tasks_total",
        "celery_task_runtime_seconds_bucket",
        "celery_task_wait_seconds_bucket",
        "histogram_quantile",
        "celery_queue_length",
        "celery_queue_oldest_message_age_seconds",
        "celery_workers_online",
        "taskcenter_beat_last_tick_timestamp_seconds",
    ):
        assert metric in text, metric
    # Grafana variables replaced by what they expand to, then parsed as recording rules.
    rules = [
        {"record": f"grafana:query_{i}", "expr": expr.replace("$__rate_interval", "5m").replace("$", "")}
        for i, expr in enumerate(exprs)
    ]
    rule_file = tmp_path / "grafana_rules.yml"
    rule_file.write_text(json.dumps({"groups": [{"name": "grafana", "rules": rules}]}))  # JSON is YAML
    run_promtool(promtool, "check", "rules", str(rule_file))


@pytest.mark.django_db
def test_metrics_output_passes_promtool_check_metrics(promtool, client, settings, redis_server):
    settings.TASKCENTER_METRICS_TOKEN = TOKEN
    buckets = [0] * (len(DURATION_BUCKETS) + 1)
    buckets[3], buckets[-1] = 4, 1
    TaskTotals.objects.create(
        task_name="examples.add", queue="default", sent=5, succeeded=4, failed=1, runtime_buckets=buckets
    )
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert b"celery_tasks_total{" in response.content
    run_promtool(promtool, "check", "metrics", stdin=response.content)


# --- The alerts page's rules (crafted data) ------------------------------------------------


@pytest.fixture
def broker(private_broker, settings):
    """This module's own Redis as the broker, with a queue no worker consumes."""
    settings.TASKCENTER_QUEUES = [*settings.TASKCENTER_QUEUES, QUEUE]
    return private_broker


@pytest.fixture
def healthy(broker):
    """What a healthy system writes: one worker online, a monitor that flushed, a beat that ticked."""
    now = time.time()
    worker = {"hostname": "w1@test", "online": True, "last_heartbeat": now, "active": 0, "processed": 3, "freq": 2}
    broker.hset("taskcenter:monitor:workers", "w1@test", json.dumps(worker))
    broker.set("taskcenter:monitor:tick", repr(now))
    broker.set("taskcenter:monitor:started", repr(now - 3600))
    set_beat(broker, age=1)
    return broker


def set_beat(client, *, age: float) -> None:
    client.set("taskcenter:beat:leader", "beathost:7:abc")
    client.set(
        "taskcenter:beat:last_tick",
        json.dumps(
            {"id": "beathost:7:abc", "hostname": "beathost", "pid": 7, "time": time.time() - age, "max_interval": 5}
        ),
    )


def push(client, *, sent_at: float, count: int = 1, step: int = 6) -> None:
    key = f"{QUEUE}{PRIORITY_SEPARATOR}{step}" if step else QUEUE
    for i in range(count):
        client.lpush(key, json.dumps({"body": "", "headers": {"id": f"m{i}", "taskcenter_sent_at": sent_at}}))


def minute(**counts) -> TaskMinute:
    return TaskMinute.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=1),
        task_name="examples.add",
        queue="default",
        **counts,
    )


def names() -> set[str]:
    return {alert.name for alert in alerts.current_alerts()}


@pytest.mark.django_db
def test_a_healthy_system_has_no_alert(healthy):
    minute(succeeded=95, failed=5)
    push(healthy, sent_at=time.time() - 10, count=3)
    assert alerts.current_alerts() == []


@pytest.mark.django_db
def test_failure_rate_above_the_threshold_fires(healthy, settings):
    minute(succeeded=8, failed=2)  # 20 %
    (alert,) = alerts.current_alerts()
    assert alert.name == "TaskFailureRateHigh" and alert.value == 0.2 and alert.threshold == 0.1
    assert "2 of 10" in alert.message
    settings.TASKCENTER_ALERT_FAILURE_RATE = 0.25
    assert alerts.current_alerts() == []


@pytest.mark.django_db
def test_old_failures_do_not_count(healthy):
    TaskMinute.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=20),
        task_name="examples.add",
        queue="default",
        failed=50,
    )
    assert alerts.current_alerts() == []


@pytest.mark.django_db
def test_queue_depth_above_the_threshold_fires(healthy, settings):
    settings.TASKCENTER_ALERT_QUEUE_DEPTH = 3
    push(healthy, sent_at=time.time(), count=3)
    assert names() == set()
    push(healthy, sent_at=time.time(), count=1)
    (alert,) = alerts.current_alerts()
    assert alert.name == "QueueBacklogHigh" and alert.value == 4 and QUEUE in alert.message


@pytest.mark.django_db
def test_old_message_fires(healthy, settings):
    settings.TASKCENTER_ALERT_QUEUE_AGE = 300
    push(healthy, sent_at=time.time() - 200)
    assert names() == set()
    push(healthy, sent_at=time.time() - 400, step=9)  # the oldest of every priority list counts
    (alert,) = alerts.current_alerts()
    assert alert.name == "QueueMessagesTooOld" and alert.value >= 400 and alert.threshold == 300


@pytest.mark.django_db
def test_no_worker_online_fires(healthy):
    stale = {"hostname": "w1@test", "online": True, "last_heartbeat": time.time() - 120, "freq": 2}
    healthy.hset("taskcenter:monitor:workers", "w1@test", json.dumps(stale))
    (alert,) = alerts.current_alerts()
    assert alert.name == "NoWorkersOnline" and alert.severity == "critical"


@pytest.mark.django_db
def test_beat_not_ticking_fires(healthy, settings):
    settings.TASKCENTER_ALERT_BEAT_STALE = 60
    set_beat(healthy, age=30)
    assert names() == set()
    set_beat(healthy, age=90)
    (alert,) = alerts.current_alerts()
    assert alert.name == "BeatNotTicking" and alert.value >= 90 and alert.threshold == 60
    healthy.delete("taskcenter:beat:leader", "taskcenter:beat:last_tick")
    assert names() == {"BeatNotTicking"}


@pytest.mark.django_db
def test_stuck_runs_fire_at_the_threshold(healthy, settings):
    settings.TASKCENTER_ALERT_STUCK_RUNS = 2
    for i in range(2):
        result = TaskResult.objects.create(
            task_id=f"stuck-{i}", task_name="examples.add", status="STARTED", worker="gone@x"
        )
        Run.objects.create(task_result=result, task_name="examples.add", queue="default")
        fired = names()
        assert fired == ({"StuckRuns"} if i == 1 else set()), i
    (alert,) = alerts.current_alerts()
    assert alert.value == 2 and alert.threshold == 2


@pytest.mark.django_db
def test_monitor_down_fires(healthy):
    healthy.set("taskcenter:monitor:tick", repr(time.time() - 120))
    (alert,) = alerts.current_alerts()
    assert alert.name == "MonitorDown"


@pytest.mark.django_db
def test_a_stopped_broker_fires_broker_workers_beat_and_monitor_alerts(tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        fired = alerts.current_alerts()
    assert {a.name for a in fired} == {"BrokerUnreachable", "NoWorkersOnline", "BeatNotTicking", "MonitorDown"}
    assert [a.severity for a in fired][:3] == ["critical"] * 3, "most severe first"


def test_each_condition_alone_fires_exactly_its_alert():
    beat = alerts.BeatSummary(True, True, {"id": "b"}, time.time(), 1.0, 0, "")
    queues = alerts.LiveQueues([alerts.LiveQueue("default", 0, None)])
    base = alerts.Snapshot(
        failed=0, finished=10, failure_rate=0.0, queues=queues, workers_online=1, beat=beat, stuck_runs=0,
        monitor_alive=True,
    )  # fmt: skip
    from dataclasses import replace

    assert alerts.evaluate(base) == []
    cases = {
        "TaskFailureRateHigh": replace(base, failed=5, failure_rate=0.5),
        "QueueBacklogHigh": replace(base, queues=alerts.LiveQueues([alerts.LiveQueue("default", 5000, 1.0)])),
        "QueueMessagesTooOld": replace(base, queues=alerts.LiveQueues([alerts.LiveQueue("default", 1, 3600.0)])),
        "NoWorkersOnline": replace(base, workers_online=0),
        "BeatNotTicking": replace(base, beat=replace(beat, last_tick_age=3600.0)),
        "StuckRuns": replace(base, stuck_runs=1),
        "MonitorDown": replace(base, monitor_alive=False),
        "BrokerUnreachable": replace(base, queues=alerts.LiveQueues([], problem="down")),
    }
    for name, state in cases.items():
        assert [a.name for a in alerts.evaluate(state)] == [name]


@pytest.mark.django_db
def test_alerts_page_lists_alerts_and_thresholds(staff_client, healthy, settings):
    settings.TASKCENTER_ALERT_QUEUE_DEPTH = 1234
    minute(succeeded=1, failed=9)
    response = staff_client.get(reverse("taskcenter:alerts"))
    assert response.status_code == 200
    html = response.content.decode()
    assert "TaskFailureRateHigh" in html and 'class="alert-TaskFailureRateHigh"' in html
    for setting in (
        "TASKCENTER_ALERT_FAILURE_RATE",
        "TASKCENTER_ALERT_QUEUE_DEPTH",
        "TASKCENTER_ALERT_QUEUE_AGE",
        "TASKCENTER_ALERT_BEAT_STALE",
        "TASKCENTER_ALERT_STUCK_RUNS",
    ):
        assert setting in html
    assert "1234" in html


@pytest.mark.django_db
def test_alerts_page_says_all_clear_and_needs_staff(client, staff_client, healthy):
    assert 'id="all-clear"' in staff_client.get(reverse("taskcenter:alerts")).content.decode()
    client.logout()
    from django.test import Client

    assert Client().get(reverse("taskcenter:alerts")).status_code == 302
