"""The runs and catalogue resources of the API: same checks, permissions and audit as the pages.

A real Redis server takes the messages; no worker runs them (they stay PENDING),
except in the end-to-end test at the bottom.
"""

import time
from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, IdempotentRequest, Run, RunSource
from tests.api_support import assert_problem, make_user, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def broker(redis_server):
    cache.clear()  # rate limits
    return redis_server


def finished_run(task_id: str, *, status: str = "SUCCESS", **fields) -> Run:
    TaskResult.objects.create(task_id=task_id, task_name="examples.add", status=status, date_done=timezone.now())
    fields = {"task_name": "examples.add", "queue": "high", "args": [1, 2], **fields}
    return Run.objects.create(task_result_id=task_id, **fields)


# --- Catalogue ----------------------------------------------------------------------------


def test_catalogue_lists_tasks_with_a_json_schema_of_their_arguments(viewer):
    entries = {e["name"]: e for e in viewer.get("/api/v1/catalogue/").json()}
    add = entries["examples.add"]
    assert add["queue"] == "high" and add["priority"] == "HIGH" and add["can_launch"] is False
    kwargs = add["arguments_schema"]["properties"]["kwargs"]
    assert kwargs["properties"] == {"x": {"type": "integer"}, "y": {"type": "integer"}}
    assert kwargs["required"] == ["x", "y"]
    items = entries["examples.process_items"]["arguments_schema"]["properties"]["kwargs"]["properties"]
    assert items["items"] == {"type": "integer", "default": 10}  # ``self`` of a bound task is not an argument
    assert viewer.get("/api/v1/catalogue/examples.add/").json()["name"] == "examples.add"
    assert_problem(viewer.get("/api/v1/catalogue/celery.backend_cleanup/"), 404)


# --- Launch -------------------------------------------------------------------------------


def test_launch_records_a_pending_run_with_source_api_audited_with_the_token_name(admin):
    response = admin.post(
        "/api/v1/runs/",
        {"task": "examples.add", "args": [1, 2], "priority": "LOW", "queue": "low", "countdown": 30, "expires": 600},
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["state"] == "PENDING" and body["priority"] == "LOW" and body["queue"] == "low"
    assert body["eta"] is not None and body["expires"] is not None and body["launched_by"] == "admin"
    run = Run.objects.get(task_result_id=body["task_id"])
    assert run.source == RunSource.API
    entry = AuditEntry.objects.get(action="launch", task_id=run.task_id)
    assert entry.detail["api_token"] == "ci" and "API token 'ci'" in entry.message


def test_launch_refuses_bad_arguments_with_field_errors_and_writes_nothing(admin):
    body = assert_problem(admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1, "x"]}, format="json"), 400)
    assert "args" in body["errors"] and "whole number" in body["errors"]["args"][0]
    both = {"task": "examples.add", "args": [1, 2], "countdown": 5, "eta": "2030-01-01T00:00:00Z"}
    body = assert_problem(admin.post("/api/v1/runs/", both, format="json"), 400)
    assert "countdown" in body["errors"]
    assert not Run.objects.exists()


def test_launch_refuses_unknown_fields(admin):
    body = assert_problem(admin.post("/api/v1/runs/", {"task": "examples.add", "arg": [1, 2]}, format="json"), 400)
    assert body["errors"] == {"arg": ["Unknown field."]}
    assert not Run.objects.exists()


def test_launch_of_an_unknown_task_is_404(admin):
    assert_problem(admin.post("/api/v1/runs/", {"task": "os.system"}, format="json"), 404)


def test_duplicate_dedup_key_is_a_409_naming_the_existing_run(admin):
    first = admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1, 2], "dedup_key": "k1"}, format="json")
    assert first.status_code == 201
    body = assert_problem(
        admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1, 2], "dedup_key": "k1"}, format="json"), 409
    )
    assert body["existing_run"] == first.json()["task_id"]


def test_idempotency_key_returns_the_first_answer_without_launching_again(admin):
    payload = {"task": "examples.add", "args": [1, 2]}
    first = admin.post("/api/v1/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")
    again = admin.post("/api/v1/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")
    assert first.status_code == again.status_code == 201
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again["Idempotent-Replayed"] == "true"
    assert Run.objects.count() == 1
    other = admin.post("/api/v1/runs/", {**payload, "args": [3, 4]}, format="json", HTTP_IDEMPOTENCY_KEY="deploy-42")
    assert_problem(other, 422)
    assert admin.post("/api/v1/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="deploy-43").status_code == 201
    assert Run.objects.count() == 2


def test_idempotency_key_is_per_user_and_expires_after_a_day(admin):
    payload = {"task": "examples.add", "args": [1, 2]}
    admin.post("/api/v1/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k")
    other = token_client(make_user("other", superuser=True))
    assert other.post("/api/v1/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    IdempotentRequest.objects.update(created_at=timezone.now() - timedelta(hours=25))
    assert admin.post("/api/v1/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k").status_code == 201
    assert Run.objects.count() == 3


def test_a_refused_launch_stores_no_idempotent_answer(admin):
    bad = admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1]}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    assert_problem(bad, 400)
    assert not IdempotentRequest.objects.exists()
    good = admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1]}, format="json", HTTP_IDEMPOTENCY_KEY="r")
    assert_problem(good, 400)  # tried again, not replayed


def test_launch_with_the_broker_down_is_a_503_within_two_seconds(admin, tmp_path, redis_server):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server):
        started = time.monotonic()
        response = admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1, 2]}, format="json")
        elapsed = time.monotonic() - started
    assert_problem(response, 503)
    assert elapsed < 2, f"the request took {elapsed:.2f}s"
    assert not Run.objects.exists()


def test_task_specific_launch_permission(django_user_model):
    from django.contrib.auth.models import Permission

    from taskcenter import permissions

    permissions.ensure_task_permissions()
    user = make_user("adder")
    user.user_permissions.add(Permission.objects.get(codename="launch_task:examples.add"))
    client = token_client(user)
    assert client.post("/api/v1/runs/", {"task": "examples.add", "args": [1, 2]}, format="json").status_code == 201
    assert_problem(client.post("/api/v1/runs/", {"task": "examples.fail"}, format="json"), 403)


# --- List, count, detail -----------------------------------------------------------------


def test_list_filters_and_pages_with_cursors(viewer):
    operator = make_user("operator")
    for n in range(5):
        finished_run(f"ok-{n}", worker="w1@host", launched_by=operator if n % 2 else None)
    finished_run("bad-1", status="FAILURE", queue="low", periodic_task_name="nightly")
    TaskResult.objects.filter(task_id="bad-1").update(worker="w2@host")  # reported by the worker only
    page = viewer.get("/api/v1/runs/?page_size=2").json()
    assert [r["task_id"] for r in page["results"]] == ["bad-1", "ok-4"]
    assert page["previous"] is None
    older = viewer.get(page["next"]).json()
    assert [r["task_id"] for r in older["results"]] == ["ok-3", "ok-2"]
    newer = viewer.get(older["previous"]).json()
    assert [r["task_id"] for r in newer["results"]] == ["bad-1", "ok-4"]
    only = lambda q: [r["task_id"] for r in viewer.get("/api/v1/runs/?" + q).json()["results"]]  # noqa: E731
    assert only("state=FAILURE") == ["bad-1"]
    assert only("queue=low") == only("schedule=nightly") == ["bad-1"]
    assert only("launched_by=operator") == ["ok-3", "ok-1"]
    assert only("worker=w1@host&task=examples.add") == ["ok-4", "ok-3", "ok-2", "ok-1", "ok-0"]
    assert only("worker=w2@host") == ["bad-1"]
    assert only("created_from=2000-01-01T00:00:00Z&created_to=2001-01-01T00:00:00Z") == []
    assert_problem(viewer.get("/api/v1/runs/?state=BOGUS"), 400)


def test_count_is_bounded(viewer, settings):
    for n in range(4):
        finished_run(f"c-{n}")
    assert viewer.get("/api/v1/runs/count/").json() == {"count": 4, "capped": False}
    settings.TASKCENTER_API_COUNT_LIMIT = 3
    assert viewer.get("/api/v1/runs/count/").json() == {"count": 3, "capped": True}
    assert viewer.get("/api/v1/runs/count/?state=FAILURE").json() == {"count": 0, "capped": False}


def test_detail_shows_attempts_lineage_checkpoints_and_progress(viewer):
    from taskcenter.models import Checkpoint
    from taskcenter.progress import report_progress

    original = finished_run("orig", status="FAILURE")
    attempt = {"worker": "w1", "pid": 7, "started": "2026-01-01T00:00:00+00:00"}
    finished_run("again", retry_of=original, attempts=[attempt])
    Checkpoint.objects.create(task_id="again", root_task_id="orig", sequence=1, state={}, checksum="x")
    report_progress("again", done=3, total=4, message="nearly")
    body = viewer.get("/api/v1/runs/again/").json()
    assert body["retry_of"] == "orig" and body["attempts"][0]["worker"] == "w1"
    assert body["lineage"] == ["orig", "again"]
    assert body["checkpoints"][0]["sequence"] == 1 and body["progress"]["total"] == 4
    assert viewer.get("/api/v1/runs/orig/").json()["reruns"] == ["again"]
    assert_problem(viewer.get("/api/v1/runs/missing/"), 404)


# --- Actions ------------------------------------------------------------------------------


def test_cancel_a_pending_run_and_refuse_a_finished_one(admin):
    later = {"task": "examples.add", "args": [1, 2], "countdown": 60}
    run_id = admin.post("/api/v1/runs/", later, format="json").json()["task_id"]
    body = admin.post(f"/api/v1/runs/{run_id}/cancel/").json()
    assert body["state"] == "REVOKED"
    assert AuditEntry.objects.get(action="cancel", task_id=run_id).detail["api_token"] == "ci"
    finished_run("done")
    assert_problem(admin.post("/api/v1/runs/done/cancel/"), 409)
    assert_problem(admin.post("/api/v1/runs/done/terminate/"), 409)


def test_retry_with_edited_arguments_links_the_new_run(admin):
    finished_run("first", status="FAILURE")
    response = admin.post("/api/v1/runs/first/retry/", {"args": [5, 6]}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["retry_of"] == "first" and body["args"] == [5, 6]
    same = admin.post("/api/v1/runs/first/retry/", {}, format="json").json()
    assert same["args"] == [1, 2]
    assert_problem(admin.post("/api/v1/runs/first/retry/", {"args": ["x", 1]}, format="json"), 400)


def test_bulk_retry_counts_first_then_reruns_matching_runs(admin):
    for n in range(3):
        finished_run(f"f-{n}", status="FAILURE")
    finished_run("s-0")
    preview = admin.post("/api/v1/runs/retry/", {"state": "FAILURE"}, format="json").json()
    assert preview == {"matched": 3, "launched": [], "refused": [], "confirmed": False}
    assert Run.objects.count() == 4
    done = admin.post("/api/v1/runs/retry/", {"state": "FAILURE", "confirm": True}, format="json").json()
    assert len(done["launched"]) == 3 and done["refused"] == []
    assert Run.objects.filter(retry_of__isnull=False, source=RunSource.API).count() == 3


def test_bulk_retry_over_the_limit_is_refused(admin, settings):
    settings.TASKCENTER_BULK_RETRY_LIMIT = 1
    finished_run("a", status="FAILURE")
    finished_run("b", status="FAILURE")
    assert_problem(admin.post("/api/v1/runs/retry/", {"confirm": True}, format="json"), 400)
    assert Run.objects.count() == 2


def test_delete_a_finished_runs_record_needs_its_own_permission(admin):
    finished_run("old")
    controller = token_client(make_user("controller", "control_run", "launch_any_task"))
    assert_problem(controller.delete("/api/v1/runs/old/"), 403)
    assert admin.delete("/api/v1/runs/old/").status_code == 204
    assert not Run.objects.filter(task_result_id="old").exists()
    assert not TaskResult.objects.filter(task_id="old").exists()
    assert AuditEntry.objects.get(action="run_delete").detail["api_token"] == "ci"
    pending = admin.post("/api/v1/runs/", {"task": "examples.add", "args": [1, 2]}, format="json").json()["task_id"]
    assert_problem(admin.delete(f"/api/v1/runs/{pending}/"), 409)


# --- Permissions on every write ------------------------------------------------------------

WRITES = [
    ("post", "/api/v1/runs/", {"task": "examples.add", "args": [1, 2]}),
    ("post", "/api/v1/runs/done/cancel/", None),
    ("post", "/api/v1/runs/done/terminate/", None),
    ("post", "/api/v1/runs/done/retry/", {}),
    ("post", "/api/v1/runs/retry/", {"confirm": True}),
    ("delete", "/api/v1/runs/done/", None),
]
READS = [
    "/api/v1/catalogue/",
    "/api/v1/catalogue/examples.add/",
    "/api/v1/runs/",
    "/api/v1/runs/count/",
    "/api/v1/runs/done/",
]


@pytest.mark.parametrize("method,url,data", WRITES)
def test_a_view_only_token_is_refused_every_write(viewer, method, url, data):
    finished_run("done", status="FAILURE")
    response = getattr(viewer, method)(url, data, format="json")
    assert_problem(response, 403)
    assert Run.objects.count() == 1
    assert not AuditEntry.objects.filter(outcome="ok").exclude(action="token_create").exists()


@pytest.mark.parametrize("method,url,data", WRITES)
def test_anonymous_is_refused_every_write_with_401(client, method, url, data):
    from rest_framework.test import APIClient

    finished_run("done", status="FAILURE")
    assert_problem(getattr(APIClient(), method)(url, data, format="json"), 401)
    assert Run.objects.count() == 1


@pytest.mark.parametrize("url", READS)
def test_a_view_only_token_reads_everything(viewer, url):
    finished_run("done")
    assert viewer.get(url).status_code == 200


# --- End to end ---------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_launch_through_the_api_runs_on_a_real_worker(celery_worker):
    from tests.conftest import wait_for

    client = token_client(make_user("e2e", superuser=True))
    launch = {"task": "examples.add", "kwargs": {"x": 2, "y": 3}}
    task_id = client.post("/api/v1/runs/", launch, format="json").json()["task_id"]
    body = wait_for(
        lambda: (b := client.get(f"/api/v1/runs/{task_id}/").json())["state"] == "SUCCESS" and b,
        timeout=60, message="the run to succeed",
    )  # fmt: skip
    assert body["result"] == "5" and body["worker"] and body["started_at"] and body["finished_at"]


def test_a_page_of_runs_costs_the_same_queries_whatever_its_size(viewer, django_assert_max_num_queries):
    original = finished_run("orig-0")
    for n in range(30):
        finished_run(f"rerun-{n}", retry_of=original, launched_by=viewer.user)
    viewer.get("/api/v1/runs/?page_size=2")  # warm up: token lookup, permissions cache
    with django_assert_max_num_queries(6):
        body = viewer.get("/api/v1/runs/?page_size=25").json()
    assert len(body["results"]) == 25 and body["results"][0]["retry_of"] == "orig-0"


@pytest.mark.django_db(transaction=True)
def test_terminate_a_started_run_on_a_real_worker(celery_worker):
    from tests.conftest import wait_for_state

    client = token_client(make_user("stopper", superuser=True), name="stopper")
    long = {"task": "examples.process_items", "kwargs": {"items": 60, "seconds_per_item": 0.5}, "queue": "default"}
    task_id = client.post("/api/v1/runs/", long, format="json").json()["task_id"]
    wait_for_state(task_id, "STARTED", timeout=60)
    assert_problem(client.post(f"/api/v1/runs/{task_id}/cancel/"), 409)  # started: terminate, not cancel
    response = client.post(f"/api/v1/runs/{task_id}/terminate/")
    assert response.status_code == 200, response.json()
    assert wait_for_state(task_id, "REVOKED", "SUCCESS", timeout=30).status == "REVOKED"
    entry = AuditEntry.objects.get(action="terminate", task_id=task_id, outcome="ok")
    assert entry.detail["api_token"] == "stopper"
