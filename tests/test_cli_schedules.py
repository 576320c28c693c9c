"""``manage.py tc schedule``: the schedule command under the one entry point, with --json, --user and exit codes."""

import pytest
from django_celery_beat.models import PeriodicTask

from taskcenter.models import AuditEntry, Run
from tests.cli_helpers import make_user, tc, tc_fails, tc_json

pytestmark = pytest.mark.django_db

CRON = ["schedule", "add", "nightly", "examples.add", "-t", "cron", "-c", "0 2 * * *", "--args", "[1, 2]"]


def test_add_list_show_enable_disable_and_remove_in_text_and_json(redis_server):
    assert "Schedule 'nightly' created: examples.add" in tc(*CRON)
    assert tc_json(*CRON)["status"] == "unchanged"
    listed = tc_json("schedule", "list")["schedules"]
    assert [(s["name"], s["enabled"]) for s in listed] == [("nightly", True)]
    assert listed[0]["next_run"][-6] in "+-"
    assert tc("schedule", "list").splitlines()[0].split()[:3] == ["NAME", "TASK", "SCHEDULE"]
    shown = tc_json("schedule", "show", "nightly")
    assert shown["schedule"]["cron"] == "0 2 * * *" and len(shown["next_runs"]) == 10
    assert "next runs (" in tc("schedule", "show", "nightly")
    assert tc_json("schedule", "disable", "nightly") == {"status": "disabled", "name": "nightly", "enabled": False}
    assert tc("schedule", "enable", "nightly") == "Schedule 'nightly' enabled.\n"
    sent = tc_json("schedule", "run", "nightly")
    run = Run.objects.get(task_result_id=sent["task_id"])
    assert run.periodic_task_name == "nightly" and run.source == "cli"
    assert tc("schedule", "remove", "nightly") == "Schedule 'nightly' removed.\n"
    assert tc_json("schedule", "remove", "nightly") == {"status": "not_found", "name": "nightly"}


def test_every_write_is_refused_to_a_user_without_the_rights_and_nothing_changes(redis_server, django_user_model):
    make_user(django_user_model, "viewer", "view_run")
    tc(*CRON)
    for args in (
        CRON[:2] + ["other", *CRON[3:]],
        ["schedule", "disable", "nightly"],
        ["schedule", "run", "nightly"],
        ["schedule", "remove", "nightly"],
        ["schedule", "remove", "missing"],
    ):
        tc_fails(*args, "--user", "viewer", code=1, match="You may not")
    assert list(PeriodicTask.objects.values_list("name", "enabled")) == [("nightly", True)]
    assert not Run.objects.exists() and not AuditEntry.objects.filter(actor__username="viewer").exists()
    assert tc_json("schedule", "list", "--user", "viewer")["schedules"][0]["name"] == "nightly"


def test_a_user_with_the_rights_is_the_actor_in_the_audit_trail(redis_server, django_user_model):
    planner = make_user(
        django_user_model, "planner", "view_run", "launch_any_task", "add_periodictask", "change_periodictask",
        "delete_periodictask",
    )  # fmt: skip
    tc(*CRON, "--user", "planner")
    tc("schedule", "disable", "nightly", "--user", "planner")
    tc("schedule", "remove", "nightly", "--user", "planner")
    actions = list(AuditEntry.objects.filter(actor=planner).order_by("id").values_list("action", flat=True))
    assert actions == ["schedule_create", "schedule_disable", "schedule_delete"]
    assert {entry.detail.get("source") for entry in AuditEntry.objects.all()} == {"cli"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "examples.add", "-t", "cron", "-c", "61 2 * * *", "--args", "[1, 2]"], "Not a valid crontab"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "--args", "[1,"], "--args is not valid JSON"),
        (["add", "x", "examples.nope", "-t", "interval", "--every", "1"], "No launchable task"),
        (["enable", "ghost"], "No schedule named 'ghost'"),
        (["show", "ghost"], "No schedule named 'ghost'"),
        (["list", "--user", "ghost"], "No user named 'ghost'"),
    ],
)
def test_bad_input_is_a_usage_error(args, message):
    tc_fails("schedule", *args, code=2, match=message.replace("[", r"\["))
    assert not PeriodicTask.objects.exists()
