"""Permissions: a view-only operator sees pages but can change nothing, anywhere."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from taskcenter import permissions
from taskcenter.models import AuditEntry, Run

pytestmark = pytest.mark.django_db

ACTION_URLS = [
    ("taskcenter:launch", ["examples.add"]),
    ("taskcenter:batch_launch", ["examples.sum_batch"]),
    ("taskcenter:workflow_launch", []),
    ("taskcenter:run_cancel", ["task-1"]),
    ("taskcenter:run_retry", ["task-1"]),
    ("taskcenter:bulk_retry", []),
    ("taskcenter:queue_pause", ["default"]),
    ("taskcenter:queue_resume", ["default"]),
    ("taskcenter:queue_purge", ["default"]),
    ("taskcenter:worker_pool", ["worker@host"]),
    ("taskcenter:worker_pool_restart", ["worker@host"]),
    ("taskcenter:worker_autoscale", ["worker@host"]),
    ("taskcenter:worker_queue", ["worker@host"]),
    ("taskcenter:worker_time_limit", ["worker@host"]),
    ("taskcenter:rate_limit", []),
    ("taskcenter:scheduled_run_now", ["task-1"]),
]
PAGES = ["taskcenter:catalogue", "taskcenter:run_list", "taskcenter:audit_list"]


@pytest.fixture
def finished_run():
    from django_celery_results.models import TaskResult

    TaskResult.objects.create(task_id="task-1", task_name="examples.add", status="SUCCESS", result="3")
    return Run.objects.create(task_result_id="task-1", task_name="examples.add", queue="high", args=[1, 2])


@pytest.mark.parametrize(("name", "args"), ACTION_URLS)
def test_view_only_user_gets_403_on_every_action_url(viewer_client, finished_run, name, args):
    url = reverse(name, args=args)
    assert viewer_client.post(url, {"args": "[1, 2]", "scope": "selected", "task_ids": ["task-1"]}).status_code == 403
    assert viewer_client.get(url).status_code in (403, 405)
    assert Run.objects.count() == 1  # nothing launched
    assert not AuditEntry.objects.filter(outcome="ok").exists()


@pytest.mark.parametrize("name", PAGES)
def test_view_only_user_sees_pages_without_action_buttons(viewer_client, finished_run, name):
    page = viewer_client.get(reverse(name)).content.decode()
    assert "Launch…" not in page and "Re-run" not in page and "Batch…" not in page


def test_view_only_user_sees_a_run_without_cancel_or_retry(viewer_client, finished_run):
    page = viewer_client.get(reverse("taskcenter:run_detail", args=["task-1"])).content.decode()
    assert "examples.add" in page
    assert "Re-run…" not in page and "Cancel…" not in page and "Terminate…" not in page


def test_operator_sees_the_action_buttons(staff_client, finished_run):
    page = staff_client.get(reverse("taskcenter:run_detail", args=["task-1"])).content.decode()
    assert "Re-run…" in page
    assert "Launch…" in staff_client.get(reverse("taskcenter:catalogue")).content.decode()


def test_staff_without_the_view_permission_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user(username="staffonly", password="pw-staffonly-1", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("taskcenter:run_list")).status_code == 403


def test_per_task_launch_permission_allows_that_task_only(client, django_user_model):
    user = django_user_model.objects.create_user(username="adder", password="pw-adder-1", is_staff=True)
    user.user_permissions.add(
        Permission.objects.get(codename="view_run"), Permission.objects.get(codename="launch_task:examples.add")
    )
    client.force_login(user)
    assert permissions.can_launch(user, "examples.add")
    assert client.get(reverse("taskcenter:launch", args=["examples.add"])).status_code == 200
    assert client.get(reverse("taskcenter:launch", args=["examples.fail"])).status_code == 403
    catalogue_page = client.get(reverse("taskcenter:catalogue")).content.decode()
    assert reverse("taskcenter:launch", args=["examples.add"]) in catalogue_page
    assert reverse("taskcenter:launch", args=["examples.fail"]) not in catalogue_page


def test_every_catalogued_task_has_a_launch_permission():
    codenames = set(Permission.objects.values_list("codename", flat=True))
    assert {"launch_task:examples.add", "launch_task:examples.fail", "launch_any_task", "control_run"} <= codenames


# --- django-celery-beat's admin ------------------------------------------------------


@pytest.fixture
def schedule():
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    return PeriodicTask.objects.create(name="tick", task="examples.add", args="[1, 2]", interval=every, enabled=True)


def test_view_only_user_cannot_run_or_toggle_periodic_tasks_from_the_admin(viewer_client, schedule):
    viewer = viewer_client.user
    viewer.user_permissions.add(Permission.objects.get(codename="view_periodictask"))
    changelist = reverse("admin:django_celery_beat_periodictask_changelist")
    page = viewer_client.get(changelist)
    assert page.status_code == 200
    assert "run_tasks" not in page.content.decode() and "disable_tasks" not in page.content.decode()
    for action in ("run_tasks", "disable_tasks", "duplicate_tasks", "delete_selected"):
        viewer_client.post(changelist, {"action": action, "_selected_action": [schedule.pk]})
    schedule.refresh_from_db()
    assert schedule.enabled
    assert PeriodicTask.objects.count() == 1
    assert not Run.objects.exists()


def test_run_now_from_the_admin_goes_through_the_launch_service(staff_client, schedule, redis_server):
    changelist = reverse("admin:django_celery_beat_periodictask_changelist")
    response = staff_client.post(changelist, {"action": "run_tasks", "_selected_action": [schedule.pk]})
    assert response.status_code == 302
    run = Run.objects.get()
    assert (run.source, run.periodic_task_name, run.args) == ("admin", "tick", [1, 2])
    assert AuditEntry.objects.filter(action="launch", task_id=run.task_id).exists()


@pytest.mark.parametrize("task_name", ["celery.backend_cleanup", "os.system", "examples.not_there"])
def test_admin_refuses_to_change_a_schedule_to_an_uncatalogued_task(staff_client, schedule, task_name):
    response = staff_client.post(
        reverse("admin:django_celery_beat_periodictask_change", args=[schedule.pk]),
        {"name": "tick", "regtask": "", "task": task_name, "interval": schedule.interval_id, "args": "[]",
         "kwargs": "{}", "enabled": "on", "headers": "{}"},
    )  # fmt: skip
    assert response.status_code == 302  # to the schedule's own form: the stock form never saves
    schedule.refresh_from_db()
    assert schedule.task == "examples.add"


def test_admin_refuses_schedule_arguments_that_do_not_fit_the_task(staff_client, schedule):
    response = staff_client.post(
        reverse("admin:django_celery_beat_periodictask_change", args=[schedule.pk]),
        {"name": "tick", "regtask": "examples.add", "task": "", "interval": schedule.interval_id, "args": "[1]",
         "kwargs": "{}", "enabled": "on", "headers": "{}"},
    )  # fmt: skip
    assert response.status_code == 302
    schedule.refresh_from_db()
    assert schedule.args == "[1, 2]"


def test_audit_page_filters_by_action_and_user(staff_client, django_user_model):
    from taskcenter.services.audit import audit_record

    other = django_user_model.objects.create_user(username="someone")
    audit_record(actor=staff_client.user, action="launch", target="examples.add", message="first-entry")
    audit_record(actor=other, action="purge", target="low", message="second-entry")
    page = staff_client.get(reverse("taskcenter:audit_list"), {"action": "purge"}).content.decode()
    assert "second-entry" in page and "first-entry" not in page
    page = staff_client.get(reverse("taskcenter:audit_list"), {"actor": "operator"}).content.decode()
    assert "first-entry" in page and "second-entry" not in page
    assert staff_client.get(reverse("taskcenter:audit_list"), {"action": "explode"}).status_code == 400


def _every_taskcenter_url(schedule_pk: int) -> list[str]:
    """Each URL of taskcenter's own pages, its parameters filled with real targets."""
    from django.urls import get_resolver

    samples = {"task_name": "examples.add", "name": "default", "hostname": "worker@host", "task_id": "task-1"}
    samples |= {"pk": schedule_pk, "batch_id": 1, "fingerprint": "0" * 40}
    urls = []
    for pattern in get_resolver("taskcenter.urls").url_patterns:
        if pattern.name in (
            "api_tokens",
            "api_token_revoke",
            "saved_filter_create",
            "saved_filter_remove",
            "preferences",
        ):
            continue  # a user's own API tokens, History filters and time zone, which any viewer manages
            # (tests/test_api_tokens.py, tests/test_history_search.py, tests/test_time_zones.py)
        params = list(pattern.pattern.converters)
        urls.append(reverse(f"taskcenter:{pattern.name}", kwargs={p: samples[p] for p in params}))
    return urls


@pytest.mark.parametrize("who", ["viewer", "no_permission", "change_schedules_only"])
def test_no_post_to_any_taskcenter_url_changes_anything_for_a_user_without_the_right(
    client, django_user_model, finished_run, schedule, who
):
    """Every URL of the app, posted to with plausible input, by users who may not act: nothing happens."""
    user = django_user_model.objects.create_user(username=who, is_staff=True)
    codenames = {
        "viewer": ["view_run"],
        "no_permission": [],
        "change_schedules_only": ["view_run", "change_periodictask"],
    }
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames[who]))
    client.force_login(user)
    before = PeriodicTask.objects.values().get()
    payload = {"args": "[1, 2]", "kwargs": "{}", "scope": "selected", "task_ids": ["task-1"], "action": "run_now",
               "ids": [schedule.pk], "confirm": "default", "n": "1", "rate": "1/s", "task": "examples.add",
               "name": "tick", "kind": "interval", "every": "1", "period": "seconds", "mode": "json",
               "spec": '{"kind": "chain", "steps": [{"task": "examples.add", "args": [1, 2]}]}', "items": "[1]",
               "batch_size": "1", "misfire": "run_once", "jitter_seconds": "0", "max_instances": "0"}  # fmt: skip
    answers = {url: client.post(url, payload).status_code for url in _every_taskcenter_url(schedule.pk)}
    accepted = {url for url, status in answers.items() if status not in (403, 404, 405)}
    # Only read-only pages (which this user may view) answer a POST, by showing the page.
    pages = {url for url in accepted if client.get(url).status_code == 200 and answers[url] == 200}
    assert accepted == pages and len(pages) < len(answers)
    assert Run.objects.count() == 1 and PeriodicTask.objects.values().get() == before
    assert not AuditEntry.objects.filter(outcome="ok").exists()
