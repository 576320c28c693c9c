"""``manage.py tc task``: create, info, list, cancel, terminate, retry and wait, through the pages' services."""

import io
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run, RunSource
from taskcenter.progress import report_progress
from taskcenter.services.launch import run_launch
from tests.cli_helpers import make_user, tc, tc_fails, tc_json
from tests.conftest import broker_down

pytestmark = pytest.mark.django_db


def recorded_run(task_id: str, status="SUCCESS", *, task_name="examples.add", result: str | None = "3", **fields):
    """A run a worker has reported on (no worker needed)."""
    TaskResult.objects.create(task_id=task_id, task_name=task_name, status=status, result=result, worker="w1@host")
    return Run.objects.create(task_result_id=task_id, task_name=task_name, queue="high", args=[1, 2], **fields)


@pytest.fixture
def viewer(django_user_model):
    return make_user(django_user_model, "viewer", "view_run")


@pytest.fixture
def operator(django_user_model):
    return make_user(django_user_model, "ops", "view_run", "launch_any_task", "control_run")


# --- create -------------------------------------------------------------------------------


def test_create_launches_through_the_service_and_prints_the_task_id(redis_server):
    out = tc("task", "create", "examples.add", "--args", "[1, 2]", "--queue", "default", "--priority", "low")
    run = Run.objects.get()
    assert out.strip() == run.task_id
    assert (run.task_name, run.args, run.queue, run.priority, run.source) == (
        "examples.add", [1, 2], "default", "LOW", RunSource.CLI,
    )  # fmt: skip
    assert run.launched_by is None  # the system
    assert AuditEntry.objects.filter(action="launch", task_id=run.task_id, actor=None).exists()


def test_create_as_a_user_is_audited_as_that_user_with_every_option(redis_server, operator):
    eta = (timezone.now() + timedelta(minutes=5)).replace(microsecond=0)
    document = tc_json(
        "task", "create", "examples.sync_account", "--args", "[7]", "--kwargs", '{"seconds": 0}',
        "--eta", eta.isoformat(), "--expires", "3600", "--dedup-key", "account-7", "--user", "ops",
    )  # fmt: skip
    run = Run.objects.get()
    assert document["task_id"] == run.task_id and document["state"] == "PENDING"
    assert document["launched_by"] == "ops" and document["source"] == "cli"
    assert document["dedup_key"] == "account-7"
    assert document["eta"] == timezone.localtime(eta).isoformat()  # ISO 8601 with its offset
    assert document["expires"][-6] in "+-"
    assert run.launched_by == operator
    entry = AuditEntry.objects.get(action="launch", task_id=run.task_id)
    assert entry.actor == operator and entry.detail["source"] == "cli"
    again = tc_fails("task", "create", "examples.sync_account", "--args", "[7]", "--dedup-key", "account-7", code=1)
    assert "still pending or running" in str(again)


def test_create_json_has_stable_keys(redis_server):
    document = tc_json("task", "create", "examples.add", "--args", "[1, 2]")
    assert list(document) == [
        "task_id", "task", "state", "queue", "priority", "args", "kwargs", "source", "launched_by", "schedule",
        "dedup_key", "created_at", "eta", "expires", "started_at", "finished_at", "duration_seconds", "worker",
        "result", "retry_of", "cancelled_at", "cancel_reason",
    ]  # fmt: skip
    assert document["created_at"][-6] in "+-"


def test_create_as_a_user_without_the_launch_permission_sends_nothing(redis_server, viewer):
    tc_fails("task", "create", "examples.add", "--args", "[1, 2]", "--user", "viewer", code=1,
             match="You may not launch 'examples.add'")  # fmt: skip
    assert not Run.objects.exists() and not AuditEntry.objects.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["examples.add", "--args", "[1,"], "--args is not valid JSON"),
        (["examples.add", "--args", '{"x": 1}'], "--args must be a JSON list"),
        (["examples.add", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
        (["examples.add", "--args", "[" * 5000 + "]" * 5000], "nested too deeply"),
        (["examples.add", "--args", '["a", 2]'], "must be a whole number"),
        (["examples.nope"], "No launchable task is named 'examples.nope'"),
        (["celery.backend_cleanup"], "No launchable task"),
        (["examples.add", "--args", "[1, 2]", "--eta", "tomorrow"], "not an ISO date"),
        (["examples.add", "--args", "[1, 2]", "--eta", "2001-01-01T00:00"], "in the past"),
        (["examples.add", "--args", "[1, 2]", "--expires", "-5"], "positive number of seconds"),
        (["examples.add", "--args", "[1, 2]", "--queue", "nope"], "queue"),
        (["examples.add", "--args", "[1, 2]", "--user", "ghost"], "No user named 'ghost'"),
    ],
)
def test_bad_input_is_a_usage_error_and_nothing_is_sent(redis_server, args, message):
    tc_fails("task", "create", *args, code=2, match=message.replace("[", r"\["))
    assert not Run.objects.exists()


def test_create_with_the_broker_down_fails_within_two_seconds(redis_server, tmp_path):
    with broker_down(tmp_path, redis_server):
        began = time.monotonic()
        tc_fails("task", "create", "examples.add", "--args", "[1, 2]", code=1, match="broker")
        assert time.monotonic() - began < 2
    assert not Run.objects.exists()


def test_the_old_launch_command_still_works_and_shares_the_code(redis_server):
    out = io.StringIO()
    call_command("launch", "examples.add", "--args", "[1, 2]", "--json", stdout=out)
    assert '"source": "cli"' in out.getvalue()


# --- info ---------------------------------------------------------------------------------


def test_info_shows_the_run_in_text_and_json(viewer):
    original = recorded_run("info-0", "FAILURE", result='{"exc_type": "ValueError"}')
    run = recorded_run(
        "info-1",
        retry_of=original,
        attempts=[{"worker": "w1@host", "pid": 7, "started": "2026-12-01T10:00:00+00:00", "ended": "succeeded"}],
    )  # noqa: E501
    text = tc("task", "info", run.task_id, "--user", "viewer")
    assert "task_id:          info-1" in text and "state:            SUCCESS" in text
    assert "retry_of:         info-0" in text and "attempt 1:" in text and "w1@host" in text
    document = tc_json("task", "info", run.task_id)
    assert document["state"] == "SUCCESS" and document["result"] == "3" and document["worker"] == "w1@host"
    assert document["attempts"][0]["pid"] == 7 and document["attempts"][0]["started"][-6] in "+-"
    assert tc_json("task", "info", "info-0")["reruns"] == ["info-1"]


def test_info_of_an_unknown_run_is_a_usage_error():
    tc_fails("task", "info", "no-such-run", code=2, match="No run with task id 'no-such-run'")


def test_reads_are_refused_to_a_user_who_may_not_see_the_pages(django_user_model):
    recorded_run("r-1")
    make_user(django_user_model, "outsider", "view_run", staff=False)
    for args in (["info", "r-1"], ["list"], ["wait", "r-1"]):
        tc_fails("task", *args, "--user", "outsider", code=1, match="You may not view taskcenter")


# --- list ---------------------------------------------------------------------------------


def test_list_is_newest_first_filtered_and_pages_by_keyset(viewer):
    for n in range(5):
        recorded_run(f"l-{n}", "SUCCESS" if n % 2 == 0 else "FAILURE")
    recorded_run("other", task_name="examples.fail", status="FAILURE")
    Run.objects.filter(task_result_id="l-4").update(worker="w2@host")
    TaskResult.objects.filter(task_id="l-4").update(worker="w2@host")
    page = tc_json("task", "list", "--task", "examples.add", "--limit", "2")
    assert [r["task_id"] for r in page["runs"]] == ["l-4", "l-3"]
    older = tc_json("task", "list", "--task", "examples.add", "--limit", "2", "--before", str(page["next_before"]))
    assert [r["task_id"] for r in older["runs"]] == ["l-2", "l-1"]
    assert [r["task_id"] for r in tc_json("task", "list", "--state", "failure")["runs"]] == ["other", "l-3", "l-1"]
    assert [r["task_id"] for r in tc_json("task", "list", "--worker", "w2@host")["runs"]] == ["l-4"]
    assert tc_json("task", "list", "--queue", "low")["runs"] == []
    text = tc("task", "list", "--limit", "3", "--user", "viewer")
    lines = text.splitlines()
    assert lines[0].split() == ["TASK", "ID", "TASK", "STATE", "QUEUE", "CREATED", "WORKER"]
    assert lines[1].startswith("other ") and "More: --before" in lines[-1]


def test_list_filters_by_time_range():
    recorded_run("old", created_at=timezone.now() - timedelta(days=3))
    recorded_run("new")
    since = (timezone.localdate() - timedelta(days=1)).isoformat()
    assert [r["task_id"] for r in tc_json("task", "list", "--since", since)["runs"]] == ["new"]
    assert [r["task_id"] for r in tc_json("task", "list", "--until", since)["runs"]] == ["old"]
    tc_fails("task", "list", "--since", "last week", code=2, match="not an ISO date")
    tc_fails("task", "list", "--limit", "0", code=2, match="--limit must be between")
    assert tc("task", "list", "--state", "RETRY") == "No runs.\n"


# --- cancel, terminate, retry -----------------------------------------------------------------


def test_cancel_revokes_a_waiting_run_and_is_audited_as_the_user(redis_server, operator):
    run = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    document = tc_json("task", "cancel", run.task_id, "--user", "ops")
    assert document["status"] == "cancelled" and document["run"]["state"] == "REVOKED"
    entry = AuditEntry.objects.get(action="cancel", task_id=run.task_id)
    assert entry.actor == operator and entry.outcome == "ok" and entry.detail["source"] == "cli"
    again = tc_fails("task", "cancel", run.task_id, code=1, match="only waiting runs can be cancelled")
    assert "REVOKED" in str(again)


def test_cancel_terminate_and_retry_are_refused_without_the_control_permission(redis_server, django_user_model):
    make_user(django_user_model, "launcher", "view_run", "launch_any_task")  # may launch, not control
    waiting = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    started = recorded_run("started-1", "STARTED", result=None)
    finished = recorded_run("done-1")
    for action, run in (("cancel", waiting), ("terminate", started), ("retry", finished)):
        tc_fails("task", action, run.task_id, "--user", "launcher", code=1, match="You may not")
    assert Run.objects.count() == 3 and Run.objects.get(pk=waiting.pk).cancelled_at is None
    assert not AuditEntry.objects.exclude(action="launch").exists()


def test_retry_needs_the_launch_permission_of_the_task_too(redis_server, django_user_model):
    make_user(django_user_model, "controller", "view_run", "control_run")
    tc_fails("task", "retry", recorded_run("done-2").task_id, "--user", "controller", code=1,
             match="You may not launch 'examples.add'")  # fmt: skip
    assert Run.objects.count() == 1


def test_terminate_signals_a_started_run_and_refuses_a_waiting_one(redis_server, operator):
    started = recorded_run("started-2", "STARTED", result=None)
    assert "Terminated examples.add [started-2]" in tc("task", "terminate", started.task_id, "--user", "ops")
    assert AuditEntry.objects.get(action="terminate").actor == operator
    waiting = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    tc_fails("task", "terminate", waiting.task_id, code=1, match="only started runs can be terminated")
    tc_fails("task", "terminate", "ghost", code=2, match="No run with task id 'ghost'")


def test_retry_launches_a_linked_run_with_its_own_or_edited_arguments(redis_server, operator):
    original = recorded_run("done-3")
    same = tc("task", "retry", original.task_id).strip()
    edited = tc_json("task", "retry", original.task_id, "--args", "[5, 6]", "--user", "ops")
    assert Run.objects.get(task_result_id=same).args == [1, 2]
    assert edited["args"] == [5, 6] and edited["retry_of"] == "done-3" and edited["launched_by"] == "ops"
    assert Run.objects.filter(retry_of=original, source=RunSource.CLI).count() == 2
    tc_fails("task", "retry", original.task_id, "--args", "[1,", code=2, match="--args is not valid JSON")
    tc_fails("task", "retry", original.task_id, "--args", '["x", 1]', code=2, match="whole number")
    waiting = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    tc_fails("task", "retry", waiting.task_id, code=1, match="only finished runs can be re-run")


# --- wait ---------------------------------------------------------------------------------


def test_wait_exits_0_on_success_and_1_on_failure():
    assert tc("task", "wait", recorded_run("ok-1").task_id) == "ok-1 SUCCESS: 3\n"
    assert tc_json("task", "wait", "ok-1")["state"] == "SUCCESS"
    recorded_run("bad-1", "FAILURE", result='{"exc_type": "ValueError"}')
    tc_fails("task", "wait", "bad-1", code=1, match="Run bad-1 finished FAILURE")
    tc_fails("task", "wait", "ghost", code=2, match="No run")
    tc_fails("task", "wait", "ok-1", "--timeout", "0", code=2, match="--timeout must be a positive number")


def test_wait_shows_reported_progress_on_stderr_and_gives_up_at_the_timeout(redis_server):
    run = run_launch(task_name="examples.add", args=[1, 2], countdown=600)  # no worker takes it
    report_progress(run.task_id, done=2, total=4, message="half way")
    err = io.StringIO()
    began = time.monotonic()
    with pytest.raises(CommandError, match="still PENDING after 1 s") as raised:
        tc("task", "wait", run.task_id, "--timeout", "1", stderr=err)
    assert raised.value.returncode == 1 and time.monotonic() - began < 5
    assert "[###############...............]  50.0%  2/4" in err.getvalue() and "half way" in err.getvalue()
    quiet = io.StringIO()
    with pytest.raises(CommandError, match="still PENDING"):
        tc("task", "wait", run.task_id, "--timeout", "0.5", "--no-progress", stderr=quiet)
    assert quiet.getvalue() == ""


def test_list_reads_a_page_in_a_fixed_number_of_queries(django_assert_max_num_queries):
    original = recorded_run("orig")
    for n in range(30):
        recorded_run(f"q-{n}", retry_of=original)
    with django_assert_max_num_queries(3):
        page = tc_json("task", "list", "--limit", "25")
    assert len(page["runs"]) == 25 and {r["retry_of"] for r in page["runs"]} == {"orig"}


def test_audit_entries_outside_the_command_line_carry_no_source(redis_server):
    run_launch(task_name="examples.add", args=[1, 2])
    assert "source" not in AuditEntry.objects.get().detail


@pytest.mark.parametrize("frozen", [False, True], ids=["stopped", "frozen"])
def test_cancel_with_the_broker_down_fails_within_two_seconds_and_changes_nothing(redis_server, tmp_path, frozen):
    run = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    with broker_down(tmp_path, redis_server, frozen=frozen):
        began = time.monotonic()
        tc_fails("task", "cancel", run.task_id, code=1, match="broker")
        elapsed = time.monotonic() - began
        with pytest.raises(CommandError, match="broker"):
            tc("task", "create", "examples.add", "--args", "[1, 2]")
        elapsed_launch = time.monotonic() - began - elapsed
    assert elapsed < 2 and elapsed_launch < 2, (elapsed, elapsed_launch)
    assert Run.objects.get(pk=run.pk).cancelled_at is None and Run.objects.count() == 1


def test_list_of_filters_sharing_no_index_says_the_walk_stopped_and_pages_on(viewer, settings):
    """Queue and worker share no index: the list looks at a bounded number of runs and says so."""
    settings.TASKCENTER_HISTORY_SCAN_LIMIT = 100
    now = timezone.now()
    Run.objects.bulk_create(
        [Run(task_result_id=f"w-{n}", task_name="examples.add", queue="high", worker="w1@host",
             created_at=now - timedelta(seconds=n)) for n in range(150)]
        + [Run(task_result_id="match", task_name="examples.add", queue="low", worker="w1@host",
               created_at=now - timedelta(seconds=500))]
    )  # fmt: skip
    first = tc_json("task", "list", "--queue", "low", "--worker", "w1@host")
    assert first["runs"] == [] and first["scan_limited"] is True and first["next_before"] is not None
    text = tc("task", "list", "--queue", "low", "--worker", "w1@host", "--user", "viewer")
    assert "Looked at 100 runs and found 0 matching every filter" in text
    assert f"More: --before {first['next_before']}" in text
    more = tc_json("task", "list", "--queue", "low", "--worker", "w1@host", "--before", str(first["next_before"]))
    assert [r["task_id"] for r in more["runs"]] == ["match"] and more["scan_limited"] is False
    assert more["next_before"] is None
