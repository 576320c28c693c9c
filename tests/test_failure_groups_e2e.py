"""Failure groups end to end: a real worker fails tasks, the real monitor groups them, an operator re-runs a group."""

import pytest
from celery import current_app
from django.urls import reverse

from taskcenter.models import AuditEntry, FailureGroup, Run
from taskcenter.services.launch import run_launch
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def group_with(task_name: str, count: int) -> FailureGroup | None:
    return FailureGroup.objects.filter(task_name=task_name, count=count).first()


def test_three_failures_of_one_error_make_one_group_and_another_exception_a_second(
    celery_worker, celery_monitor, staff_client
):
    runs = [run_launch(task_name="examples.fail", kwargs={"message": f"order {i} at 0x7f{i:04x}"}) for i in range(3)]
    group = wait_for(lambda: group_with("examples.fail", 3), timeout=60, message="a group of 3 failures")
    assert group.exception_type.endswith("ExampleFailure")
    assert group.location.endswith("examples/tasks.py:fail > examples/tasks.py:_check_input")
    assert "ExampleFailure" in group.sample_traceback
    assert set(Run.objects.filter(failure_fingerprint=group.fingerprint)) == set(runs)

    page = staff_client.get(reverse("taskcenter:failure_detail", args=[group.fingerprint]))
    assert page.status_code == 200
    assert {run.task_id for run in page.context["page"].runs} == {run.task_id for run in runs}

    # Another exception, from another client (sent by name; the monitor writes its run from the worker's events).
    current_app.send_task("examples.add", args=["a", 1], queue="high")
    other = wait_for(lambda: group_with("examples.add", 1), timeout=60, message="a second group")
    assert other.exception_type == "TypeError"
    assert FailureGroup.objects.count() == 2
    listing = staff_client.get(reverse("taskcenter:failure_list")).content.decode()
    assert "examples.add" in listing and "examples.fail" in listing


def test_a_group_retry_confirms_the_count_then_reruns_each_failed_run(celery_worker, celery_monitor, staff_client):
    runs = [run_launch(task_name="examples.fail", kwargs={"message": f"m{i}"}) for i in range(3)]
    group = wait_for(lambda: group_with("examples.fail", 3), timeout=60, message="a group of 3 failures")
    url = reverse("taskcenter:failure_retry", args=[group.fingerprint])

    confirm = staff_client.post(url)
    assert confirm.status_code == 200
    assert "Re-run 3 failed runs" in confirm.content.decode()
    assert not Run.objects.filter(retry_of__isnull=False).exists()  # nothing before confirming

    done = staff_client.post(url, {"confirm": "on"})
    assert done.status_code == 302
    reruns = Run.objects.filter(retry_of__isnull=False)
    assert sorted(reruns.values_list("retry_of_id", flat=True)) == sorted(run.id for run in runs)
    entry = AuditEntry.objects.get(action=AuditEntry.Action.FAILURES_RETRY)
    assert entry.actor == staff_client.user and entry.detail["launched"] == 3
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RETRY).count() == 3

    # The re-runs fail the same way and join the group; the originals are not offered again.
    wait_for(lambda: group_with("examples.fail", 6), timeout=60, message="the re-runs to join the group")
    again = staff_client.post(url)
    assert "Re-run 3 failed runs" in again.content.decode()
    assert {run.task_id for run in again.context["runs"]} == set(reruns.values_list("task_result_id", flat=True))
