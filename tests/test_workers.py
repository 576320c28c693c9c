"""Workers page and actions against a real Redis server and real Celery workers.

The session worker is shared with other tests: its pool size and rate limits are
restored in ``finally`` blocks.
"""

import os
import time
from contextlib import contextmanager

import pytest
from celery import current_app
from django.urls import reverse
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, QueueState, TaskRateLimit
from taskcenter.services.launch import run_launch
from tests.conftest import CeleryProcess, RedisServer, broker_down, process_env, use_broker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

POOL_SIZE = 2  # the session worker's --concurrency


def inspect(method: str, hostname: str, *args):
    replies = getattr(current_app.control.inspect(destination=[hostname], timeout=1), method)(*args) or {}
    return replies.get(hostname)


def pool_processes(hostname: str) -> int | None:
    stats = inspect("stats", hostname)
    return len(stats["pool"]["processes"]) if stats else None


def rate_limit_of(hostname: str, task_name: str) -> str | None:
    """The rate limit the worker applies to ``task_name``, from ``inspect registered``."""
    for line in inspect("registered", hostname, "rate_limit") or []:
        name, _, info = line.partition(" ")
        if name == task_name:
            return info.strip("[]").removeprefix("rate_limit=") or None
    return None


def post_pool(client, hostname: str, action: str, n):
    return client.post(reverse("taskcenter:worker_pool", args=[hostname]), {"action": action, "n": n})


def post_rate(client, task_name: str, rate: str):
    return client.post(reverse("taskcenter:rate_limit"), {"task_name": task_name, "rate": rate})


def worker_row(response, hostname: str):
    return next(worker for worker in response.context["overview"].workers if worker.hostname == hostname)


def test_workers_page_lists_the_worker_with_its_pool_queues_and_active_task(staff_client, celery_worker):
    run = run_launch(task_name="examples.process_items", kwargs={"items": 3, "seconds_per_item": 1}, queue="low")
    wait_for(lambda: TaskResult.objects.filter(task_id=run.task_id, status="STARTED").exists(), message="the start")

    began = time.monotonic()
    response = staff_client.get(reverse("taskcenter:worker_list"))
    elapsed = time.monotonic() - began

    assert response.status_code == 200
    assert elapsed < 2.5, f"the page took {elapsed:.1f}s; the inspect calls should run together"
    worker = worker_row(response, celery_worker.hostname)
    assert (worker.pool_processes, worker.pool_max_concurrency) == (POOL_SIZE, POOL_SIZE)
    assert worker.pool_implementation == "prefork:TaskPool"
    assert worker.queues == ["default", "high", "low"]
    assert run.task_id in [task.id for task in worker.active]
    html = response.content.decode()
    assert celery_worker.hostname in html
    assert reverse("taskcenter:run_detail", args=[run.task_id]) in html
    wait_for(lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(), message="the end")


def test_pool_grows_and_shrinks_by_one(staff_client, spare_worker):
    hostname = spare_worker.hostname
    try:
        grow = post_pool(staff_client, hostname, "grow", 1)
        assert grow.status_code == 302, grow.content.decode()[:2000]
        wait_for(lambda: pool_processes(hostname) == POOL_SIZE + 1, message="the pool to grow")

        shrink = post_pool(staff_client, hostname, "shrink", 1)
        assert shrink.status_code == 302, shrink.content.decode()[:2000]
        wait_for(lambda: pool_processes(hostname) == POOL_SIZE, message="the pool to shrink")
    finally:
        restore_pool_size(hostname)

    entries = AuditEntry.objects.filter(target=hostname).order_by("id")
    assert [(e.action, e.outcome, e.detail["n"]) for e in entries] == [("pool_grow", "ok", 1), ("pool_shrink", "ok", 1)]
    assert all(e.actor == staff_client.user for e in entries)


def restore_pool_size(hostname: str) -> None:
    size = pool_processes(hostname)
    if size and size != POOL_SIZE:
        command = current_app.control.pool_grow if size < POOL_SIZE else current_app.control.pool_shrink
        command(abs(size - POOL_SIZE), destination=[hostname], reply=True, timeout=1)
        wait_for(lambda: pool_processes(hostname) == POOL_SIZE, message="the pool size to be restored")


def test_pool_changes_below_one_process_are_refused(staff_client, spare_worker):
    hostname = spare_worker.hostname

    for action, n in (("grow", 0), ("shrink", -1), ("shrink", POOL_SIZE)):
        response = post_pool(staff_client, hostname, action, n)
        assert response.status_code == 400, (action, n)
    assert "would leave none" in response.content.decode()
    assert post_pool(staff_client, hostname, "grow", "many").status_code == 400
    assert post_pool(staff_client, hostname, "explode", 1).status_code == 400

    assert pool_processes(hostname) == POOL_SIZE
    assert list(AuditEntry.objects.values_list("outcome", flat=True)) == ["refused"] * 3


@pytest.mark.parametrize("action", ["grow", "shrink"])
def test_pool_change_of_an_unknown_worker_is_not_found(staff_client, celery_worker, action):
    response = post_pool(staff_client, "nobody@nowhere", action, 1)

    assert response.status_code == 404
    assert "No worker named nobody@nowhere is online" in response.content.decode()
    assert AuditEntry.objects.get().outcome == "refused"


def test_pool_grow_beyond_the_limit_is_refused(staff_client, spare_worker, settings):
    settings.TASKCENTER_MAX_POOL_PROCESSES = POOL_SIZE + 1
    hostname = spare_worker.hostname

    for n in (2, 10**30):
        response = post_pool(staff_client, hostname, "grow", n)
        assert response.status_code == 400
        assert f"would exceed the limit of {POOL_SIZE + 1} processes" in response.content.decode()
    assert pool_processes(hostname) == POOL_SIZE
    assert [entry.outcome for entry in AuditEntry.objects.all()] == ["refused", "refused"]


def test_workers_page_shows_the_rate_limits_workers_apply_whoever_set_them(staff_client, spare_worker):
    hostname = spare_worker.hostname
    try:
        # Set outside taskcenter, as `celery control rate_limit examples.add 7/m` does: nothing is saved.
        current_app.control.rate_limit("examples.add", "7/m", destination=[hostname], reply=True, timeout=2)
        wait_for(lambda: rate_limit_of(hostname, "examples.add") == "7/m", message="the rate limit to apply")

        page = staff_client.get(reverse("taskcenter:worker_list"))
        overview = page.context["overview"]
        applied = [(limit.task_name, limit.rate, limit.workers) for limit in overview.applied_rate_limits]
        assert ("examples.add", "7/m", [hostname]) in applied
        assert worker_row(page, hostname).rate_limits["examples.add"] == "7/m"
        html = page.content.decode()
        assert "No worker online applies a rate limit." not in html and "7/m" in html
        assert "No rate limit saved." in html
    finally:
        current_app.control.rate_limit("examples.add", None, destination=[hostname], reply=True, timeout=2)
    wait_for(lambda: rate_limit_of(hostname, "examples.add") is None, message="the rate limit to be removed")
    page = staff_client.get(reverse("taskcenter:worker_list"))
    assert "examples.add" not in [limit.task_name for limit in page.context["overview"].applied_rate_limits]


def test_rate_limit_is_stored_applied_audited_and_shown(staff_client, spare_worker):
    hostname = spare_worker.hostname
    try:
        response = post_rate(staff_client, "examples.add", "10/m")
        assert response.status_code == 302, response.content.decode()[:2000]
        assert TaskRateLimit.objects.get(task_name="examples.add").rate == "10/m"
        assert rate_limit_of(hostname, "examples.add") == "10/m"
        entry = AuditEntry.objects.get(action="rate_limit")
        assert (entry.target, entry.outcome, entry.detail["rate"]) == ("examples.add", "ok", "10/m")
        page = staff_client.get(reverse("taskcenter:worker_list"))
        assert [(limit.task_name, limit.rate) for limit in page.context["overview"].rate_limits] == [
            ("examples.add", "10/m")
        ]
        assert "10/m" in page.content.decode()
    finally:
        cleared = post_rate(staff_client, "examples.add", "")
    assert cleared.status_code == 302
    assert not TaskRateLimit.objects.exists()
    assert rate_limit_of(hostname, "examples.add") is None


@pytest.mark.parametrize(
    ("task_name", "rate", "message"),
    [
        ("examples.add", "fast", "is not valid"),
        ("examples.add", "0/s", "leave the field empty"),
        ("celery.backend_cleanup", "1/s", "not a catalogued task"),
        ("no.such.task", "1/s", "not a catalogued task"),
        ("examples.add", "9" * 5000 + "/s", "too high"),
        ("examples.add", "9223372036854775808", "too high"),
    ],
)
def test_invalid_rate_limits_are_refused(staff_client, spare_worker, task_name, rate, message):
    response = post_rate(staff_client, task_name, rate)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert not TaskRateLimit.objects.exists()
    assert AuditEntry.objects.get().outcome == "refused"
    assert rate_limit_of(spare_worker.hostname, "examples.add") is None


def test_a_rate_limit_set_while_no_worker_is_online_is_saved_for_the_workers_that_start(
    staff_client, redis_server, tmp_path
):
    empty = RedisServer(tmp_path)  # a broker no worker consumes from
    empty.start()
    try:
        use_broker(empty.url)
        response = post_rate(staff_client, "examples.add", "5/m")
        page = staff_client.get(reverse("taskcenter:worker_list")).content.decode()
    finally:
        use_broker(redis_server.url)
        empty.stop()
    assert response.status_code == 302
    assert TaskRateLimit.objects.get(task_name="examples.add").rate == "5/m"
    assert "No worker is online now" in page
    assert AuditEntry.objects.get(action="rate_limit").outcome == "ok"


def test_viewer_sees_the_page_without_actions_and_may_not_act(viewer_client, spare_worker):
    hostname = spare_worker.hostname
    response = viewer_client.get(reverse("taskcenter:worker_list"))

    assert response.status_code == 200
    html = response.content.decode()
    assert hostname in html
    assert reverse("taskcenter:worker_pool", args=[hostname]) not in html
    assert reverse("taskcenter:rate_limit") not in html
    assert post_pool(viewer_client, hostname, "grow", 1).status_code == 403
    assert post_rate(viewer_client, "examples.add", "1/s").status_code == 403
    assert pool_processes(hostname) == POOL_SIZE
    assert not TaskRateLimit.objects.exists() and not AuditEntry.objects.exists()


def test_stopped_broker_gives_a_notice_and_a_clear_error_fast(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        began = time.monotonic()
        page = staff_client.get(reverse("taskcenter:worker_list"))
        rate = post_rate(staff_client, "examples.add", "5/s")
        elapsed = time.monotonic() - began

    assert page.status_code == 200
    assert "broker (Redis) is not reachable" in page.content.decode()
    assert rate.status_code == 503
    assert "saved; workers apply it when they start" in rate.content.decode()
    assert elapsed < 5, f"two requests took {elapsed:.1f}s"
    assert TaskRateLimit.objects.get().rate == "5/s"
    assert AuditEntry.objects.get().outcome == "error"


def test_frozen_broker_does_not_hang_the_page(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        began = time.monotonic()
        response = staff_client.get(reverse("taskcenter:worker_list"))
        elapsed = time.monotonic() - began
    assert response.status_code == 200
    assert "broker (Redis) is not reachable" in response.content.decode()
    assert elapsed < 10, f"the page took {elapsed:.1f}s"


@contextmanager
def saved_state_worker(redis_server, hostname: str):
    """A second worker process of the project's app; stopped on exit."""
    worker = CeleryProcess(
        "worker-saved-state",
        [
            "worker",
            "--loglevel=INFO",
            "--concurrency=1",
            f"--hostname={hostname}",
            "--without-mingle",
            "--without-gossip",
        ],
        process_env(redis_server),
    )
    try:
        wait_for(lambda: worker.process.poll() is None and inspect("ping", hostname), timeout=60, message=hostname)
        yield worker
    finally:
        worker.stop()


def test_a_starting_worker_applies_saved_paused_queues_and_rate_limits(redis_server, celery_worker):
    QueueState.objects.create(name="low", paused=True)
    TaskRateLimit.objects.create(task_name="examples.add", rate="7/m")
    hostname = f"saved-state-{os.getpid()}@localhost"

    with saved_state_worker(redis_server, hostname) as worker:
        queues = wait_for(lambda: inspect("active_queues", hostname), message="the queues of the new worker")
        assert sorted(queue["name"] for queue in queues) == ["default", "high"]
        assert rate_limit_of(hostname, "examples.add") == "7/m"

    log = worker.log()
    assert f"Worker {hostname}: paused queues not consumed: low" in log
    assert f"Worker {hostname}: saved rate limits applied: examples.add=7/m" in log
    assert rate_limit_of(celery_worker.hostname, "examples.add") is None  # the running worker was not touched
