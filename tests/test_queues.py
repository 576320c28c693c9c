"""Queues page and actions against a real Redis server and a real Celery worker.

The session worker is shared with other tests: every test that pauses a queue
resumes it through the page at the end (the ``paused_queue`` fixture).
"""

import time
from contextlib import contextmanager

import pytest
from django.urls import reverse
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, QueueState, Run
from taskcenter.services.launch import run_launch
from tests.conftest import broker_down, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUEUE = "low"
#: kombu's separator between a queue name and its priority step in Redis list names.
PRIORITY_SEPARATOR = "\x06\x16"
STEP_OF = {"URGENT": 0, "HIGH": 3, "NORMAL": 6, "LOW": 9}


def redis_list(queue: str, priority: str) -> str:
    step = STEP_OF[priority]
    return f"{queue}{PRIORITY_SEPARATOR}{step}" if step else queue


def list_lengths(redis_server, queue: str = QUEUE) -> dict[str, int]:
    client = redis_server.client()
    return {priority: client.llen(redis_list(queue, priority)) for priority in STEP_OF}


def consumed_queues(hostname: str) -> set[str]:
    from celery import current_app

    replies = current_app.control.inspect(destination=[hostname], timeout=1).active_queues() or {}
    return {queue["name"] for queue in replies.get(hostname, [])}


def launch(priority: str, queue: str = QUEUE) -> Run:
    return run_launch(
        task_name="examples.process_items",
        kwargs={"items": 1, "seconds_per_item": 0.1},
        queue=queue,
        priority=priority,
    )


def queue_row(response, name: str = QUEUE):
    return next(queue for queue in response.context["overview"].queues if queue.name == name)


def post(client, url_name: str, name: str = QUEUE, **data):
    return client.post(reverse(f"taskcenter:{url_name}", args=[name]), data)


@contextmanager
def paused(client, worker, redis_server):
    """Pause QUEUE through the page once it is empty; always resume it through the page."""
    wait_for(lambda: sum(list_lengths(redis_server).values()) == 0, message=f"queue {QUEUE} to drain")
    response = post(client, "queue_pause")
    try:
        assert response.status_code == 302, response.content.decode()[:2000]
        wait_for(lambda: QUEUE not in consumed_queues(worker.hostname), message="the worker to stop consuming")
        time.sleep(1.2)  # a BRPOP sent before the cancel (1 s timeout) may still take one message
        yield
    finally:
        response = post(client, "queue_resume")
        assert response.status_code == 302, response.content.decode()[:2000]
        wait_for(lambda: QUEUE in consumed_queues(worker.hostname), message="the worker to consume again")


@pytest.fixture
def paused_queue(staff_client, celery_worker, redis_server):
    with paused(staff_client, celery_worker, redis_server):
        yield QUEUE


def test_depth_counts_the_messages_of_every_priority_list(staff_client, paused_queue, redis_server):
    for priority in ("LOW", "LOW", "URGENT", "HIGH"):
        launch(priority)

    response = staff_client.get(reverse("taskcenter:queue_list"))

    assert response.status_code == 200
    row = queue_row(response)
    assert row.depth == 4
    assert {level.priority: level.count for level in row.by_priority} == {"URGENT": 1, "HIGH": 1, "NORMAL": 0, "LOW": 2}
    assert list_lengths(redis_server) == {"URGENT": 1, "HIGH": 1, "NORMAL": 0, "LOW": 2}
    assert row.oldest_age is not None and row.oldest_age >= 0
    assert row.paused and row.state.changed_by == staff_client.user
    html = response.content.decode()
    assert "Paused" in html and "URGENT" in html and "operator" in html


def test_oldest_age_falls_back_to_the_run_when_the_message_has_no_send_time(staff_client, paused_queue, redis_server):
    run = launch("LOW")
    key = redis_list(QUEUE, "LOW")
    client = redis_server.client()
    raw = client.lindex(key, -1)
    assert b"taskcenter_sent_at" in raw
    client.lset(key, -1, raw.replace(b"taskcenter_sent_at", b"other_header"))
    Run.objects.filter(pk=run.pk).update(created_at=run.created_at.replace(year=run.created_at.year - 1))

    row = queue_row(staff_client.get(reverse("taskcenter:queue_list")))

    assert row.oldest_age > 300 * 24 * 3600


def test_paused_queue_holds_its_tasks_and_resume_releases_them(staff_client, celery_worker, redis_server):
    with paused(staff_client, celery_worker, redis_server):
        runs = [launch("NORMAL"), launch("HIGH")]
        time.sleep(3)
        assert not TaskResult.objects.filter(task_id__in=[run.task_id for run in runs]).exists()
        assert all(Run.objects.get(pk=run.pk).state == "PENDING" for run in runs)

        reloaded = staff_client.get(reverse("taskcenter:queue_list"))  # the state comes from the database
        assert queue_row(reloaded).paused and queue_row(reloaded).depth == 2
        assert QueueState.objects.get(name=QUEUE).paused

    assert not QueueState.objects.get(name=QUEUE).paused
    for run in runs:
        wait_for(
            lambda run=run: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=30,
            message=f"run {run.task_id} to succeed after the resume",
        )
    actions = list(AuditEntry.objects.filter(target=QUEUE).order_by("id").values_list("action", "outcome"))
    assert actions == [("pause", "ok"), ("resume", "ok")]


def test_purge_with_a_wrong_confirmation_is_refused_and_purges_nothing(staff_client, paused_queue, redis_server):
    runs = [launch("LOW"), launch("URGENT")]

    response = post(staff_client, "queue_purge", confirm="lo")

    assert response.status_code == 400
    assert "Type the queue name" in response.content.decode()
    assert sum(list_lengths(redis_server).values()) == 2
    assert not Run.objects.filter(pk__in=[run.pk for run in runs], cancelled_at__isnull=False).exists()
    entry = AuditEntry.objects.get(action="purge")
    assert (entry.outcome, entry.target) == ("refused", QUEUE)


def test_purge_empties_every_priority_list_and_cancels_the_runs(staff_client, paused_queue, redis_server):
    runs = [launch(priority) for priority in ("LOW", "NORMAL", "HIGH", "URGENT", "LOW")]

    response = post(staff_client, "queue_purge", confirm=QUEUE)

    assert response.status_code == 302
    page = staff_client.get(response.url).content.decode()
    assert "Purged 5 messages" in page
    assert list_lengths(redis_server) == {"URGENT": 0, "HIGH": 0, "NORMAL": 0, "LOW": 0}
    for run in Run.objects.filter(pk__in=[run.pk for run in runs]):
        assert run.cancel_reason == f"purged from queue {QUEUE}"
        assert run.cancelled_by == staff_client.user and run.cancelled_at is not None
        assert run.state == "REVOKED"
    entry = AuditEntry.objects.get(action="purge")
    assert (entry.outcome, entry.actor, entry.detail["purged"]) == ("ok", staff_client.user, 5)


def test_unknown_queue_is_404(staff_client, celery_worker):
    for url_name, data in (("queue_pause", {}), ("queue_resume", {}), ("queue_purge", {"confirm": "nope"})):
        response = post(staff_client, url_name, "nope", **data)
        assert response.status_code == 404, url_name
    assert not QueueState.objects.filter(name="nope").exists()


def test_viewer_sees_the_page_without_actions_and_may_not_act(viewer_client, celery_worker):
    response = viewer_client.get(reverse("taskcenter:queue_list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert QUEUE in html
    for url_name in ("queue_pause", "queue_resume", "queue_purge"):
        assert reverse(f"taskcenter:{url_name}", args=[QUEUE]) not in html
        assert post(viewer_client, url_name, confirm=QUEUE).status_code == 403
    assert 'name="confirm"' not in html
    assert not QueueState.objects.exists()


def test_actions_are_post_only(staff_client, celery_worker):
    assert staff_client.get(reverse("taskcenter:queue_pause", args=[QUEUE])).status_code == 405
    assert not QueueState.objects.exists()


def test_stopped_broker_gives_a_notice_and_a_clear_error_fast(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        began = time.monotonic()
        page = staff_client.get(reverse("taskcenter:queue_list"))
        pause = post(staff_client, "queue_pause")
        purge = post(staff_client, "queue_purge", confirm=QUEUE)
        elapsed = time.monotonic() - began

    assert page.status_code == 200
    assert "broker (Redis) is not reachable" in page.content.decode()
    assert queue_row(page).depth is None
    assert pause.status_code == 503 and "saved as paused" in pause.content.decode()
    assert purge.status_code == 503 and "nothing was purged" in purge.content.decode()
    assert elapsed < 5, f"three requests took {elapsed:.1f}s"
    outcomes = set(AuditEntry.objects.values_list("action", "outcome"))
    assert outcomes == {("pause", "error"), ("purge", "error")}


def test_frozen_broker_does_not_hang_the_page(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        began = time.monotonic()
        response = staff_client.get(reverse("taskcenter:queue_list"))
        elapsed = time.monotonic() - began
    assert response.status_code == 200
    assert "broker (Redis) is not reachable" in response.content.decode()
    assert elapsed < 10, f"the page took {elapsed:.1f}s"
