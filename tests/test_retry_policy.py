"""Retry policies: backoff, exception matching, validation of exception paths, and the policy page."""

import json
import random
import re

import pytest
from celery.exceptions import Ignore, Retry

from taskcenter.models import AuditEntry, RetryPolicyOverride
from taskcenter.retry_policy import OVERRIDES_KEY, InvalidPolicy, RetryPolicy, exception_class

POLICY_URL = "/tasks/examples.flaky/retry-policy/"
EDIT_URL = "/tasks/examples.flaky/retry-policy/edit/"


class Transient(ConnectionError):
    pass


def test_fixed_backoff_waits_the_delay_every_time():
    policy = RetryPolicy(backoff="fixed", delay=3, max_delay=60, jitter=False)
    assert [policy.countdown(n) for n in range(4)] == [3, 3, 3, 3]


def test_exponential_backoff_doubles_up_to_the_cap():
    policy = RetryPolicy(backoff="exponential", delay=2, max_delay=20, jitter=False)
    assert [policy.countdown(n) for n in range(6)] == [2, 4, 8, 16, 20, 20]


def test_a_huge_retry_number_stays_at_the_cap():
    assert RetryPolicy(delay=2, max_delay=20, jitter=False).countdown(10_000) == 20


def test_the_cap_never_exceeds_the_longest_countdown_the_broker_allows(settings):
    settings.TASKCENTER_MAX_COUNTDOWN = 30
    policy = RetryPolicy(backoff="exponential", delay=10, max_delay=600, jitter=False)
    assert [policy.countdown(n) for n in range(4)] == [10, 20, 30, 30]


def test_full_jitter_draws_between_zero_and_the_backoff():
    policy = RetryPolicy(backoff="exponential", delay=1, max_delay=60, jitter=True)
    rng = random.Random(7)
    draws = [policy.countdown(3, rng=rng) for _ in range(500)]
    assert all(0 <= d <= 8 for d in draws)
    assert min(draws) < 1 and max(draws) > 7  # spread over the whole range, not around the backoff


def test_never_retry_wins_over_retry_on():
    policy = RetryPolicy(retry_on=(Exception,), never_retry=(ValueError,))
    assert not policy.should_retry(ValueError("bad"))
    assert not policy.should_retry(UnicodeDecodeError("utf-8", b"", 0, 1, "x"))  # a subclass of ValueError
    assert policy.should_retry(KeyError("k"))


def test_only_the_listed_exceptions_and_their_subclasses_retry():
    policy = RetryPolicy(retry_on=(ConnectionError, TimeoutError), never_retry=())
    assert policy.should_retry(ConnectionError())
    assert policy.should_retry(Transient())
    assert policy.should_retry(TimeoutError())
    assert not policy.should_retry(KeyError("k"))


def test_an_empty_retry_on_retries_every_exception_not_excluded():
    policy = RetryPolicy(retry_on=(), never_retry=(ValueError,))
    assert policy.should_retry(KeyError("k"))
    assert not policy.should_retry(ValueError())


def test_celery_control_exceptions_and_base_exceptions_are_never_retried():
    policy = RetryPolicy(retry_on=(), never_retry=())
    assert not policy.should_retry(Retry())
    assert not policy.should_retry(Ignore())
    assert not policy.should_retry(SystemExit(1))
    assert not policy.should_retry(KeyboardInterrupt())


@pytest.mark.parametrize(
    ("path", "expected"),
    [("ValueError", ValueError), ("builtins.TimeoutError", TimeoutError), ("redis.exceptions.RedisError", None)],
)
def test_exception_paths_name_importable_exception_classes(path, expected):
    cls = exception_class(path)
    assert issubclass(cls, BaseException)
    if expected is not None:
        assert cls is expected


@pytest.mark.parametrize(
    "path",
    ["", "os.path", "json.dumps", "no.such.module.Error", "NoSuchError", "1abc", "a..b", "x" * 300, "os;rm", "int",
     "os.NoSuchError"],
)  # fmt: skip
def test_exception_paths_that_are_not_exception_classes_are_refused(path):
    with pytest.raises(InvalidPolicy):
        exception_class(path)


def test_an_exception_path_never_imports_a_module_not_yet_imported():
    import sys

    assert "antigravity" not in sys.modules and "this" not in sys.modules
    for path in ("antigravity.Error", "this.Error", "tests.never_imported_module.Error"):
        with pytest.raises(InvalidPolicy, match="not a module the tasks import"):
            exception_class(path)
    assert "antigravity" not in sys.modules and "this" not in sys.modules


def test_a_policy_survives_its_json_form():
    policy = RetryPolicy(max_retries=5, backoff="fixed", delay=1.5, max_delay=9, jitter=False,
                         retry_on=(Transient,), never_retry=(KeyError,))  # fmt: skip
    data = json.loads(json.dumps(policy.as_json()))
    assert data["retry_on"] == ["tests.test_retry_policy.Transient"] and data["never_retry"] == ["KeyError"]
    assert RetryPolicy.from_json(data) == policy


@pytest.mark.parametrize(
    "data",
    [[], {"max_retries": -1}, {"max_retries": "3"}, {"max_retries": True}, {"backoff": "linear"},
     {"delay": float("nan")}, {"delay": -1}, {"jitter": "yes"}, {"retry_on": "ValueError"}, {"retry_on": [1]},
     {"never_retry": ["os.path"]}],
)  # fmt: skip
def test_invalid_policies_are_refused(data):
    with pytest.raises(InvalidPolicy):
        RetryPolicy.from_json(data)


# --- The policy page --------------------------------------------------------------------------


def _form(**changes) -> dict:
    data = {"max_retries": "1", "backoff": "fixed", "delay": "0.5", "max_delay": "5", "jitter": "",
            "retry_on": "ConnectionError\nTimeoutError", "never_retry": "ValueError"}  # fmt: skip
    data.update(changes)
    return data


@pytest.fixture
def broker(redis_server):
    client = redis_server.client()
    client.delete(OVERRIDES_KEY)
    yield client
    client.delete(OVERRIDES_KEY)


@pytest.mark.django_db
def test_the_catalogue_links_to_the_policy_page_which_shows_the_code_policy(staff_client):
    assert POLICY_URL in staff_client.get("/").content.decode()
    page = staff_client.get(POLICY_URL).content.decode()
    assert "Policy in the code" in page and "ConnectionError, TimeoutError" in page and "exponential" in page


@pytest.mark.django_db
def test_an_operator_saves_an_override_to_the_database_and_redis_audited(staff_client, broker):
    response = staff_client.post(EDIT_URL, _form())
    assert response.status_code == 302, response.content.decode()[:2000]
    override = RetryPolicyOverride.objects.get(task_name="examples.flaky")
    assert override.policy["max_retries"] == 1 and override.changed_by == staff_client.user
    assert json.loads(broker.hget(OVERRIDES_KEY, "examples.flaky")) == override.policy
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRY_POLICY)
    assert entry.target == "examples.flaky" and entry.actor == staff_client.user and entry.outcome == "ok"
    page = staff_client.get(POLICY_URL).content.decode()
    assert "Override in effect" in page and "1 (2 attempts at most)" in page

    assert staff_client.post(EDIT_URL, {"action": "reset"}).status_code == 302
    assert not RetryPolicyOverride.objects.exists() and broker.hget(OVERRIDES_KEY, "examples.flaky") is None
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RETRY_POLICY).count() == 2


@pytest.mark.django_db
def test_a_viewer_sees_the_policy_but_gets_403_on_edit_and_nothing_changes(viewer_client, broker):
    page = viewer_client.get(POLICY_URL)
    assert page.status_code == 200 and "Save override" not in page.content.decode()
    assert viewer_client.get(EDIT_URL).status_code == 403
    assert viewer_client.post(EDIT_URL, _form()).status_code == 403
    assert viewer_client.post(EDIT_URL, {"action": "reset"}).status_code == 403
    assert not RetryPolicyOverride.objects.exists() and broker.hget(OVERRIDES_KEY, "examples.flaky") is None
    assert not AuditEntry.objects.exists()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "changes",
    [{"max_retries": "-1"}, {"max_retries": "101"}, {"backoff": "linear"}, {"delay": "nan"}, {"max_delay": "99999999"},
     {"retry_on": "os.path"}, {"never_retry": "no.such.Error"}, {"retry_on": "\n".join(["ValueError"] * 21)}],
)  # fmt: skip
def test_invalid_policies_get_400_with_the_reason_and_nothing_is_saved(staff_client, broker, changes):
    response = staff_client.post(EDIT_URL, _form(**changes))
    assert response.status_code == 400
    assert not RetryPolicyOverride.objects.exists() and broker.hget(OVERRIDES_KEY, "examples.flaky") is None


@pytest.mark.django_db
def test_a_task_without_a_retry_policy_in_its_code_can_be_given_one(staff_client, broker):
    page = staff_client.get("/tasks/examples.add/retry-policy/").content.decode()
    assert "No retry policy" in page and "not retried" in page
    assert staff_client.post("/tasks/examples.add/retry-policy/edit/", _form()).status_code == 302
    assert json.loads(broker.hget(OVERRIDES_KEY, "examples.add"))["max_retries"] == 1
    assert AuditEntry.objects.get(target="examples.add").detail["default"] is None
    assert "Override in effect" in staff_client.get("/tasks/examples.add/retry-policy/").content.decode()


@pytest.mark.django_db
def test_a_task_not_in_the_catalogue_has_no_policy_page(staff_client, broker):
    assert staff_client.get("/tasks/no.such.task/retry-policy/").status_code == 404
    assert staff_client.post("/tasks/celery.backend_cleanup/retry-policy/edit/", _form()).status_code == 404
    assert broker.hlen(OVERRIDES_KEY) == 0


# --- Attempts as the monitor records them -----------------------------------------------------


@pytest.mark.parametrize("received_first", [True, False])
def test_a_retried_attempt_keeps_its_exception_and_when_the_retry_is_due(received_first):
    from taskcenter.models import Run
    from taskcenter.monitor.runs import RunEvent, run_apply_event

    run = Run(task_result_id="r-1", task_name="examples.flaky", queue="default")
    at = 1_700_000_000.0
    retried = RunEvent(kind="task-retried", timestamp=at + 1, text="ConnectionError('attempt 1')")
    received = RunEvent(kind="task-received", timestamp=at + 1, eta=at + 3)
    run_apply_event(run, RunEvent(kind="task-started", timestamp=at, hostname="w1@h", pid=5))
    for event in (received, retried) if received_first else (retried, received):
        run_apply_event(run, event)
    run_apply_event(run, RunEvent(kind="task-started", timestamp=at + 3, hostname="w1@h", pid=5))
    run_apply_event(run, RunEvent(kind="task-failed", timestamp=at + 4, text="ConnectionError('attempt 2')"))
    first, second = run.attempt_list
    assert first["ended"] == "retried" and first["error"] == "ConnectionError('attempt 1')"
    assert first["next_at"].timestamp() == at + 3
    assert second["ended"] == "failed" and second["error"] == "ConnectionError('attempt 2')"
    assert second["next_at"] is None


def test_a_delayed_first_launch_is_no_retry():
    from taskcenter.models import Run
    from taskcenter.monitor.runs import RunEvent, run_apply_event

    run = Run(task_result_id="r-2", task_name="examples.flaky", queue="default")
    run_apply_event(run, RunEvent(kind="task-received", timestamp=1.0, eta=60.0))
    assert run.attempts == []


# --- Saving while the broker is down ----------------------------------------------------------


@pytest.mark.django_db
def test_a_save_while_the_broker_is_down_is_refused_with_503_and_nothing_is_saved(staff_client, redis_server,
                                                                                   tmp_path):  # fmt: skip
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server):
        response = staff_client.post(EDIT_URL, _form())
    assert response.status_code == 503
    assert "not reachable" in response.content.decode()
    assert not RetryPolicyOverride.objects.exists()
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETRY_POLICY)
    assert entry.outcome == "error"


# --- The task class -----------------------------------------------------------------------------


def test_a_task_called_directly_raises_without_retrying():
    from taskcenter.examples.tasks import flaky

    with pytest.raises(ConnectionError):
        flaky(failures=1)


@pytest.mark.django_db
def test_a_starting_worker_copies_only_the_overrides_redis_lacks(broker):
    from taskcenter.services.retry_policy import retry_policies_publish

    lost = RetryPolicy(max_retries=7).as_json()
    RetryPolicyOverride.objects.create(task_name="examples.flaky", policy=lost)
    assert retry_policies_publish() == 1
    assert json.loads(broker.hget(OVERRIDES_KEY, "examples.flaky"))["max_retries"] == 7

    newer = json.dumps(RetryPolicy(max_retries=2).as_json())  # saved meanwhile: kept
    broker.hset(OVERRIDES_KEY, "examples.flaky", newer)
    assert retry_policies_publish() == 0
    assert broker.hget(OVERRIDES_KEY, "examples.flaky").decode() == newer


@pytest.mark.django_db
def test_the_run_page_shows_attempt_n_of_m_and_when_the_retry_is_due(staff_client):
    from taskcenter.models import Run

    run = Run.objects.create(
        task_result_id="r-page", task_name="examples.flaky", queue="default", recorded_state="RETRY",
        attempts=[{"worker": "w1@h", "pid": 5, "started": "2026-01-01T00:00:00+00:00", "ended": "retried",
                   "at": "2026-01-01T00:00:01+00:00", "error": "ConnectionError('down')",
                   "next_at": "2026-01-01T00:00:03+00:00"}],
    )  # fmt: skip
    page = staff_client.get(f"/runs/{run.task_id}/").content.decode()
    assert "attempt 1 of 4" in page and re.search(r"next retry at <time [^>]*>2026-01-01 08:00:03 UTC\+08:00<", page)
    assert "ConnectionError(&#x27;down&#x27;)" in page
    waiting = Run.objects.create(task_result_id="r-wait", task_name="examples.flaky", queue="default")
    assert "none recorded yet, at most 4" in staff_client.get(f"/runs/{waiting.task_id}/").content.decode()
    plain = Run.objects.create(task_result_id="r-add", task_name="examples.add", queue="high")
    assert "retry-status" not in staff_client.get(f"/runs/{plain.task_id}/").content.decode()
