"""Batches, workflows, the audit trail and health through the API."""

import pytest
from django.core.cache import cache

from taskcenter.models import AuditEntry, Batch, Run, RunSource, Workflow
from tests.api_support import assert_problem, make_user, token_client

pytestmark = pytest.mark.django_db

CHORD = {
    "kind": "chord",
    "steps": [{"task": "examples.add", "args": [1, 2]}, {"task": "examples.add", "args": [3, 4]}],
    "callback": {"task": "examples.sum_batch"},
}


@pytest.fixture(autouse=True)
def broker(redis_server):
    cache.clear()
    return redis_server


def test_batch_launch_and_detail(admin):
    response = admin.post(
        "/api/v1/batches/", {"task": "examples.sum_batch", "items": [1, 2, 3, 4, 5], "batch_size": 2}, format="json"
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["item_count"] == 5 and len(body["runs"]) == 3 and body["progress"]["total"] == 3
    assert admin.get(f"/api/v1/batches/{body['id']}/").json()["runs"] == body["runs"]
    assert set(Run.objects.values_list("source", flat=True)) == {RunSource.API}
    assert AuditEntry.objects.get(action="batch").detail["api_token"] == "ci"


def test_batch_refusals(admin):
    body = assert_problem(
        admin.post("/api/v1/batches/", {"task": "examples.add", "items": [1], "batch_size": 1}, format="json"), 400
    )
    assert "task" in body["errors"]
    empty = {"task": "examples.sum_batch", "items": [], "batch_size": 1}
    assert_problem(admin.post("/api/v1/batches/", empty, format="json"), 400)
    assert_problem(admin.get("/api/v1/batches/999999/"), 404)
    assert not Batch.objects.exists()


def test_workflow_launch_and_detail(admin):
    response = admin.post("/api/v1/workflows/", CHORD, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["kind"] == "chord" and [len(stage) for stage in body["stages"]] == [2, 1]
    assert admin.get(f"/api/v1/workflows/{body['id']}/").json()["progress"]["total"] == 3


def test_workflow_refusals(admin):
    bad_step = {"kind": "chain", "steps": [{"task": "examples.add", "args": [1, 2], "colour": "red"}]}
    body = assert_problem(admin.post("/api/v1/workflows/", bad_step, format="json"), 400)
    assert "unknown keys" in body["detail"]
    assert_problem(admin.post("/api/v1/workflows/", {**CHORD, "callback": None}, format="json"), 400)
    assert not Workflow.objects.exists() and not Run.objects.exists()


def test_a_view_only_token_may_not_launch_batches_or_workflows(viewer):
    assert_problem(viewer.post("/api/v1/workflows/", CHORD, format="json"), 403)
    batch = {"task": "examples.sum_batch", "items": [1], "batch_size": 1}
    assert_problem(viewer.post("/api/v1/batches/", batch, format="json"), 403)
    assert not Run.objects.exists()


def test_a_user_who_may_launch_one_task_may_not_launch_a_workflow_with_another():
    from django.contrib.auth.models import Permission

    from taskcenter import permissions

    permissions.ensure_task_permissions()
    user = make_user("adder")
    user.user_permissions.add(Permission.objects.get(codename="launch_task:examples.add"))
    assert_problem(token_client(user).post("/api/v1/workflows/", CHORD, format="json"), 403)
    assert not Run.objects.exists()


def test_audit_entries_are_readable_and_filtered(admin, viewer):
    admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1, 2]}, format="json")
    entries = viewer.get("/api/v1/audit/?action=launch").json()["results"]
    assert [(e["actor"], e["detail"]["api_token"]) for e in entries] == [("admin", "ci")]
    assert viewer.get("/api/v1/audit/?actor=nobody").json()["results"] == []
    page = viewer.get("/api/v1/audit/?page_size=1").json()
    assert len(page["results"]) == 1 and page["next"]
    assert_problem(viewer.get("/api/v1/audit/?action=explode"), 400)


def test_health_lists_each_check(viewer):
    body = viewer.get("/api/v1/health/").json()
    assert set(body["checks"]) == {"database", "broker", "workers", "beat"}
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"]
    assert body["ready"] == all(check["ok"] for check in body["checks"].values())
