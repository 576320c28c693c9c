"""Queues and workers through the API: the queue and worker services' checks, permissions and audit.

Most tests use a Redis server of this module's own with no worker (``private_broker``),
so nothing here pauses, purges or resizes the session's worker; the end-to-end test at
the bottom resizes the real worker's pool and sets a rate limit, and restores both.
"""

import pytest
from django.core.cache import cache

from taskcenter.models import AuditEntry, QueueState, Run
from taskcenter.services.launch import run_launch
from tests.api_support import assert_problem, make_user, token_client
from tests.conftest import wait_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    cache.clear()
    monkeypatch.setattr("taskcenter.services.workers.CONTROL_TIMEOUT", 0.2)  # no worker answers here anyway


def test_queue_depth_by_priority(admin, private_broker):
    for priority in ("LOW", "LOW", "URGENT"):
        run_launch(task_name="examples.add", args=[1, 2], queue="low", priority=priority)
    body = admin.get("/api/v1/queues/").json()
    low = next(q for q in body["queues"] if q["name"] == "low")
    assert low["depth"] == 3 and low["paused"] is False and low["consumers"] == []
    assert {p["priority"]: p["count"] for p in low["by_priority"]}["LOW"] == 2
    assert low["oldest_age"] is not None


def test_purge_needs_the_queue_name_and_cancels_the_runs(admin, private_broker):
    run = run_launch(task_name="examples.add", args=[1, 2], queue="low")
    body = assert_problem(admin.post("/api/v1/queues/low/purge/", {"confirm": "high"}, format="json"), 400)
    assert "Type the queue name" in body["detail"]
    response = admin.post("/api/v1/queues/low/purge/", {"confirm": "low"}, format="json")
    assert response.status_code == 200 and response.json()["detail"]["purged"] == 1
    assert Run.objects.get(pk=run.pk).state == "REVOKED"
    assert AuditEntry.objects.get(action="purge", outcome="ok").detail["api_token"] == "ci"


def test_pause_with_no_worker_online_is_saved_and_reported(admin, private_broker):
    response = admin.post("/api/v1/queues/low/pause/")
    assert response.status_code == 200 and "saved as paused" in response.json()["message"]
    assert QueueState.objects.get(name="low").paused
    assert admin.post("/api/v1/queues/low/resume/").status_code == 200
    assert not QueueState.objects.get(name="low").paused


def test_unknown_queue_is_404(admin, private_broker):
    assert_problem(admin.post("/api/v1/queues/nope/pause/"), 404)


def test_workers_list_without_workers_says_so(admin, private_broker):
    body = admin.get("/api/v1/workers/").json()
    assert body["workers"] == [] and "No worker answered" in body["problem"]


def test_rate_limit_input_is_checked_by_the_service(admin, private_broker):
    body = assert_problem(
        admin.post("/api/v1/workers/rate-limits/", {"task_name": "examples.add", "rate": "fast"}, format="json"), 400
    )
    assert "is not valid" in body["detail"]
    assert_problem(admin.post("/api/v1/workers/w@h/pool/", {"action": "grow", "n": 0}, format="json"), 400)
    assert_problem(admin.post("/api/v1/workers/w@h/pool/", {"action": "grow", "n": 1}, format="json"), 404)


@pytest.mark.parametrize(
    "url,data",
    [
        ("/api/v1/queues/low/pause/", None),
        ("/api/v1/queues/low/resume/", None),
        ("/api/v1/queues/low/purge/", {"confirm": "low"}),
        ("/api/v1/workers/w@h/pool/", {"action": "grow", "n": 1}),
        ("/api/v1/workers/rate-limits/", {"task_name": "examples.add", "rate": "1/s"}),
    ],
)
def test_a_view_only_token_is_refused_every_queue_and_worker_action(viewer, private_broker, url, data):
    run_launch(task_name="examples.add", args=[1, 2], queue="low")
    assert_problem(viewer.post(url, data, format="json"), 403)
    assert sum(private_broker.llen(key) for key in private_broker.keys("low*")) == 1
    assert Run.objects.get().state == "PENDING" and not QueueState.objects.exists()
    assert not AuditEntry.objects.exclude(action__in=["launch", "token_create"]).exists()
    assert viewer.get("/api/v1/queues/").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_pool_and_rate_limit_on_the_real_worker(spare_worker, monkeypatch):
    from celery import current_app

    monkeypatch.setattr("taskcenter.services.workers.CONTROL_TIMEOUT", 1.0)
    from tests.test_workers import POOL_SIZE, pool_processes, rate_limit_of, restore_pool_size

    client = token_client(make_user("ops", superuser=True), name="ops")
    hostname = spare_worker.hostname
    listed = client.get("/api/v1/workers/").json()
    assert hostname in [w["hostname"] for w in listed["workers"]]
    try:
        grow = client.post(f"/api/v1/workers/{hostname}/pool/", {"action": "grow", "n": 1}, format="json")
        assert grow.status_code == 200, grow.json()
        wait_for(lambda: pool_processes(hostname) == POOL_SIZE + 1, message="the pool to grow")
        ten = {"task_name": "examples.add", "rate": "10/m"}
        limit = client.post("/api/v1/workers/rate-limits/", ten, format="json")
        assert limit.status_code == 200, limit.json()
        assert rate_limit_of(hostname, "examples.add") == "10/m"
    finally:
        restore_pool_size(hostname)
        client.post("/api/v1/workers/rate-limits/", {"task_name": "examples.add", "rate": ""}, format="json")
        current_app.control.rate_limit("examples.add", None, destination=[hostname], reply=True, timeout=1)
    assert rate_limit_of(hostname, "examples.add") is None
    assert AuditEntry.objects.filter(action="pool_grow", outcome="ok").get().detail["api_token"] == "ops"
