"""The admin reaches schedules, results and runs."""

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name",
    [
        "admin:django_celery_beat_periodictask_changelist",
        "admin:django_celery_results_taskresult_changelist",
        "admin:taskcenter_run_changelist",
    ],
)
def test_admin_pages_open(staff_client, name):
    assert staff_client.get(reverse(name), follow=True).status_code == 200  # results: redirected to History


def test_navigation_links_pages_and_admin(staff_client):
    page = staff_client.get(reverse("taskcenter:catalogue")).content.decode()
    for name in ("taskcenter:catalogue", "taskcenter:run_list", "admin:index"):
        assert f'href="{reverse(name)}"' in page


def test_run_admin_finds_a_pending_run_by_task_id(staff_client):
    Run.objects.create(task_result_id="abc-123", task_name="examples.add", queue="high")
    response = staff_client.get(reverse("admin:taskcenter_run_changelist"), {"q": "abc-123"})
    assert response.status_code == 200
    assert "abc-123" in response.content.decode()


CHANGELIST = "admin:django_celery_beat_periodictask_changelist"


@pytest.fixture
def schedules():
    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.MINUTES)
    return [
        PeriodicTask.objects.create(name=name, task="examples.add", kwargs='{"x": 1, "y": 2}', interval=every)
        for name in ("first", "second")
    ]


def test_admin_add_opens_the_schedule_form_that_takes_the_schedule_inline(staff_client):
    add = reverse("admin:django_celery_beat_periodictask_add")
    assert staff_client.get(add)["Location"] == reverse("taskcenter:schedule_list") + "#new-schedule"
    response = staff_client.get(add, {"task": "examples.add"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("taskcenter:schedule_new") + "?task=examples.add"
    page = response.content.decode()
    assert 'name="cron"' in page and 'name="every"' in page and 'name="clocked_time"' in page
    # A task outside the catalogue gets no form.
    assert staff_client.get(add, {"task": "os.system"})["Location"].startswith(reverse("taskcenter:schedule_list"))


def test_admin_change_of_a_catalogued_schedule_opens_the_inline_form(staff_client, schedules):
    change = reverse("admin:django_celery_beat_periodictask_change", args=[schedules[0].pk])
    assert staff_client.get(change)["Location"] == reverse("taskcenter:schedule_edit", args=[schedules[0].pk])


def test_admin_change_for_a_view_only_user_opens_the_schedule_page(viewer_client, schedules):
    change = reverse("admin:django_celery_beat_periodictask_change", args=[schedules[0].pk])
    viewer_client.user.user_permissions.add(Permission.objects.get(codename="view_periodictask"))
    assert viewer_client.get(change)["Location"] == reverse("taskcenter:schedule_detail", args=[schedules[0].pk])


def test_admin_shows_a_schedule_outside_the_catalogue_on_its_page_not_in_the_stock_form(staff_client):
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    cleanup = PeriodicTask.objects.create(name="cleanup", task="celery.backend_cleanup", interval=every)
    response = staff_client.get(reverse("admin:django_celery_beat_periodictask_change", args=[cleanup.pk]))
    assert response["Location"] == reverse("taskcenter:schedule_detail", args=[cleanup.pk])
    assert "celery.backend_cleanup" in staff_client.get(response["Location"]).content.decode()


def test_admin_bulk_actions_go_through_the_schedule_service_audited_and_tell_beat(staff_client, schedules):
    ids = [task.pk for task in schedules]
    changed_before = PeriodicTasks.last_change()

    staff_client.post(reverse(CHANGELIST), {"action": "disable_tasks", "_selected_action": ids})
    assert not PeriodicTask.objects.filter(pk__in=ids, enabled=True).exists()
    assert PeriodicTasks.last_change() != changed_before
    staff_client.post(reverse(CHANGELIST), {"action": "enable_tasks", "_selected_action": ids})
    assert PeriodicTask.objects.filter(pk__in=ids, enabled=True).count() == 2
    staff_client.post(reverse(CHANGELIST), {"action": "duplicate_tasks", "_selected_action": ids[:1]})
    copy = PeriodicTask.objects.get(name="first (copy)")
    assert not copy.enabled and copy.kwargs == schedules[0].kwargs

    audited = list(AuditEntry.objects.filter(actor=staff_client.user).values_list("action", "target"))
    assert audited.count(("schedule_disable", "first")) == 1 and ("schedule_enable", "second") in audited
    assert ("schedule_duplicate", "first") in audited


def test_admin_actions_are_refused_for_tasks_the_user_may_not_launch(client, django_user_model, schedules):
    user = django_user_model.objects.create_user(username="scheduler", password="pw-sched-1", is_staff=True)
    for codename in ("view_run", "view_periodictask", "change_periodictask"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)

    response = client.post(reverse(CHANGELIST), {"action": "disable_tasks", "_selected_action": [schedules[0].pk]})
    assert response.status_code == 302
    assert PeriodicTask.objects.get(pk=schedules[0].pk).enabled
    assert not AuditEntry.objects.exists()


def test_admin_list_shows_runs_and_failures_of_the_last_seven_days(staff_client, schedules):
    for i, status in enumerate(["SUCCESS", "FAILURE", "FAILURE"]):
        result = TaskResult.objects.create(task_id=f"run-{i}", task_name="examples.add", status=status)
        Run.objects.create(task_result_id=result.task_id, task_name="examples.add", periodic_task_name="first")
    page = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert "Runs 7 d" in page and "Failures 7 d" in page
    assert '<td class="field-runs_7d">3</td><td class="field-failures_7d">2</td>' in page


def test_admin_delete_is_audited(staff_client, schedules):
    staff_client.post(
        reverse(CHANGELIST), {"action": "delete_selected", "_selected_action": [schedules[0].pk], "post": "yes"}
    )
    assert not PeriodicTask.objects.filter(name="first").exists()
    assert AuditEntry.objects.filter(action="schedule_delete", target="first", actor=staff_client.user).exists()


def test_admin_next_run_is_in_the_schedules_own_time_zone(staff_client):
    from django_celery_beat.models import CrontabSchedule

    cron = CrontabSchedule.objects.create(minute="0", hour="2", timezone="Europe/Berlin")
    PeriodicTask.objects.create(name="berlin nightly", task="examples.add", crontab=cron)
    page = staff_client.get(reverse(CHANGELIST)).content.decode()
    # Berlin's 02:00 with its offset (winter or summer), not the site's Asia/Shanghai 08:00 or 09:00.
    assert " 02:00:00 UTC+01:00" in page or " 02:00:00 UTC+02:00" in page


# --- No back door: the admin never writes a periodic task itself ---------------------------

STOCK_FORM = {
    "name": "first",
    "regtask": "",
    "task": "celery.map",
    "interval": "",
    "args": '[{"task": "examples.fail", "args": [], "kwargs": {}}, [[1]]]',
    "kwargs": "{}",
    "enabled": "on",
    "headers": '{"task": "celery.map", "id": "someone-elses-run"}',
    "exchange": "evil",
    "routing_key": "evil",
    "queue": "low",
    "priority": "0",
}


@pytest.fixture
def change_only_client(client, django_user_model):
    """A staff user who may change periodic tasks but launch nothing."""
    user = django_user_model.objects.create_user(username="changer", password="pw-changer-1", is_staff=True)
    for codename in ("view_run", "view_periodictask", "change_periodictask", "add_periodictask"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    client.user = user
    return client


def _unchanged(task: PeriodicTask) -> bool:
    fresh = PeriodicTask.objects.get(pk=task.pk)
    fields = ("name", "task", "args", "kwargs", "headers", "exchange", "routing_key", "queue", "priority", "enabled")
    return all(getattr(fresh, field) == getattr(task, field) for field in fields)


@pytest.mark.parametrize("user", ["change_only_client", "staff_client"])
def test_posting_the_stock_form_to_the_admin_change_url_writes_nothing(request, user, schedules):
    client = request.getfixturevalue(user)
    task = schedules[0]
    change = reverse("admin:django_celery_beat_periodictask_change", args=[task.pk])
    response = client.post(change, {**STOCK_FORM, "interval": task.interval_id})
    assert response.status_code in (302, 403)
    assert response.status_code == 403 or "/admin/" not in response["Location"]
    assert _unchanged(task)
    assert not AuditEntry.objects.exists() and not Run.objects.exists()


def test_posting_the_stock_form_to_the_admin_add_url_creates_nothing(change_only_client, schedules):
    every = schedules[0].interval_id
    response = change_only_client.post(
        reverse("admin:django_celery_beat_periodictask_add"), {**STOCK_FORM, "name": "new", "interval": every}
    )
    assert response.status_code in (302, 403)
    assert PeriodicTask.objects.count() == 2 and not AuditEntry.objects.exists()


def test_a_change_only_user_cannot_change_a_schedule_on_its_page_either(change_only_client, schedules):
    task = schedules[0]
    edit = reverse("taskcenter:schedule_edit", args=[task.pk])
    response = change_only_client.post(edit, {"task": "examples.add", "name": "first", "kind": "interval",
                                              "every": "1", "period": "seconds", "mode": "json", "args": "[]",
                                              "kwargs": '{"x": 9, "y": 9}', "misfire": "run_once",
                                              "jitter_seconds": "0", "max_instances": "0"})  # fmt: skip
    assert response.status_code == 403
    assert _unchanged(task) and not AuditEntry.objects.exists()


def test_admin_actions_and_delete_refuse_a_change_only_user(change_only_client, schedules):
    task = schedules[0]
    for action in ("disable_tasks", "duplicate_tasks", "run_tasks", "delete_selected"):
        change_only_client.post(reverse(CHANGELIST), {"action": action, "_selected_action": [task.pk], "post": "yes"})
    delete = reverse("admin:django_celery_beat_periodictask_delete", args=[task.pk])
    assert change_only_client.post(delete, {"post": "yes"}).status_code == 403
    assert _unchanged(task) and PeriodicTask.objects.count() == 2
    assert not AuditEntry.objects.exists() and not Run.objects.exists()


def test_admin_urls_with_ids_beyond_the_database_range_answer_without_error(staff_client):
    huge = "9" * 30
    for name in ("change", "delete", "history"):
        response = staff_client.get(reverse(f"admin:django_celery_beat_periodictask_{name}", args=[huge]))
        assert response.status_code in (302, 404)


def test_admin_list_shows_a_schedule_in_error_and_its_last_run_from_the_runs(staff_client, schedules):
    from taskcenter.services.schedules import schedule_mark_error

    schedule_mark_error(name="first", error="could not be loaded: ValueError: bad crontab")
    Run.objects.create(task_result_id="r-1", task_name="examples.add", periodic_task_name="second")
    page = staff_client.get(reverse(CHANGELIST)).content.decode()
    assert "in error" in page and "bad crontab" in page
    assert page.count("never") == 1  # "first" never ran; "second" has a run (beat never set last_run_at)


def test_timing_rows_and_results_cannot_be_changed_or_deleted_in_the_admin(staff_client, schedules):
    """Deleting a crontab row would delete every schedule using it, with no audit: view only."""
    from django_celery_beat.models import CrontabSchedule
    from django_celery_results.models import TaskResult

    crontab = CrontabSchedule.objects.create(minute="5", timezone="UTC")
    PeriodicTask.objects.filter(pk=schedules[0].pk).update(interval=None, crontab=crontab)
    result = TaskResult.objects.create(task_id="r-1", task_name="examples.add", status="SUCCESS")
    for name, obj in (("django_celery_beat_crontabschedule", crontab), ("django_celery_results_taskresult", result)):
        assert staff_client.get(reverse(f"admin:{name}_change", args=[obj.pk])).status_code == 200  # view
        assert staff_client.post(reverse(f"admin:{name}_change", args=[obj.pk]), {"minute": "7"}).status_code == 403
        assert staff_client.post(reverse(f"admin:{name}_delete", args=[obj.pk]), {"post": "yes"}).status_code == 403
        assert staff_client.get(reverse(f"admin:{name}_add")).status_code == 403
    bulk = {"action": "delete_selected", "_selected_action": [crontab.pk], "post": "yes"}
    staff_client.post(reverse("admin:django_celery_beat_crontabschedule_changelist"), bulk)
    assert CrontabSchedule.objects.get(pk=crontab.pk).minute == "5"
    assert PeriodicTask.objects.filter(pk=schedules[0].pk).exists() and TaskResult.objects.filter(pk=result.pk).exists()
