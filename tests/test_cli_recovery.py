"""``manage.py tc recovery``: checkpoints, resume and apply, with the run page's permission and audit."""

import pytest

from taskcenter.models import AuditEntry, Checkpoint, RecoveryAction, Run
from tests.cli_helpers import make_user, tc, tc_fails, tc_json
from tests.test_recovery_strategies import checkpoint, failed_run

pytestmark = pytest.mark.django_db


def test_checkpoints_in_text_and_json():
    failed_run("rc-1")
    checkpoint("rc-1", done=1)
    checkpoint("rc-1", done=2)
    text = tc("recovery", "checkpoints", "rc-1")
    assert text.splitlines()[0].startswith("#1") and "2 of 3" in text and text.count(" ok") == 2
    Checkpoint.objects.filter(progress="1 of 3").update(state={"done": 99})
    document = tc_json("recovery", "checkpoints", "rc-1")
    assert [c["valid"] for c in document["checkpoints"]] == [True, False]
    assert document["checkpoints"][0]["created_at"][-6] in "+-"
    assert tc("recovery", "checkpoints", failed_run("rc-0").task_id) == "No checkpoints for rc-0.\n"
    tc_fails("recovery", "checkpoints", "ghost", code=2, match="No run with task id 'ghost'")


def test_resume_launches_the_run_again_as_the_user(redis_server, django_user_model):
    ops = make_user(django_user_model, "ops", "view_run", "control_run", "launch_any_task")
    run = failed_run("rc-2")
    checkpoint("rc-2", done=2)
    document = tc_json("recovery", "resume", run.task_id, "--user", "ops")
    assert document["strategy"] == "RESUME" and document["new_task_id"]
    new_run = Run.objects.get(task_result_id=document["new_task_id"])
    assert new_run.retry_of == run and new_run.source == "cli" and new_run.launched_by == ops
    assert AuditEntry.objects.get(action="recovery_apply").actor == ops


def test_apply_and_resume_are_refused_without_control_and_launch_permission(redis_server, django_user_model):
    make_user(django_user_model, "controller", "view_run", "control_run")  # may not launch the task
    run = failed_run("rc-3")
    for args in (["resume", run.task_id], ["apply", run.task_id, "--strategy", "SKIP"]):
        tc_fails("recovery", *args, "--user", "controller", code=1, match="You may not apply a strategy")
    assert not RecoveryAction.objects.exists() and Run.objects.count() == 1


def test_apply_reports_a_run_that_is_not_recoverable_and_a_bad_strategy():
    assert "SKIP applied to rc-4" in tc("recovery", "apply", failed_run("rc-4").task_id, "--strategy", "skip")
    running = failed_run("rc-5", status="STARTED")
    tc_fails("recovery", "apply", running.task_id, "--strategy", "RETRY", code=1, match="only")
    tc_fails("recovery", "apply", "rc-4", "--strategy", "LATER", code=1, match="invalid choice")
