"""Every entry point launches through one path: its true source, type checks and de-duplication.

A real Redis server takes the messages; no worker runs them (they stay PENDING).
"""

import pytest
from celery import current_app
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter import catalogue
from taskcenter.models import AuditEntry, Batch, DedupLock, Run, RunSource, Workflow
from taskcenter.services import control
from taskcenter.services.batches import batch_launch
from taskcenter.services.launch import DuplicateRun, InvalidLaunch, run_launch
from taskcenter.services.workflows import Step, workflow_launch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def broker(redis_server):
    return redis_server


@pytest.fixture
def dedup_batch_task():
    """A de-duplicated task that takes batches, in the catalogue for one test."""

    @catalogue.launchable_task(name="tests.dedup_batch", dedup=True, batch_argument="items")
    def dedup_batch(items: list[int]) -> int:
        return sum(items)

    yield "tests.dedup_batch"
    catalogue._entries.pop("tests.dedup_batch", None)


def finished(run: Run) -> Run:
    """Mark a run finished, as a worker would have reported it."""
    TaskResult.objects.create(task_id=run.task_id, task_name=run.task_name, status="SUCCESS", date_done=timezone.now())
    return Run.objects.get(pk=run.pk)


# --- The true source of each entry point -------------------------------------------------


def test_pages_launch_with_source_web(staff_client):
    launch = reverse("taskcenter:launch", args=["examples.add"])
    assert (
        staff_client.post(launch, {"mode": "json", "args": "[1, 2]", "queue": "high", "priority": "HIGH"}).status_code
        == 302
    )
    batch = reverse("taskcenter:batch_launch", args=["examples.sum_batch"])
    form = {"items": "[1, 2, 3]", "batch_size": "2", "kwargs": "{}", "queue": "default", "priority": "NORMAL"}
    assert staff_client.post(batch, form).status_code == 302
    spec = '{"kind": "group", "steps": [{"task": "examples.add", "args": [1, 2]}]}'
    assert staff_client.post(reverse("taskcenter:workflow_launch"), {"spec": spec}).status_code == 302
    assert set(Run.objects.values_list("source", flat=True)) == {RunSource.WEB}
    assert Run.objects.count() == 4


def test_re_runs_from_the_pages_have_source_web(staff_client):
    original = finished(run_launch(task_name="examples.add", args=[1, 2]))
    assert original.source == RunSource.CODE  # code that does not say otherwise
    url = reverse("taskcenter:run_retry", args=[original.task_id])
    assert staff_client.post(url, {"args": "[1, 2]", "kwargs": "{}"}).status_code == 302
    bulk = {"scope": "selected", "task_ids": [original.task_id], "confirm": "on"}
    assert staff_client.post(reverse("taskcenter:bulk_retry"), bulk).status_code == 302
    reruns = Run.objects.filter(retry_of=original)
    assert reruns.count() == 2 and set(reruns.values_list("source", flat=True)) == {RunSource.WEB}


def test_command_line_launch_has_source_cli_and_the_same_checks(capsys, django_user_model):
    from django.contrib.auth.models import Permission

    ops = django_user_model.objects.create_user(username="ops", is_staff=True)
    ops.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "launch_any_task"]))
    call_command("launch", "examples.add", "--args", "[1, 2]", "--user", "ops")
    run = Run.objects.get()
    assert capsys.readouterr().out.strip() == run.task_id
    assert run.source == RunSource.CLI and run.launched_by.username == "ops"
    assert AuditEntry.objects.filter(action="launch", task_id=run.task_id).exists()
    with pytest.raises(CommandError, match="Argument 'x' must be a whole number"):
        call_command("launch", "examples.add", "--args", '["a", 2]')
    with pytest.raises(CommandError, match="nested too deeply"):
        call_command("launch", "examples.add", "--args", "[" * 5000 + "]" * 5000)
    with pytest.raises(CommandError, match="No launchable task"):
        call_command("launch", "celery.backend_cleanup")
    assert Run.objects.count() == 1


def test_command_line_launch_as_a_user_without_the_launch_permission_sends_nothing(django_user_model):
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    with pytest.raises(CommandError, match="may not launch"):
        call_command("launch", "examples.add", "--args", "[1, 2]", "--user", "viewer")
    assert not Run.objects.exists() and not AuditEntry.objects.filter(action="launch").exists()


# --- Type checks on every path -------------------------------------------------------------


def test_workflow_steps_are_type_checked():
    with pytest.raises(InvalidLaunch) as info:
        workflow_launch(kind="chain", steps=[Step("examples.add", [1, 2]), Step("examples.add", ["x"])])
    assert "Argument 'y' must be a whole number" in str(info.value)  # step 2 gets the first argument from step 1
    assert not Run.objects.exists() and not Workflow.objects.exists()


def test_batch_items_are_type_checked_and_reported_on_the_items():
    with pytest.raises(InvalidLaunch) as info:
        batch_launch(task_name="examples.sum_batch", items=[1, "x", 3], batch_size=2)
    assert "item 1 must be a whole number" in " ".join(info.value.errors["items"])
    assert not Run.objects.exists() and not Batch.objects.exists()


def test_edited_re_run_arguments_are_type_checked(staff_client):
    original = finished(run_launch(task_name="examples.add", args=[1, 2]))
    with pytest.raises(InvalidLaunch, match="Argument 'x' must be a whole number"):
        control.run_retry(run=original, actor=None, args=["a", 2])
    response = staff_client.post(
        reverse("taskcenter:run_retry", args=[original.task_id]), {"args": '["a", 2]', "kwargs": "{}"}
    )
    assert response.status_code == 400 and "must be a whole number" in response.content.decode()
    deep = staff_client.post(
        reverse("taskcenter:run_retry", args=[original.task_id]), {"args": "[" * 900 + "]" * 900, "kwargs": "{}"}
    )
    assert deep.status_code == 400 and "nested too deeply" in deep.content.decode()
    assert not Run.objects.filter(retry_of=original).exists()


# --- De-duplication on every path -----------------------------------------------------------


def test_batches_are_de_duplicated(dedup_batch_task):
    batch_launch(task_name=dedup_batch_task, items=[1, 2, 3, 4], batch_size=2)
    assert DedupLock.objects.count() == 2
    with pytest.raises(DuplicateRun):
        batch_launch(task_name=dedup_batch_task, items=[3, 4], batch_size=2)
    assert Batch.objects.count() == 1 and Run.objects.count() == 2  # the refused batch left nothing
    assert AuditEntry.objects.filter(action="batch", outcome="refused").exists()


def test_a_batch_whose_own_slices_share_a_key_is_refused(dedup_batch_task):
    with pytest.raises(InvalidLaunch, match="same de-duplication key"):
        batch_launch(task_name=dedup_batch_task, items=[1, 1], batch_size=1)
    assert not Run.objects.exists() and not DedupLock.objects.exists()


def test_workflows_are_de_duplicated_against_single_launches():
    workflow_launch(kind="group", steps=[Step("examples.sync_account", kwargs={"account_id": 7})])
    with pytest.raises(DuplicateRun):
        run_launch(task_name="examples.sync_account", kwargs={"account_id": 7})
    with pytest.raises(DuplicateRun):
        workflow_launch(kind="group", steps=[Step("examples.sync_account", [7]), Step("examples.add", [1, 2])])
    assert Workflow.objects.count() == 1 and Run.objects.count() == 1
    run_launch(task_name="examples.sync_account", kwargs={"account_id": 8})  # another account is free


# --- The "already recorded" marker cannot be forged ------------------------------------------


def test_a_message_with_the_old_recorded_header_still_gets_its_run():
    result = current_app.tasks["examples.add"].apply_async((1, 2), headers={"taskcenter_recorded": True})
    run = Run.objects.get(task_result_id=result.id)
    assert run.source == RunSource.CODE and run.args == [1, 2]


def test_only_the_launch_service_of_this_process_marks_a_run_as_recorded():
    from celery import signals

    from taskcenter.services.recording import recorded_by_launch

    seen = {}

    def observe(headers=None, **_):
        seen[headers["id"]] = recorded_by_launch(headers["id"])

    signals.before_task_publish.connect(observe, dispatch_uid="tests.observe_marker")
    try:
        run = run_launch(task_name="examples.add", args=[1, 2], source=RunSource.ADMIN)
        other = current_app.tasks["examples.add"].apply_async((3, 4), headers={"taskcenter_recorded": True})
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="tests.observe_marker")
    assert seen == {run.task_id: True, other.id: False}
    assert not recorded_by_launch(run.task_id)  # the mark ends with the publish
    assert Run.objects.get(task_result_id=run.task_id).source == RunSource.ADMIN


def test_a_batch_refused_by_a_stopped_broker_leaves_no_run_batch_or_key(dedup_batch_task, tmp_path, redis_server):
    from taskcenter.services.launch import BrokerUnavailable
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server), pytest.raises(BrokerUnavailable):
        batch_launch(task_name=dedup_batch_task, items=[1, 2, 3], batch_size=2)
    assert not Run.objects.exists() and not Batch.objects.exists() and not DedupLock.objects.exists()
    assert AuditEntry.objects.filter(action="batch", outcome="error").exists()
    batch_launch(task_name=dedup_batch_task, items=[1, 2, 3], batch_size=2)  # the keys are free again


def test_bulk_rerun_with_the_broker_stopped_reports_every_run_refused_and_sends_none(
    staff_client, tmp_path, redis_server
):
    from tests.conftest import broker_down

    for n in range(3):
        TaskResult.objects.create(task_id=f"done-{n}", task_name="examples.add", status="FAILURE")
        Run.objects.create(task_result_id=f"done-{n}", task_name="examples.add", queue="high", args=[n, 1])
    form = {"scope": "selected", "task_ids": ["done-0", "done-1", "done-2"], "confirm": "on"}
    with broker_down(tmp_path, redis_server):
        response = staff_client.post(reverse("taskcenter:bulk_retry"), form, follow=True)
    assert response.status_code == 200
    assert "Re-ran 0 run(s); 3 refused." in response.content.decode()
    assert "not reachable" in response.content.decode()
    assert Run.objects.count() == 3  # nothing half-written
    assert AuditEntry.objects.filter(action="retry", outcome="error").count() == 1  # one try, then it stopped
