"""Delayed runs wait in taskcenter's scheduled set, not unacknowledged on a worker.

Pure decisions, the Redis scripts on a real Valkey server, then end to end with the
session's real worker (its pump publishes what is due).
"""

import time
from datetime import UTC, datetime, timedelta

import pytest
from celery import current_app
from celery.app.amqp import task_message
from django_celery_results.models import TaskResult

from taskcenter import scheduled_set
from taskcenter.broker import KeptOpenConnection
from taskcenter.models import AuditEntry, Run
from taskcenter.services.control import run_cancel
from taskcenter.services.launch import run_launch
from tests.conftest import wait_for, wait_for_state

# --- Deciding (pure) ------------------------------------------------------------------------


def test_a_message_due_later_than_the_minimum_delay_is_held(settings):
    settings.TASKCENTER_SCHEDULED_MIN_DELAY = 1
    now = 1_000_000.0
    eta = datetime.fromtimestamp(now + 30, UTC).isoformat()
    assert scheduled_set.hold_until({"eta": eta}, now=now) == pytest.approx(now + 30)


@pytest.mark.parametrize("eta", [None, "", "not a date", 12, "1970-01-12T13:46:40.500000+00:00"])
def test_a_message_without_a_readable_future_eta_is_published_at_once(settings, eta):
    settings.TASKCENTER_SCHEDULED_MIN_DELAY = 1
    assert scheduled_set.hold_until({"eta": eta}, now=1_000_000.0) is None


def test_a_naive_eta_is_read_as_utc():
    assert scheduled_set.due_time({"eta": "2030-01-01T00:00:00"}) == datetime(2030, 1, 1, tzinfo=UTC).timestamp()


def test_a_held_message_is_published_as_it_was_sent():
    headers = {"id": "abc", "task": "examples.add", "eta": "2030-01-01T00:00:00+00:00", "retries": 2}
    properties = {"correlation_id": "abc", "priority": 3, "reply_to": "r"}
    body = ([1, 2], {"when": datetime(2030, 1, 1, tzinfo=UTC)}, {"callbacks": None})
    options = {"queue": current_app.amqp.queues["high"], "routing_key": "high", "priority": 3, "declare": [object()]}
    raw = scheduled_set.payload_of("examples.add", task_message(headers, properties, body, None), options, due=5.0)
    name, message, kept = scheduled_set._message_of(raw)
    assert name == "examples.add"
    assert {**message.headers, "eta": None} == {**headers, "eta": None}
    assert scheduled_set.due_time(message.headers) <= time.time()  # made due early: due now, not in 2030
    assert message.properties == properties
    assert message.body[1]["when"] == body[1]["when"]  # kombu's JSON keeps dates
    assert kept == {"queue": "high", "routing_key": "high", "priority": 3, "retry": False}


# --- The scripts, on a real Redis --------------------------------------------------------------


@pytest.fixture
def scripts(private_broker):
    connection = KeptOpenConnection(scripts=scheduled_set.SCRIPTS)
    yield connection, private_broker
    connection.disconnect()


def hold(client, task_id: str, due: float) -> None:
    message = task_message({"id": task_id, "task": "examples.add"}, {}, ([1, 2], {}, {}), None)
    scheduled_set.hold(client, "examples.add", message, {"queue": "default"}, due=due)


def test_only_due_messages_are_claimed_and_each_by_one_pump_only(scripts):
    connection, client = scripts
    hold(client, "due", 100.0)
    hold(client, "later", 200.0)
    first = connection.run_script("claim", keys=scheduled_set.KEYS, args=[150.0, 10])
    second = connection.run_script("claim", keys=scheduled_set.KEYS, args=[150.0, 10])
    assert [item.decode() for item in first[::2]] == ["due"] and second == []
    assert client.zrange(scheduled_set.SCHEDULED_KEY, 0, -1) == [b"later"]


def test_a_claim_of_a_pump_that_died_goes_back_in_the_set(scripts):
    connection, client = scripts
    hold(client, "orphan", 100.0)
    connection.run_script("claim", keys=scheduled_set.KEYS, args=[100.0, 10])  # ... and the pump dies
    now = 100.0 + scheduled_set.STALE_CLAIM_SECONDS + 1
    assert connection.run_script("rescue", keys=scheduled_set.KEYS, args=[now - scheduled_set.STALE_CLAIM_SECONDS, now])
    assert client.zscore(scheduled_set.SCHEDULED_KEY, "orphan") == now
    assert client.hexists(scheduled_set.MESSAGES_KEY, "orphan")


def test_a_published_message_is_forgotten_unless_it_was_held_again_meanwhile(scripts):
    connection, client = scripts
    hold(client, "quick", 100.0)
    hold(client, "retried", 100.0)
    connection.run_script("claim", keys=scheduled_set.KEYS, args=[100.0, 10])
    hold(client, "retried", 300.0)  # its run started, failed and is held again for a retry
    for task_id in ("quick", "retried"):
        connection.run_script("done", keys=scheduled_set.KEYS, args=[task_id])
    assert not client.hexists(scheduled_set.MESSAGES_KEY, "quick")
    assert client.hexists(scheduled_set.MESSAGES_KEY, "retried")
    assert client.zscore(scheduled_set.SCHEDULED_KEY, "retried") == 300.0


def test_cancel_and_due_now_act_only_on_waiting_messages(scripts):
    _connection, client = scripts
    hold(client, "waiting", time.time() + 600)
    assert scheduled_set.due_now(client, "waiting")
    assert client.zscore(scheduled_set.SCHEDULED_KEY, "waiting") <= time.time()
    assert scheduled_set.cancel(client, "waiting")
    assert not scheduled_set.cancel(client, "waiting")
    assert not scheduled_set.due_now(client, "waiting")
    assert scheduled_set.held_count(client) == 0 and not client.hexists(scheduled_set.MESSAGES_KEY, "waiting")


def test_the_waiting_list_is_in_due_order_with_a_keyset_cursor(scripts):
    _connection, client = scripts
    for index in range(5):
        hold(client, f"run-{index}", 1000.0 + index)
    first = scheduled_set.held_list(client, limit=2)
    assert [held.task_id for held in first] == ["run-0", "run-1"]
    after = first[-1].due.timestamp()
    assert [held.task_id for held in scheduled_set.held_list(client, after=after, limit=10)] == [
        "run-2", "run-3", "run-4",
    ]  # fmt: skip
    assert first[0].task_name == "examples.add" and first[0].queue == "default"


# --- End to end: the session's worker publishes what is due ---------------------------------------

e2e = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def waiting_ids(client) -> set[str]:
    return {member.decode() for member in client.zrange(scheduled_set.SCHEDULED_KEY, 0, -1)}


def queued_ids(client) -> set[str]:
    """Task ids of the messages on the queues and in kombu's unacked hash (held by a worker)."""
    import json

    ids = set()
    for key in client.keys("*"):
        kind = client.type(key)
        if kind == b"list":
            entries = client.lrange(key, 0, -1)
        elif kind == b"hash" and key == b"unacked":
            entries = [json.loads(value)[0] for value in client.hvals(key)]
        else:
            continue
        for entry in entries:
            try:
                data = json.loads(entry) if isinstance(entry, bytes | str) else entry
                ids.add(data["headers"]["id"])
            except (ValueError, KeyError, TypeError):
                pass
    return ids


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_delayed_launch_waits_in_the_set_not_on_a_worker_and_runs_once_when_due(celery_worker, redis_server):
    client = redis_server.client()
    run = run_launch(task_name="examples.add", args=[2, 3], countdown=4)
    assert run.task_id in waiting_ids(client)
    assert run.task_id not in queued_ids(client)  # not on a queue, not unacknowledged on a worker
    held = current_app.control.inspect(destination=[celery_worker.hostname], timeout=1).scheduled() or {}
    assert not any(run.task_id in str(requests) for requests in held.values())
    result = wait_for_state(run, "SUCCESS", timeout=30)
    assert result.date_started >= run.eta - timedelta(milliseconds=5)
    assert result.date_started <= run.eta + timedelta(seconds=5)
    assert run.task_id not in waiting_ids(client)
    assert not client.hexists(scheduled_set.MESSAGES_KEY, run.task_id)
    assert celery_worker.log().count(f"[{run.task_id}] succeeded in") == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_cancelling_a_delayed_run_takes_it_out_of_the_set_and_it_never_runs(celery_worker, redis_server):
    run = run_launch(task_name="examples.add", args=[1, 1], countdown=3)
    run_cancel(run=run, actor=None)
    assert run.task_id not in waiting_ids(redis_server.client())
    time.sleep(5)
    result = TaskResult.objects.get(task_id=run.task_id)
    assert result.status == "REVOKED" and result.date_started is None
    assert f"[{run.task_id}]" not in celery_worker.log()
    entry = AuditEntry.objects.get(action="cancel", task_id=run.task_id)
    assert "scheduled set" in entry.message


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_retry_with_backoff_waits_in_the_set_and_the_run_page_says_when_it_is_due(
    celery_worker, celery_monitor, redis_server, request, staff_client
):
    from taskcenter.retry_policy import RetryPolicy
    from taskcenter.selectors.retry_policy import run_retry_status
    from taskcenter.selectors.runs import run_by_task_id
    from taskcenter.services.retry_policy import retry_policy_reset, retry_policy_save

    slow = RetryPolicy(max_retries=3, backoff="fixed", delay=4, max_delay=4, jitter=False, retry_on=(ConnectionError,))
    retry_policy_save(task_name="examples.flaky", policy=slow, actor=None)
    request.addfinalizer(lambda: retry_policy_reset(task_name="examples.flaky", actor=None))
    client = redis_server.client()
    run = run_launch(task_name="examples.flaky", kwargs={"failures": 1})
    wait_for(lambda: run.task_id in waiting_ids(client), timeout=30, message="the retry to wait in the set")
    # The first attempt's message stays unacknowledged until that attempt has returned; then
    # nothing of the run is on a worker or a queue while its retry waits.
    wait_for(
        lambda: run.task_id not in queued_ids(client) and run.task_id in waiting_ids(client), timeout=3,
        message="the first attempt's message to be acknowledged while the retry waits",
    )  # fmt: skip
    status = wait_for(
        lambda: (s := run_retry_status(run_by_task_id(run.task_id))) and s.next_at and s, timeout=20,
        message="the retry status with its due time",
    )  # fmt: skip
    assert (status.attempt, status.of) == (1, 4)
    assert abs((status.next_at - scheduled_set.held_due(client, run.task_id)).total_seconds()) < 0.01
    assert "attempt 1 of 4" in staff_client.get(f"/runs/{run.task_id}/").content.decode()
    result = wait_for_state(run, "SUCCESS", timeout=40)
    assert result.status == "SUCCESS"


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_garbage_in_the_set_is_dropped_and_recorded_and_the_next_delayed_run_still_runs(celery_worker, redis_server):
    client = redis_server.client()
    client.hset(scheduled_set.MESSAGES_KEY, "garbage-1", "{not json")
    client.zadd(scheduled_set.SCHEDULED_KEY, {"garbage-1": time.time()})
    run = run_launch(task_name="examples.add", args=[4, 4], countdown=2)
    assert wait_for_state(run, "SUCCESS", timeout=30).status == "SUCCESS"
    wait_for(lambda: not client.hexists(scheduled_set.MESSAGES_KEY, "garbage-1"), message="the garbage to be dropped")
    rejected = wait_for(lambda: TaskResult.objects.filter(task_id="garbage-1").first(), message="its failure")
    assert rejected.status == "FAILURE" and "scheduled set" in rejected.result
    assert celery_worker.process.poll() is None


# --- The Scheduled page ------------------------------------------------------------------------


@pytest.fixture
def held_run(private_broker, django_user_model):
    """A run launched with a long countdown, waiting in the (module's own) scheduled set."""
    run = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    assert private_broker.zscore(scheduled_set.SCHEDULED_KEY, run.task_id)
    return run


def controller(django_user_model, *, launch: bool):
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username=f"ctl-{launch}", password="pw-x-12345", is_staff=True)
    codenames = ["view_run", "control_run"] + (["launch_any_task"] if launch else [])
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="taskcenter", codename__in=codenames))
    return user


@pytest.mark.django_db
def test_the_scheduled_page_lists_waiting_runs_in_due_order_with_their_arguments(staff_client, held_run):
    later = run_launch(task_name="examples.add", args=[5, 5], countdown=900)
    page = staff_client.get("/scheduled/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "2 waiting" in html
    assert html.index(held_run.task_id) < html.index(later.task_id)
    assert "[1, 2]" in html and "Run now" in html and "Cancel…" in html


@pytest.mark.django_db
def test_run_now_makes_a_waiting_run_due_and_is_audited(staff_client, held_run, private_broker):
    response = staff_client.post(f"/scheduled/{held_run.task_id}/run-now/")
    assert response.status_code == 302
    assert private_broker.zscore(scheduled_set.SCHEDULED_KEY, held_run.task_id) <= time.time()
    entry = AuditEntry.objects.get(action="run_now", task_id=held_run.task_id)
    assert entry.actor == staff_client.user and entry.outcome == "ok"


@pytest.mark.django_db
def test_run_now_of_a_run_that_is_not_waiting_is_a_409_with_a_message(staff_client, held_run, private_broker):
    run_cancel(run=held_run, actor=None)
    response = staff_client.post(f"/scheduled/{held_run.task_id}/run-now/")
    assert response.status_code == 409
    assert "not waiting in the scheduled set" in response.content.decode()


@pytest.mark.django_db
def test_run_now_needs_control_and_the_tasks_launch_permission(client, django_user_model, held_run, private_broker):
    due = private_broker.zscore(scheduled_set.SCHEDULED_KEY, held_run.task_id)
    client.force_login(controller(django_user_model, launch=False))
    assert client.post(f"/scheduled/{held_run.task_id}/run-now/").status_code == 403
    assert private_broker.zscore(scheduled_set.SCHEDULED_KEY, held_run.task_id) == due
    assert AuditEntry.objects.get(action="run_now").outcome == "refused"
    client.force_login(controller(django_user_model, launch=True))
    assert client.post(f"/scheduled/{held_run.task_id}/run-now/").status_code == 302


@pytest.mark.django_db
def test_a_viewer_sees_the_waiting_runs_without_buttons_and_anonymous_must_log_in(client, viewer_client, held_run):
    html = viewer_client.get("/scheduled/").content.decode()
    assert held_run.task_id in html and "Run now" not in html
    assert viewer_client.post(f"/scheduled/{held_run.task_id}/run-now/").status_code == 403
    client.logout()
    assert client.get("/scheduled/").status_code == 302


@pytest.mark.django_db
@pytest.mark.parametrize("cursor", ["x", "1e400", "-inf", "nan", "99999999999999", ""])
def test_a_bad_cursor_shows_the_first_page(staff_client, held_run, cursor):
    response = staff_client.get("/scheduled/", {"after": cursor})
    assert response.status_code == 200 and held_run.task_id in response.content.decode()


@pytest.mark.django_db
def test_the_run_page_says_until_when_a_run_waits(staff_client, held_run):
    html = staff_client.get(f"/runs/{held_run.task_id}/").content.decode()
    assert "scheduled set</a> until" in html and "Run now" in html


@pytest.mark.django_db
def test_the_scheduled_page_answers_503_within_two_seconds_when_the_broker_is_down(
    staff_client, tmp_path, redis_server
):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server, frozen=True):
        started = time.monotonic()
        response = staff_client.get("/scheduled/")
        assert time.monotonic() - started < 2
    assert response.status_code == 503 and "not reachable" in response.content.decode()


@pytest.mark.django_db
def test_headers_given_as_a_send_option_are_kept_and_recorded(private_broker):
    """Beat passes ``periodic_task_name`` as ``headers=``; Celery merges it into the message."""
    result = current_app.send_task(
        "examples.add", args=[1, 2], countdown=300, headers={"periodic_task_name": "nightly add"}
    )
    assert Run.objects.get(task_result_id=result.id).periodic_task_name == "nightly add"
    raw = private_broker.hget(scheduled_set.MESSAGES_KEY, result.id)
    _name, message, _options = scheduled_set._message_of(raw)
    assert message.headers["periodic_task_name"] == "nightly add"


# --- tc scheduled ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_tc_scheduled_lists_waiting_runs_and_makes_one_due(held_run, private_broker, django_user_model):
    from tests.cli_helpers import make_user, tc, tc_fails, tc_json

    listed = tc_json("scheduled", "list")
    assert listed["total"] == 1 and listed["runs"][0]["task_id"] == held_run.task_id
    assert held_run.task_id in tc("scheduled", "list")
    make_user(django_user_model, "watcher", "view_run")
    tc_fails("scheduled", "run-now", held_run.task_id, "--user", "watcher", code=1, match="may not")
    assert private_broker.zscore(scheduled_set.SCHEDULED_KEY, held_run.task_id) > time.time() + 60
    assert tc_json("scheduled", "run-now", held_run.task_id) == {"status": "due", "task_id": held_run.task_id}
    assert private_broker.zscore(scheduled_set.SCHEDULED_KEY, held_run.task_id) <= time.time()
    tc_fails("scheduled", "run-now", "no-such-run", code=2)


@pytest.mark.django_db
def test_holding_works_after_a_control_broadcast_used_the_pooled_connection(private_broker):
    """A broadcast leaves a BRPOP on the pooled connection's channel; holding must not read its reply."""
    current_app.control.ping(timeout=0.3)
    runs = [run_launch(task_name="examples.add", args=[n, n], countdown=300) for n in range(3)]
    current_app.control.inspect(timeout=0.3).scheduled()
    runs.append(run_launch(task_name="examples.add", args=[9, 9], countdown=300))
    assert {run.task_id for run in runs} <= waiting_ids(private_broker)


# --- The API ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_api_lists_waiting_runs_and_makes_one_due_with_the_same_rights_as_the_page(held_run, private_broker):
    from django.core.cache import cache

    from tests.api_support import assert_problem, make_user, token_client

    cache.clear()
    viewer = token_client(make_user("api-viewer"), name="read")
    body = viewer.get("/api/v1/scheduled/").json()
    assert body["total"] == 1 and body["runs"][0]["task_id"] == held_run.task_id
    assert body["runs"][0]["state"] == "PENDING"
    assert_problem(viewer.post(f"/api/v1/runs/{held_run.task_id}/run-now/"), 403)
    assert_problem(viewer.get("/api/v1/scheduled/", {"limit": "0"}), 400)
    assert_problem(viewer.get("/api/v1/scheduled/", {"bogus": "1"}), 400)
    admin = token_client(make_user("api-admin", superuser=True), name="ci")
    assert admin.post(f"/api/v1/runs/{held_run.task_id}/run-now/").status_code == 200
    assert private_broker.zscore(scheduled_set.SCHEDULED_KEY, held_run.task_id) <= time.time()
    assert AuditEntry.objects.get(action="run_now", outcome="ok").detail["api_token"] == "ci"
    run_cancel(run=held_run, actor=None)
    assert_problem(admin.post(f"/api/v1/runs/{held_run.task_id}/run-now/"), 409)


@pytest.mark.django_db
@pytest.mark.parametrize("frozen", [False, True], ids=["stopped", "frozen"])
def test_a_delayed_launch_on_a_broker_that_is_down_is_refused_within_two_seconds_and_nothing_is_kept(
    tmp_path, redis_server, frozen
):
    from taskcenter.services.launch import BrokerUnavailable
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server, frozen=frozen):
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            run_launch(task_name="examples.add", args=[1, 2], countdown=60)
        assert time.monotonic() - started < 2
    assert not Run.objects.exists()
    assert AuditEntry.objects.get(action="launch").outcome == "error"
