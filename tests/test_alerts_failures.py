"""Alerts of failures: orphaned runs, a new failure group, one task type failing too often."""

import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.utils import timezone

from taskcenter.models import FailureGroup, TaskMinute
from taskcenter.selectors import alerts
from tests.test_alert_rules import broker, healthy  # noqa: F401 (fixtures)


def base_state() -> alerts.Snapshot:
    beat = alerts.BeatSummary(True, True, {"id": "b"}, time.time(), 1.0, 0, "")
    return alerts.Snapshot(
        failed=0, finished=10, failure_rate=0.0, queues=alerts.LiveQueues([alerts.LiveQueue("default", 0, None)]),
        workers_online=1, beat=beat, stuck_runs=0, monitor_alive=True,
    )  # fmt: skip


def minute(task_name: str, *, ago: int = 1, **counts) -> TaskMinute:
    return TaskMinute.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=ago),
        task_name=task_name,
        queue="default",
        **counts,
    )


def group(fingerprint: str, *, first_seen_ago: int, status: str = "open") -> FailureGroup:
    now = timezone.now()
    return FailureGroup.objects.create(
        fingerprint=fingerprint * 40,
        task_name="examples.fail",
        exception_type="ExampleFailure",
        location="tasks.py:fail",
        count=2,
        first_seen=now - timedelta(minutes=first_seen_ago),
        last_seen=now,
        status=status,
    )


def test_orphaned_runs_fire_stuck_runs_with_a_clear_message():
    (alert,) = alerts.evaluate(replace(base_state(), stuck_runs=2))
    assert alert.name == "StuckRuns" and "orphaned: STARTED on a worker that is gone" in alert.message
    assert alerts.evaluate(replace(base_state(), stuck_runs=0)) == []


@pytest.mark.django_db
def test_one_task_type_failing_above_the_rate_fires_for_it_alone(settings):
    settings.TASKCENTER_ALERT_FAILURE_RATE = 0.1
    settings.TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS = 20
    minute("billing.send", succeeded=10, failed=5)
    minute("billing.send", ago=2, succeeded=5, failed=5)  # 10 of 25 over 5 minutes
    minute("mail.send", succeeded=400, failed=1)  # healthy, and keeps the overall rate low
    minute("reports.build", failed=5)  # fails every time but ran only 5 times: not a rate
    minute("billing.send", ago=20, failed=500)  # too old to count
    state = replace(base_state(), task_failures=alerts._task_failures())
    fired = alerts.evaluate(state)
    assert [(a.name, a.value) for a in fired] == [("TaskTypeFailureRateHigh", 0.4)]
    assert "10 of 25 runs of billing.send" in fired[0].message

    settings.TASKCENTER_ALERT_FAILURE_RATE = 0.5
    assert alerts.evaluate(replace(base_state(), task_failures=alerts._task_failures())) == []
    settings.TASKCENTER_ALERT_FAILURE_RATE = 0.1
    settings.TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS = 5
    names = {t.task_name for t in alerts._task_failures()}
    assert names == {"billing.send", "reports.build", "mail.send"}


@pytest.mark.django_db
def test_a_failure_group_first_seen_recently_fires_and_an_older_or_ignored_one_does_not(settings):
    settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES = 15
    group("a", first_seen_ago=5)
    group("b", first_seen_ago=60)  # seen again now, but not new
    group("c", first_seen_ago=1, status="ignored")
    fired = alerts.evaluate(replace(base_state(), new_failure_groups=alerts._new_failure_groups()))
    assert [a.name for a in fired] == ["NewFailureGroup"]
    assert "ExampleFailure in examples.fail at tasks.py:fail" in fired[0].message
    assert fired[0].value == 2 and fired[0].threshold == 15

    settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES = 2
    assert alerts._new_failure_groups() == []


@pytest.mark.django_db
@pytest.mark.usefixtures("healthy")
def test_the_new_alerts_reach_the_alerts_page(staff_client):
    from django.urls import reverse

    group("d", first_seen_ago=1)
    minute("billing.send", succeeded=10, failed=30)
    html = staff_client.get(reverse("taskcenter:alerts")).content.decode()
    assert 'class="alert-NewFailureGroup"' in html and 'class="alert-TaskTypeFailureRateHigh"' in html
    assert "TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES" in html


@pytest.mark.django_db
def test_metrics_count_the_same_new_failure_groups_per_task_as_the_alerts_page(client, settings, redis_server):
    """taskcenter_failure_groups_new feeds the Prometheus rule NewFailureGroup (deploy/prometheus/alerts.yml)."""
    from prometheus_client.parser import text_string_to_metric_families

    settings.TASKCENTER_METRICS_TOKEN = "groups-token"
    settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES = 15
    group("a", first_seen_ago=5)
    group("e", first_seen_ago=3)
    group("b", first_seen_ago=60)  # seen again now, but not new
    group("c", first_seen_ago=1, status="ignored")
    other = group("f", first_seen_ago=2)
    FailureGroup.objects.filter(pk=other.pk).update(task_name="examples.add")

    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer groups-token").content.decode()
    samples = {
        sample.labels["task"]: sample.value
        for family in text_string_to_metric_families(body)
        if family.name == "taskcenter_failure_groups_new"
        for sample in family.samples
    }
    assert samples == {"examples.fail": 2, "examples.add": 1}
    assert sum(samples.values()) == len(alerts._new_failure_groups())

    settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES = 1
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer groups-token").content.decode()
    assert "taskcenter_failure_groups_new{" not in body


@pytest.mark.django_db
def test_counting_new_failure_groups_reads_through_the_last_seen_index_with_a_limit():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from taskcenter.selectors.failures import new_failure_groups_per_task

    group("a", first_seen_ago=5)
    with CaptureQueriesContext(connection) as queries:
        assert new_failure_groups_per_task(limit=10) == {"examples.fail": 1}
    (query,) = queries.captured_queries
    assert query["sql"].endswith("LIMIT 10")
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            plan = " ".join(row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {query['sql']}").fetchall())
        assert "USING INDEX failuregroup_last_seen" in plan, plan
