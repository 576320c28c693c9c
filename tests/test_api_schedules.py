"""The schedules resource of the API: the schedule service's checks, permissions and audit."""

import pytest
from django.core.cache import cache
from django_celery_beat.models import PeriodicTask

from taskcenter.models import AuditEntry, Run, RunSource
from tests.api_support import assert_problem, make_user, token_client

pytestmark = pytest.mark.django_db

NIGHTLY = {"name": "nightly add", "task": "examples.add", "kind": "crontab", "cron": "0 2 * * *", "args": [1, 2]}


@pytest.fixture(autouse=True)
def broker(redis_server):
    cache.clear()
    return redis_server


def test_create_list_detail_and_next_runs(admin):
    response = admin.post("/api/v1/schedules/", {**NIGHTLY, "timezone": "Europe/Berlin"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["spec"]["cron"] == "0 2 * * *" and len(body["next_runs"]) == 10
    assert body["next_runs"][0]["at"].endswith(("+01:00", "+02:00"))
    listed = admin.get("/api/v1/schedules/").json()
    assert [s["name"] for s in listed] == ["nightly add"] and listed[0]["next_run"] is not None
    assert len(admin.get(f"/api/v1/schedules/{body['id']}/next-runs/?count=3").json()) == 3
    entry = AuditEntry.objects.get(action="schedule_create")
    assert entry.detail["api_token"] == "ci"


def test_create_refuses_bad_input_with_field_errors(admin):
    body = assert_problem(admin.post("/api/v1/schedules/", {**NIGHTLY, "cron": "61 * * * *"}, format="json"), 400)
    assert "cron" in body["errors"]
    body = assert_problem(admin.post("/api/v1/schedules/", {**NIGHTLY, "args": ["x"]}, format="json"), 400)
    assert "args" in body["errors"]
    assert_problem(admin.post("/api/v1/schedules/", {**NIGHTLY, "colour": "red"}, format="json"), 400)
    assert not PeriodicTask.objects.filter(name="nightly add").exists()


def test_update_enable_disable_run_now_and_delete(admin):
    pk = admin.post("/api/v1/schedules/", NIGHTLY, format="json").json()["id"]
    changed = admin.patch(f"/api/v1/schedules/{pk}/", {"cron": "30 3 * * *"}, format="json")
    assert changed.status_code == 200 and changed.json()["spec"]["cron"] == "30 3 * * *"
    assert changed.json()["spec"]["args"] == [1, 2]
    assert admin.post(f"/api/v1/schedules/{pk}/disable/").json()["spec"]["enabled"] is False
    assert admin.get(f"/api/v1/schedules/{pk}/next-runs/").json() == []
    assert admin.post(f"/api/v1/schedules/{pk}/enable/").json()["spec"]["enabled"] is True
    run = admin.post(f"/api/v1/schedules/{pk}/run/")
    assert run.status_code == 201 and run.json()["periodic_task_name"] == "nightly add"
    assert Run.objects.get().source == RunSource.API
    assert admin.delete(f"/api/v1/schedules/{pk}/").status_code == 204
    assert_problem(admin.get(f"/api/v1/schedules/{pk}/"), 404)
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"schedule_update", "schedule_disable", "schedule_enable", "schedule_run_now", "schedule_delete"} <= actions


@pytest.mark.parametrize(
    "method,suffix,data",
    [
        ("post", "", NIGHTLY),
        ("patch", "{pk}/", {"cron": "1 1 * * *"}),
        ("delete", "{pk}/", None),
        ("post", "{pk}/enable/", None),
        ("post", "{pk}/disable/", None),
        ("post", "{pk}/run/", None),
    ],
)
def test_a_view_only_token_is_refused_every_schedule_write(admin, viewer, method, suffix, data):
    pk = admin.post("/api/v1/schedules/", {**NIGHTLY, "name": "existing"}, format="json").json()["id"]
    before = PeriodicTask.objects.values().get(pk=pk)
    url = "/api/v1/schedules/" + suffix.format(pk=pk)
    assert_problem(getattr(viewer, method)(url, data, format="json"), 403)
    assert PeriodicTask.objects.values().get(pk=pk) == before and not Run.objects.exists()
    assert viewer.get(f"/api/v1/schedules/{pk}/").status_code == 200
    assert viewer.get("/api/v1/schedules/").status_code == 200


def test_a_user_who_may_change_but_not_launch_the_task_is_refused(admin):
    from django.contrib.auth.models import Permission

    pk = admin.post("/api/v1/schedules/", NIGHTLY, format="json").json()["id"]
    user = make_user("editor")
    user.user_permissions.add(Permission.objects.get(codename="change_periodictask"))
    editor = token_client(user)
    assert_problem(editor.patch(f"/api/v1/schedules/{pk}/", {"cron": "5 5 * * *"}, format="json"), 403)
    assert AuditEntry.objects.filter(action="schedule_update").count() == 0
