"""Dead letters and recovery through the API: the services' checks, permissions and audit."""

import pytest
from django.core.cache import cache
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, DeadLetter, RecoveryAction, Run
from tests.api_support import assert_problem, make_user, token_client

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def broker(redis_server):
    cache.clear()
    return redis_server


def failed_run(task_id: str) -> Run:
    TaskResult.objects.create(task_id=task_id, task_name="examples.add", status="FAILURE", date_done=timezone.now())
    return Run.objects.create(task_result_id=task_id, task_name="examples.add", queue="high", args=[1, 2])


def letter(task_id: str = "dead-1", **fields) -> DeadLetter:
    values = {"task_id": task_id, "task_name": "examples.add", "queue": "high", "reason": "failed", "args": [1, 2]}
    values |= {"exception_type": "ValueError", "traceback": "Traceback ...", **fields}
    return DeadLetter.objects.create(**values)


def test_list_filters_and_detail(viewer):
    first = letter("a")
    letter("b", reason="expired")
    letter("c", resolution="discarded")
    ids = lambda q="": [d["task_id"] for d in viewer.get("/api/v1/deadletters/" + q).json()["results"]]  # noqa: E731
    assert ids() == ["b", "a"]
    assert ids("?reason=expired") == ["b"]
    assert ids("?status=all") == ["c", "b", "a"]
    assert ids("?status=discarded") == ["c"]
    page = viewer.get("/api/v1/deadletters/?page_size=1").json()
    assert viewer.get(page["next"]).json()["results"][0]["task_id"] == "a"
    detail = viewer.get(f"/api/v1/deadletters/{first.pk}/").json()
    assert detail["traceback"] == "Traceback ..." and detail["exception_type"] == "ValueError"
    assert_problem(viewer.get("/api/v1/deadletters/999999/"), 404)


def test_replay_with_edited_arguments_then_refuse_a_second(admin):
    failed_run("dead-1")
    dead = letter("dead-1")
    response = admin.post(f"/api/v1/deadletters/{dead.pk}/replay/", {"args": [3, 4]}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["args"] == [3, 4] and response.json()["retry_of"] == "dead-1"
    dead.refresh_from_db()
    assert dead.resolution == "replayed" and dead.replayed_as == response.json()["task_id"]
    assert_problem(admin.post(f"/api/v1/deadletters/{dead.pk}/replay/", {}, format="json"), 409)
    assert AuditEntry.objects.get(action="deadletter_replay", outcome="ok").detail["api_token"] == "ci"


def test_replay_with_bad_arguments_leaves_the_letter_open(admin):
    dead = letter()
    assert_problem(admin.post(f"/api/v1/deadletters/{dead.pk}/replay/", {"args": ["x"]}, format="json"), 400)
    dead.refresh_from_db()
    assert dead.resolution == ""


def test_discard(admin):
    dead = letter()
    assert admin.post(f"/api/v1/deadletters/{dead.pk}/discard/").json()["resolution"] == "discarded"
    assert_problem(admin.post(f"/api/v1/deadletters/{dead.pk}/discard/"), 409)


def test_recover_a_failed_run_with_retry_and_refuse_a_pending_one(admin):
    failed_run("broken")
    response = admin.post("/api/v1/runs/broken/recover/", {"strategy": "RETRY"}, format="json")
    assert response.status_code == 200, response.json()
    action = RecoveryAction.objects.get(task_id="broken")
    assert response.json()["new_task_id"] == action.new_task_id != ""
    assert Run.objects.get(task_result_id=action.new_task_id).retry_of.task_id == "broken"
    assert_problem(admin.post(f"/api/v1/runs/{action.new_task_id}/recover/", {"strategy": "SKIP"}, format="json"), 409)
    assert_problem(admin.post("/api/v1/runs/broken/recover/", {"strategy": "PRAY"}, format="json"), 400)


@pytest.mark.parametrize(
    "url,data",
    [
        ("/api/v1/deadletters/{pk}/replay/", {}),
        ("/api/v1/deadletters/{pk}/discard/", None),
        ("/api/v1/runs/dead-1/recover/", {"strategy": "RETRY"}),
    ],
)
def test_a_view_only_token_is_refused_every_dead_letter_and_recovery_action(viewer, url, data):
    failed_run("dead-1")
    dead = letter("dead-1")
    assert_problem(viewer.post(url.format(pk=dead.pk), data, format="json"), 403)
    dead.refresh_from_db()
    assert dead.resolution == "" and Run.objects.count() == 1 and not RecoveryAction.objects.exists()


def test_managing_dead_letters_still_needs_the_tasks_launch_permission():
    dead = letter()
    client = token_client(make_user("janitor", "manage_deadletters"))
    assert_problem(client.post(f"/api/v1/deadletters/{dead.pk}/replay/", {}, format="json"), 403)
    assert client.post(f"/api/v1/deadletters/{dead.pk}/discard/").status_code == 200
