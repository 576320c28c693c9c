"""Retry policies end to end: a real worker retries by the task's policy and by an operator's override.

Real Valkey, the session's real worker (started before any override is saved: the
override reaches it without a restart) and, for the run page, the real monitor.
"""

import json

import pytest
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry
from taskcenter.retry_policy import OVERRIDES_KEY
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services.launch import run_launch
from tests.conftest import wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EDIT_URL = "/tasks/examples.flaky/retry-policy/edit/"


@pytest.fixture
def no_override(redis_server):
    client = redis_server.client()
    client.delete(OVERRIDES_KEY)
    yield client
    client.delete(OVERRIDES_KEY)


def test_the_transient_example_succeeds_after_two_retries_with_its_backoff(celery_worker, celery_monitor, no_override,
                                                                            staff_client):  # fmt: skip
    run = run_launch(task_name="examples.flaky", kwargs={"failures": 2})
    result = wait_for_state(run, "SUCCESS", timeout=60)
    assert json.loads(result.result) == {"attempt": 3, "retries": 2}
    # Exponential backoff of 1 s then 2 s, no jitter: at least 3 s from the first attempt to the last.
    assert (result.date_done - run.created_at).total_seconds() >= 3

    def three_attempts():
        fresh = run_by_task_id(run.task_id)
        return fresh.state == "SUCCESS" and len(fresh.attempt_list) == 3 and fresh

    fresh = wait_for(three_attempts, timeout=30, message="the monitor to record three attempts")
    first, second, third = fresh.attempt_list
    assert [a["ended"] for a in fresh.attempt_list] == ["retried", "retried", "succeeded"]
    assert "ConnectionError" in first["error"] and "attempt 1" in first["error"]
    assert "attempt 2" in second["error"] and not third["error"]
    assert first["next_at"] is not None and second["next_at"] is not None
    waited = (second["next_at"] - first["next_at"]).total_seconds()
    assert waited >= 2  # 1 s, then 2 s (plus the second attempt's own time)
    page = staff_client.get(f"/runs/{run.task_id}/").content.decode()
    assert "attempt 3 of 4" in page and "attempt 1: the server did not answer" in page


def test_a_never_retry_exception_fails_the_run_at_once(celery_worker, no_override):
    run = run_launch(task_name="examples.flaky", kwargs={"failures": 2, "error": "value"})
    result = wait_for_state(run, "FAILURE", "SUCCESS", timeout=60)
    # Retried, its third attempt would have succeeded; FAILURE is only stored once no retry follows.
    assert result.status == "FAILURE"
    assert "ValueError" in result.result and "attempt 1" in result.result


def test_an_operators_override_changes_max_retries_on_the_running_worker(celery_worker, no_override, staff_client):
    form = {"max_retries": "1", "backoff": "fixed", "delay": "0.2", "max_delay": "1", "jitter": "",
            "retry_on": "ConnectionError", "never_retry": "ValueError"}  # fmt: skip
    assert staff_client.post(EDIT_URL, form).status_code == 302
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RETRY_POLICY, target="examples.flaky").exists()

    run = run_launch(task_name="examples.flaky", kwargs={"failures": 2})
    result = wait_for_state(run, "FAILURE", "SUCCESS", timeout=60)
    assert result.status == "FAILURE"  # one retry only: the second attempt failed for good
    assert "attempt 2" in result.result

    # Back to the code's policy (3 retries), again without restarting the worker.
    assert staff_client.post(EDIT_URL, {"action": "reset"}).status_code == 302
    again = run_launch(task_name="examples.flaky", kwargs={"failures": 2})
    assert wait_for_state(again, "FAILURE", "SUCCESS", timeout=60).status == "SUCCESS"
    assert celery_worker.process.poll() is None


def test_an_override_retrying_every_exception_retries_what_the_code_never_retries(celery_worker, no_override,
                                                                                   staff_client):  # fmt: skip
    form = {"max_retries": "2", "backoff": "fixed", "delay": "0.2", "max_delay": "1", "jitter": "on",
            "retry_on": "", "never_retry": ""}  # fmt: skip
    assert staff_client.post(EDIT_URL, form).status_code == 302
    run = run_launch(task_name="examples.flaky", kwargs={"failures": 2, "error": "value"})
    result = wait_for_state(run, "FAILURE", "SUCCESS", timeout=60)
    assert result.status == "SUCCESS" and json.loads(result.result)["retries"] == 2
    assert TaskResult.objects.filter(task_id=run.task_id).count() == 1  # one run, one result: same task id


def test_an_override_gives_a_retry_policy_to_a_task_whose_code_declares_none(celery_worker, no_override,
                                                                              staff_client):  # fmt: skip
    form = {"max_retries": "1", "backoff": "fixed", "delay": "0.2", "max_delay": "1", "jitter": "",
            "retry_on": "", "never_retry": ""}  # fmt: skip
    assert staff_client.post("/tasks/examples.fail/retry-policy/edit/", form).status_code == 302
    run = run_launch(task_name="examples.fail", kwargs={"message": "fails every time"})
    assert wait_for_state(run, "FAILURE", timeout=60).status == "FAILURE"
    # One retry, logged by the worker: "examples.fail[<id>] failed (ExampleFailure); retry 1 of 1 in 0.2s".
    wait_for(lambda: f"examples.fail[{run.task_id}] failed (ExampleFailure); retry 1 of 1" in celery_worker.log(),
             timeout=10, message="the worker's log of the retry")  # fmt: skip
    assert f"examples.fail[{run.task_id}] failed (ExampleFailure); retry 2" not in celery_worker.log()
