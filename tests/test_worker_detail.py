"""One worker's page and its actions (pool restart, autoscale, queues, time limits) against real workers.

Actions run on the module's spare worker (queue ``spare``), or on a worker of this module's own started
with ``--autoscale``; every change is undone in a ``finally`` block.
"""

import os
import time

import pytest
from celery import current_app
from django.urls import reverse
from django_celery_results.models import TaskResult
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from taskcenter import scheduled_set
from taskcenter.models import AuditEntry, QueueState, Run
from taskcenter.services.launch import run_launch
from tests.conftest import broker_down, start_celery_worker, wait_for
from tests.test_workers import POOL_SIZE, inspect, pool_processes, post_pool, restore_pool_size

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def detail_url(hostname: str) -> str:
    return reverse("taskcenter:worker_detail", args=[hostname])


def post(client, name: str, hostname: str, data: dict, *, follow: bool = False):
    return client.post(reverse(f"taskcenter:{name}", args=[hostname]), data, follow=follow)


def registered(hostname: str) -> dict[str, str]:
    """``{task name: "[rate_limit=... time_limit=... soft_time_limit=...]"}`` as the worker reports it."""
    lines = inspect("registered", hostname, "time_limit", "soft_time_limit") or []
    return dict(line.partition(" ")[::2] for line in lines)


#: How the workers report a task's time limits when nobody changed them (the configured defaults).
DEFAULT_LIMITS = "[time_limit=600 soft_time_limit=540]"


def consumed(hostname: str) -> list[str]:
    return sorted(queue["name"] for queue in inspect("active_queues", hostname) or [])


def test_worker_page_shows_its_pid_uptime_pool_prefetch_queues_and_registered_tasks(staff_client, spare_worker):
    hostname = spare_worker.hostname
    stats = inspect("stats", hostname)

    response = staff_client.get(detail_url(hostname))

    assert response.status_code == 200
    detail = response.context["detail"]
    worker = detail.info
    assert worker.pid == stats["pid"] == spare_worker.process.pid
    assert 0 <= worker.uptime <= stats["uptime"] + 5
    assert worker.pool_implementation == "prefork:TaskPool" and worker.pool_processes == POOL_SIZE
    assert worker.prefetch_count == stats["prefetch_count"] >= 1
    assert worker.autoscaler is None
    assert worker.queues == ["spare"]
    names = [task.name for task in detail.registered]
    assert "examples.add" in names
    assert [task.catalogued for task in detail.registered if task.name == "examples.add"] == [True]
    html = response.content.decode()
    assert str(spare_worker.process.pid) in html and "not started with --autoscale" in html
    assert reverse("taskcenter:worker_pool_restart", args=[hostname]) in html


def test_workers_list_links_each_worker_to_its_page(staff_client, spare_worker):
    html = staff_client.get(reverse("taskcenter:worker_list")).content.decode()

    assert detail_url(spare_worker.hostname) in html
    assert f"PID {spare_worker.process.pid}" in html


def test_worker_page_lists_the_runs_waiting_for_their_eta_and_the_revoked_ones(staff_client, celery_worker, settings):
    settings.TASKCENTER_SCHEDULED_MIN_DELAY = 3600  # hand the delayed run to the worker, not the scheduled set
    hostname = celery_worker.hostname
    run = run_launch(task_name="examples.add", kwargs={"x": 1, "y": 2}, countdown=60)
    try:
        wait_for(lambda: run.task_id in str(inspect("scheduled", hostname)), message="the worker to hold the run")
        current_app.control.revoke(run.task_id, destination=[hostname], reply=True, timeout=1)

        response = staff_client.get(detail_url(hostname))
        detail = response.context["detail"]
        assert run.task_id in [task.id for task in detail.scheduled]
        assert [task.name for task in detail.scheduled if task.id == run.task_id] == ["examples.add"]
        assert run.task_id in detail.revoked and detail.revoked_count >= 1
        list_page = staff_client.get(reverse("taskcenter:worker_list"))
        row = next(w for w in list_page.context["overview"].workers if w.hostname == hostname)
        assert row.scheduled_count >= 1
    finally:
        current_app.control.revoke(run.task_id, reply=True, timeout=1)


def test_monitor_counts_of_succeeded_failed_and_retried_runs_show_per_worker(
    staff_client, celery_worker, celery_monitor, redis_server
):
    hostname = celery_worker.hostname

    def state():
        return staff_client.get(detail_url(hostname)).context["detail"].info

    def counts():
        worker = state()
        return (worker.succeeded, worker.failed, worker.retried)

    wait_for(lambda: None not in counts(), message="the monitor to know the worker")
    # The shared worker may still have an earlier test's runs to do: delayed ones waiting in the
    # scheduled set (the worker's pump would publish them mid-test: dropped here), a retry held
    # back, a slow task, a queue its teardown resumed. Start from counts that stayed the same, with
    # nothing active, for 6 s: longer than the monitor's flush interval (2 s) leaves counts behind.
    redis_server.client().delete(*scheduled_set.KEYS)
    seen = {"counts": counts(), "since": time.monotonic()}

    def settled():
        worker = state()
        now = (worker.succeeded, worker.failed, worker.retried)
        if now != seen["counts"] or worker.active:
            seen.update(counts=now, since=time.monotonic())
        return time.monotonic() - seen["since"] >= 6 and now

    before = wait_for(settled, timeout=60, message="the worker's counts to settle")
    runs = [
        run_launch(task_name="examples.add", kwargs={"x": 1, "y": 2}),
        run_launch(task_name="examples.fail", kwargs={}),
        run_launch(task_name="examples.flaky", kwargs={"failures": 1}),
    ]
    wait_for(
        lambda: TaskResult.objects.filter(task_id__in=[r.task_id for r in runs], status__in=["SUCCESS", "FAILURE"])
        .count() == 3,
        timeout=30, message="the three runs to end",
    )  # fmt: skip
    expected = (before[0] + 2, before[1] + 1, before[2] + 1)  # add and flaky succeed; fail fails; flaky retried once
    last = {}

    def reached():
        last["counts"] = counts()
        return last["counts"] == expected

    try:
        wait_for(reached, timeout=15, message=f"the counts to reach {expected}")
    except AssertionError as error:
        raise AssertionError(f"{error}; last seen {last.get('counts')}, before {before}") from None

    page = staff_client.get(reverse("taskcenter:worker_list"))
    row = next(w for w in page.context["overview"].workers if w.hostname == hostname)
    assert (row.succeeded, row.failed, row.retried) == expected


def test_pool_grow_shows_on_the_next_page_at_once(staff_client, spare_worker):
    hostname = spare_worker.hostname
    try:
        response = post_pool(staff_client, hostname, "grow", 1)
        assert response.status_code == 302
        page = staff_client.get(reverse("taskcenter:worker_list"))  # no waiting
        row = next(w for w in page.context["overview"].workers if w.hostname == hostname)
        assert row.pool_processes == POOL_SIZE + 1
    finally:
        restore_pool_size(hostname)


def test_pool_restart_replaces_every_process_and_is_audited(staff_client, spare_worker):
    hostname = spare_worker.hostname
    old = set(inspect("stats", hostname)["pool"]["processes"])

    response = post(staff_client, "worker_pool_restart", hostname, {})

    assert response.status_code == 302, response.content.decode()[:2000]
    assert response.url == detail_url(hostname)

    def replaced():
        pids = set((inspect("stats", hostname) or {}).get("pool", {}).get("processes") or [])
        return len(pids) == POOL_SIZE and pids != old

    # Celery sends the pool one no-op task: the process that takes it is replaced at once, the
    # others when they take their next task.
    wait_for(replaced, timeout=30, message="a pool process to be replaced")
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.target, entry.outcome, entry.actor) == (
        "pool_restart", hostname, "ok", staff_client.user,
    )  # fmt: skip


def test_pool_restart_is_refused_when_restarts_are_turned_off(staff_client, spare_worker, celery_conf):
    celery_conf(worker_pool_restarts=False)

    response = post(staff_client, "worker_pool_restart", spare_worker.hostname, {})

    assert response.status_code == 400
    assert "Pool restarts are turned off" in response.content.decode()
    assert AuditEntry.objects.get().outcome == "refused"


def test_autoscale_of_a_worker_without_autoscale_is_refused_clearly(staff_client, spare_worker):
    response = post(staff_client, "worker_autoscale", spare_worker.hostname, {"min": 1, "max": 3})

    assert response.status_code == 400
    assert "was not started with --autoscale" in response.content.decode()
    assert pool_processes(spare_worker.hostname) == POOL_SIZE
    assert AuditEntry.objects.get().outcome == "refused"


@pytest.fixture(scope="module")
def autoscale_worker(django_db_setup, django_db_blocker, redis_server):
    with django_db_blocker.unblock():
        worker = start_celery_worker(
            redis_server, "autoscale-worker", f"autoscale-worker-{os.getpid()}@localhost",
            "-Q", "spare", "--autoscale=3,1", TASKCENTER_QUEUES="default,high,low,spare",
        )  # fmt: skip
    yield worker
    worker.stop()


def test_autoscale_sets_the_minimum_and_maximum_and_shows_them_at_once(staff_client, autoscale_worker):
    hostname = autoscale_worker.hostname
    page = staff_client.get(detail_url(hostname))
    assert (page.context["worker"].autoscaler["min"], page.context["worker"].autoscaler["max"]) == (1, 3)

    response = post(staff_client, "worker_autoscale", hostname, {"min": 2, "max": 4}, follow=True)

    assert response.status_code == 200
    scaler = response.context["worker"].autoscaler
    assert (scaler["min"], scaler["max"]) == (2, 4)
    assert "autoscales between 2 and 4 processes" in response.content.decode()
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.outcome, entry.detail) == ("autoscale", "ok", {"min": 2, "max": 4})

    for data in ({"min": 3, "max": 2}, {"min": 0, "max": 2}, {"min": 1, "max": 10**9}, {"min": "x", "max": 2}):
        assert post(staff_client, "worker_autoscale", hostname, data).status_code == 400, data
    assert inspect("stats", hostname)["autoscaler"]["max"] == 4


def test_a_worker_consumes_a_queue_and_stops_and_the_page_shows_it_at_once(staff_client, spare_worker):
    hostname = spare_worker.hostname
    try:
        added = post(staff_client, "worker_queue", hostname, {"action": "add", "queue": "high"}, follow=True)
        assert added.status_code == 200
        assert added.context["worker"].queues == ["high", "spare"]
        assert consumed(hostname) == ["high", "spare"]

        cancelled = post(staff_client, "worker_queue", hostname, {"action": "cancel", "queue": "high"}, follow=True)
        assert cancelled.status_code == 200
        assert cancelled.context["worker"].queues == ["spare"]
    finally:
        current_app.control.cancel_consumer("high", destination=[hostname], reply=True, timeout=1)
    wait_for(lambda: consumed(hostname) == ["spare"], message="the spare queue alone")
    entries = AuditEntry.objects.order_by("id")
    assert [(e.action, e.target, e.outcome, e.detail["queue"]) for e in entries] == [
        ("worker_queue_add", hostname, "ok", "high"),
        ("worker_queue_cancel", hostname, "ok", "high"),
    ]
    audit = staff_client.get(reverse("taskcenter:audit_list"), {"action": "worker_queue_add"})
    page = audit.content.decode()
    assert audit.status_code == 200 and "Consume a queue on a worker" in page  # the action's label
    assert '<option value="worker_queue_cancel">' in page  # the filter offers every worker action
    assert [e.action for e in audit.context["entries"]] == ["worker_queue_add"]


@pytest.mark.parametrize(
    ("action", "queue", "message"),
    [
        ("add", "spare", "not a configured queue"),  # the worker knows it; this site does not
        ("add", "nope", "not a configured queue"),
        ("cancel", "high", "does not consume high"),
        ("add", "low", "paused"),
        ("drop", "high", "Choose a queue"),
    ],
)
def test_queue_changes_that_make_no_sense_are_refused(staff_client, spare_worker, action, queue, message):
    QueueState.objects.create(name="low", paused=True)

    response = post(staff_client, "worker_queue", spare_worker.hostname, {"action": action, "queue": queue})

    assert response.status_code == 400
    assert message in response.content.decode()
    assert consumed(spare_worker.hostname) == ["spare"]


def test_queue_change_of_an_unknown_worker_is_not_found(staff_client, celery_worker):
    response = post(staff_client, "worker_queue", "nobody@nowhere", {"action": "add", "queue": "high"})

    assert response.status_code == 404
    assert "No worker named nobody@nowhere is online" in response.content.decode()
    assert staff_client.get(detail_url("nobody@nowhere")).status_code == 404


def test_time_limits_of_a_task_type_are_set_shown_at_once_and_cleared(staff_client, spare_worker):
    hostname = spare_worker.hostname
    try:
        response = post(
            staff_client, "worker_time_limit", hostname,
            {"task_name": "examples.add", "soft": "20", "hard": "30.5"}, follow=True,
        )  # fmt: skip
        assert response.status_code == 200
        row = next(task for task in response.context["detail"].registered if task.name == "examples.add")
        assert (row.soft_time_limit, row.time_limit) == ("20.0", "30.5")
        assert "time_limit=30.5" in registered(hostname)["examples.add"]
        entry = AuditEntry.objects.get()
        assert (entry.action, entry.outcome, entry.detail) == (
            "time_limit", "ok", {"task_name": "examples.add", "soft": 20.0, "hard": 30.5},
        )  # fmt: skip
    finally:
        cleared = post(staff_client, "worker_time_limit", hostname, {"task_name": "examples.add"}, follow=True)
    row = next(task for task in cleared.context["detail"].registered if task.name == "examples.add")
    assert (row.soft_time_limit, row.time_limit) == ("540", "600")
    assert registered(hostname)["examples.add"] == DEFAULT_LIMITS


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"task_name": "examples.add", "soft": "30", "hard": "20"}, "must be below the hard one"),
        ({"task_name": "examples.add", "soft": "30", "hard": "30"}, "must be below the hard one"),
        ({"task_name": "examples.add", "soft": "9000"}, "must be below the hard one"),  # the default hard limit
        ({"task_name": "examples.add", "soft": "-1", "hard": "20"}, "positive numbers"),
        ({"task_name": "examples.add", "hard": "0"}, "positive numbers"),
        ({"task_name": "examples.add", "hard": "nan"}, "positive numbers"),
        ({"task_name": "examples.add", "hard": "1e999"}, "positive numbers"),
        ({"task_name": "examples.add", "hard": "99999999"}, "a longer run would be delivered twice"),
        ({"task_name": "examples.add", "hard": "ten"}, "numbers of seconds"),
        ({"task_name": "celery.backend_cleanup", "hard": "20"}, "not a catalogued task"),
        ({"task_name": "no.such.task", "hard": "20"}, "not a catalogued task"),
        ({"task_name": "", "hard": "20"}, "Give a task name"),
    ],
)
def test_invalid_time_limits_are_refused(staff_client, spare_worker, data, message):
    response = post(staff_client, "worker_time_limit", spare_worker.hostname, data)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert registered(spare_worker.hostname)["examples.add"] == DEFAULT_LIMITS


def test_viewer_sees_the_worker_page_without_actions_and_may_not_act(viewer_client, client, spare_worker):
    hostname = spare_worker.hostname
    page = viewer_client.get(detail_url(hostname))

    assert page.status_code == 200
    html = page.content.decode()
    for name in ("worker_pool_restart", "worker_autoscale", "worker_queue", "worker_time_limit", "worker_pool"):
        assert reverse(f"taskcenter:{name}", args=[hostname]) not in html
    posts = [
        ("worker_pool_restart", {}),
        ("worker_autoscale", {"min": 1, "max": 2}),
        ("worker_queue", {"action": "add", "queue": "high"}),
        ("worker_time_limit", {"task_name": "examples.add", "hard": "20"}),
    ]
    for name, data in posts:
        assert post(viewer_client, name, hostname, data).status_code == 403, name
    client.logout()
    assert client.get(detail_url(hostname)).status_code == 302  # to the login page
    for name, data in posts:
        assert post(client, name, hostname, data).status_code == 302, name
    assert consumed(hostname) == ["spare"] and not AuditEntry.objects.exists()


def test_stopped_broker_gives_the_worker_page_a_notice_and_actions_a_clear_error_fast(
    staff_client, tmp_path, redis_server
):
    hostname = "anyone@localhost"
    with broker_down(tmp_path, redis_server):
        began = time.monotonic()
        page = staff_client.get(detail_url(hostname))
        actions = [
            post(staff_client, "worker_pool_restart", hostname, {}),
            post(staff_client, "worker_queue", hostname, {"action": "add", "queue": "high"}),
            post(staff_client, "worker_time_limit", hostname, {"task_name": "examples.add", "hard": "20"}),
        ]
        elapsed = time.monotonic() - began

    assert page.status_code == 200
    assert "broker (Redis) is not reachable" in page.content.decode()
    assert [response.status_code for response in actions] == [503, 503, 503]
    assert all("broker (Redis) is not reachable" in response.content.decode() for response in actions)
    assert elapsed < 8, f"four requests took {elapsed:.1f}s"
    assert list(AuditEntry.objects.values_list("outcome", flat=True)) == ["error"] * 3


def test_frozen_broker_does_not_hang_the_worker_page(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        began = time.monotonic()
        response = staff_client.get(detail_url("anyone@localhost"))
        elapsed = time.monotonic() - began
    assert response.status_code == 200
    assert "broker (Redis) is not reachable" in response.content.decode()
    assert elapsed < 10, f"the page took {elapsed:.1f}s"


FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["-1", "0", "9" * 40, "1e999", "nan", "inf", "-inf", "\x00", "2.5", "10", "spare", "high"]),
)
TASK_NAMES = st.one_of(st.text(max_size=40), st.sampled_from(["examples.add", "examples.fail", "celery.ping"]))


@FUZZ
@given(task_name=TASK_NAMES, soft=HOSTILE, hard=HOSTILE, minimum=HOSTILE, maximum=HOSTILE, queue=HOSTILE)
def test_hostile_worker_form_inputs_never_give_a_server_error(
    staff_client, spare_worker, task_name, soft, hard, minimum, maximum, queue
):
    hostname = spare_worker.hostname
    try:
        for name, data in (
            ("worker_time_limit", {"task_name": task_name, "soft": soft, "hard": hard}),
            ("worker_autoscale", {"min": minimum, "max": maximum}),
            ("worker_queue", {"action": "cancel", "queue": queue}),
        ):
            response = post(staff_client, name, hostname, data)
            assert response.status_code < 500, (name, data, response.content.decode()[:500])
    finally:
        for name in ("examples.add", "examples.fail"):
            current_app.control.time_limit(name, 540, 600, destination=[hostname], reply=True, timeout=1)
        if consumed(hostname) != ["spare"]:
            current_app.control.add_consumer("spare", destination=[hostname], reply=True, timeout=1)
    assert Run.objects.count() == 0


# --- The same through the API ---------------------------------------------------------

API_ACTIONS = [
    ("pool-restart", {}),
    ("autoscale", {"min": 1, "max": 2}),
    ("queues", {"action": "add", "queue": "high"}),
    ("time-limits", {"task_name": "examples.add", "soft": 20, "hard": 30}),
]


def test_api_worker_detail_and_queue_and_time_limit_actions_on_the_real_worker(admin, spare_worker):
    hostname = spare_worker.hostname
    body = admin.get(f"/api/v1/workers/{hostname}/").json()
    assert body["worker"]["pid"] == spare_worker.process.pid and body["worker"]["queues"] == ["spare"]
    assert "examples.add" in [task["name"] for task in body["registered"]]
    try:
        added = admin.post(f"/api/v1/workers/{hostname}/queues/", {"action": "add", "queue": "high"}, format="json")
        assert added.status_code == 200, added.json()
        assert admin.get(f"/api/v1/workers/{hostname}/").json()["worker"]["queues"] == ["high", "spare"]
        limits = {"task_name": "examples.add", "soft": 20, "hard": 30}
        assert admin.post(f"/api/v1/workers/{hostname}/time-limits/", limits, format="json").status_code == 200
        assert registered(hostname)["examples.add"] == "[time_limit=30.0 soft_time_limit=20.0]"
        refused = admin.post(f"/api/v1/workers/{hostname}/autoscale/", {"min": 1, "max": 2}, format="json")
        assert refused.status_code == 400 and "--autoscale" in refused.json()["detail"]
    finally:
        admin.post(f"/api/v1/workers/{hostname}/queues/", {"action": "cancel", "queue": "high"}, format="json")
        admin.post(f"/api/v1/workers/{hostname}/time-limits/", {"task_name": "examples.add"}, format="json")
    assert consumed(hostname) == ["spare"] and registered(hostname)["examples.add"] == DEFAULT_LIMITS
    assert AuditEntry.objects.filter(action="worker_queue_add").get().detail["api_token"] == "ci"


def test_api_unknown_worker_is_not_found(admin, celery_worker):
    assert admin.get("/api/v1/workers/nobody@nowhere/").status_code == 404
    response = admin.post("/api/v1/workers/nobody@nowhere/pool-restart/", {}, format="json")
    assert response.status_code == 404


@pytest.mark.parametrize(("action", "data"), API_ACTIONS)
def test_api_view_only_token_is_refused_every_new_worker_action(viewer, spare_worker, action, data):
    hostname = spare_worker.hostname
    assert viewer.get(f"/api/v1/workers/{hostname}/").status_code == 200
    response = viewer.post(f"/api/v1/workers/{hostname}/{action}/", data, format="json")
    assert response.status_code == 403
    assert consumed(hostname) == ["spare"] and registered(hostname)["examples.add"] == DEFAULT_LIMITS
    assert not AuditEntry.objects.exclude(action="token_create").exists()


@pytest.mark.parametrize(
    ("action", "data"),
    [
        ("autoscale", {"min": "x", "max": 2}),
        ("autoscale", {"min": 1}),
        ("queues", {"action": "drop", "queue": "high"}),
        ("time-limits", {"task_name": "examples.add", "soft": "nan"}),
        ("time-limits", {"task_name": "examples.add", "soft": 30, "hard": 20}),
        ("time-limits", {"task_name": "examples.add", "hard": 1e300}),
        ("time-limits", {"task_name": "examples.add", "extra": 1}),
    ],
)
def test_api_bad_worker_action_input_is_a_400(admin, spare_worker, action, data):
    response = admin.post(f"/api/v1/workers/{spare_worker.hostname}/{action}/", data, format="json")
    assert response.status_code == 400, response.content[:500]
