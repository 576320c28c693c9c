"""manage.py schedule: add (idempotent), list, show, enable, disable, run and remove periodic tasks."""

import io
import json
import os
import subprocess
import sys

import pytest
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import CommandError
from django_celery_beat.models import PeriodicTask, PeriodicTasks

from taskcenter.models import AuditEntry, Run
from tests.conftest import ROOT, broker_down

CRON = ["add", "daily_sync", "examples.add", "-t", "cron", "-c", "0 2 * * *", "--kwargs", '{"x": 1, "y": 2}']


def schedule(*args) -> str:
    """Run ``manage.py schedule`` in this process; return what it wrote to stdout."""
    out = io.StringIO()
    call_command("schedule", *args, stdout=out)
    return out.getvalue()


def schedule_json(*args) -> dict:
    return json.loads(schedule(*args, "--json"))


# --- add ----------------------------------------------------------------------------


def test_add_creates_a_crontab_schedule_with_its_options_and_audit(db):
    out = schedule(*CRON, "--queue", "low", "--priority", "urgent", "--expire-seconds", "300", "--tz", "Europe/Berlin",
                   "--misfire", "skip", "--grace", "60", "--jitter", "5", "--max-instances", "1",
                   "--description", "nightly")  # fmt: skip
    assert "Schedule 'daily_sync' created: examples.add, At 02:00 AM (Europe/Berlin)" in out
    task = PeriodicTask.objects.get(name="daily_sync")
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("0", "2", "Europe/Berlin")
    assert json.loads(task.kwargs) == {"x": 1, "y": 2} and task.queue == "low" and task.priority == 0
    assert task.expire_seconds == 300 and task.enabled and task.description == "nightly"
    policy = task.taskcenter_policy
    assert (policy.misfire, policy.grace_seconds, policy.jitter_seconds, policy.max_instances) == ("skip", 60, 5, 1)
    assert AuditEntry.objects.get(action="schedule_create").actor is None


def test_adding_the_same_definition_again_changes_nothing(db):
    schedule(*CRON)
    before = PeriodicTasks.last_change()
    out = schedule(*CRON)
    assert "Schedule 'daily_sync' unchanged" in out
    assert PeriodicTask.objects.filter(name="daily_sync").count() == 1
    assert AuditEntry.objects.filter(action__startswith="schedule_").count() == 1  # only the create
    assert PeriodicTasks.last_change() == before  # beat is not told to reload


def test_adding_a_changed_definition_updates_the_schedule_in_place(db):
    schedule(*CRON)
    pk = PeriodicTask.objects.get().pk
    document = schedule_json(*CRON[:6], "30 3 * * 1-5", "--kwargs", '{"x": 1, "y": 2}')
    assert document["status"] == "updated"
    task = PeriodicTask.objects.get()
    assert task.pk == pk and (task.crontab.minute, task.crontab.hour, task.crontab.day_of_week) == ("30", "3", "1-5")
    assert AuditEntry.objects.filter(action="schedule_update", target="daily_sync").exists()
    # Options count as the definition too: a new queue is an update, repeating it is not.
    assert "updated" in schedule(*CRON[:6], "30 3 * * 1-5", "--kwargs", '{"x": 1, "y": 2}', "--queue", "low")
    assert "unchanged" in schedule(*CRON[:6], "30 3 * * 1-5", "--kwargs", '{"x": 1, "y": 2}', "--queue", "low")


def test_a_changed_schedule_kind_replaces_the_old_schedule(db):
    schedule(*CRON)
    assert "updated" in schedule("add", "daily_sync", "examples.add", "-t", "interval", "--every", "10", "--period",
                                 "seconds", "--args", "[1, 2]")  # fmt: skip
    task = PeriodicTask.objects.get()
    assert task.crontab is None and (task.interval.every, task.interval.period) == (10, "seconds")


@pytest.mark.parametrize(
    ("options", "check"),
    [
        (["-t", "interval", "--every", "5", "--period", "minutes"], lambda t: t.interval.every == 5),
        (["-t", "crontab", "-c", "*/15 * * * *"], lambda t: t.crontab.minute == "*/15"),
        (["-t", "clocked", "--at", "2099-01-01T10:00", "--tz", "UTC"],
         lambda t: t.one_off and t.clocked.clocked_time.isoformat() == "2099-01-01T10:00:00+00:00"),
        (["-t", "solar", "--event", "sunset", "--lat", "31.23", "--lon", "121.47"],
         lambda t: t.solar.event == "sunset" and float(t.solar.latitude) == 31.23),
    ],
)  # fmt: skip
def test_every_kind_can_be_added_and_repeating_it_is_unchanged(db, options, check):
    args = ["add", "job", "examples.add", *options, "--args", "[1, 2]"]
    assert schedule_json(*args)["status"] == "created"
    assert check(PeriodicTask.objects.get(name="job"))
    assert schedule_json(*args)["status"] == "unchanged"


def test_add_disabled_then_add_without_the_flag_enables(db):
    schedule(*CRON, "--disabled")
    assert not PeriodicTask.objects.get().enabled
    assert "updated" in schedule(*CRON)
    assert PeriodicTask.objects.get().enabled


# --- list, show -----------------------------------------------------------------


def test_list_shows_name_task_schedule_enabled_last_and_next_run(db):
    schedule(*CRON)
    schedule("add", "tick", "examples.add", "-t", "interval", "--every", "30", "--period", "seconds",
             "--args", "[1, 2]", "--disabled")  # fmt: skip
    PeriodicTask.objects.filter(name="daily_sync").update(last_run_at=None)  # as disabling leaves it
    Run.objects.create(task_result_id="t-1", task_name="examples.add", queue="high", periodic_task_name="daily_sync")
    lines = schedule("list").splitlines()
    assert lines[0].split() == ["NAME", "TASK", "SCHEDULE", "ENABLED", "LAST", "RUN", "NEXT", "RUN"]
    daily = next(line for line in lines if line.startswith("daily_sync"))
    assert "At 02:00 AM (Asia/Shanghai)" in daily and " yes " in daily and "(PENDING)" in daily
    assert "02:00:00+08:00" in daily  # next run, with the schedule's UTC offset
    tick = next(line for line in lines if line.startswith("tick"))
    assert "every 30 seconds" in tick and " no " in tick

    rows = {row["name"]: row for row in schedule_json("list")["schedules"]}
    assert rows["daily_sync"]["enabled"] is True and rows["daily_sync"]["last_task_id"] == "t-1"
    assert rows["daily_sync"]["next_run"].endswith("T02:00:00+08:00") and rows["daily_sync"]["last_run"]
    assert rows["tick"] == rows["tick"] | {"enabled": False, "next_run": None, "last_run": None}


def test_list_without_schedules(db):
    assert schedule("list") == "No schedules.\n"
    assert schedule_json("list") == {"schedules": []}


def test_show_gives_the_definition_and_ten_next_runs_with_dst_flags(db):
    # 02:30 on Sundays in March, Berlin: the last Sunday of March has no 02:30 (clocks jump to 03:00).
    schedule(
        "add", "march", "examples.add", "-t", "cron", "-c", "30 2 * 3 0", "--tz", "Europe/Berlin", "--args", "[1, 2]"
    )
    out = schedule("show", "march")
    assert "cron:            30 2 * 3 0" in out and "timezone:        Europe/Berlin" in out
    assert "next runs (Europe/Berlin):" in out
    fire_lines = [line for line in out.splitlines() if line.startswith("  20")]
    assert len(fire_lines) == 10
    assert any(line.endswith("03:00:00 UTC+02:00 Europe/Berlin  [shifted]") for line in fire_lines), fire_lines

    document = schedule_json("show", "march")
    assert document["schedule"]["cron"] == "30 2 * 3 0" and document["schedule"]["args"] == [1, 2]
    assert len(document["next_runs"]) == 10
    assert {"shifted"} <= {fire["note"] for fire in document["next_runs"]}


def test_show_of_a_disabled_schedule_has_no_next_runs(db):
    schedule(*CRON, "--disabled")
    assert "next runs:       none (disabled)" in schedule("show", "daily_sync")
    assert schedule_json("show", "daily_sync")["next_runs"] == []


# --- enable, disable, remove, run -------------------------------------------------


def test_disable_and_enable_change_the_schedule_once_and_tell_beat(db, django_user_model):
    ops = django_user_model.objects.create_user(username="ops", password="pw-ops-1234", is_staff=True)
    for codename in ("view_run", "change_periodictask", "launch_task:examples.add"):
        ops.user_permissions.add(Permission.objects.get(codename=codename))
    schedule(*CRON)
    before = PeriodicTasks.last_change()
    assert schedule("disable", "daily_sync", "--user", "ops") == "Schedule 'daily_sync' disabled.\n"
    assert not PeriodicTask.objects.get().enabled and PeriodicTasks.last_change() != before
    assert schedule("disable", "daily_sync") == "Schedule 'daily_sync' was already disabled.\n"
    assert AuditEntry.objects.get(action="schedule_disable").actor.username == "ops"
    assert schedule_json("enable", "daily_sync") == {"status": "enabled", "name": "daily_sync", "enabled": True}
    assert PeriodicTask.objects.get().enabled
    assert schedule_json("enable", "daily_sync")["status"] == "unchanged"


def test_a_user_without_the_rights_is_refused_and_nothing_changes(db, django_user_model):
    clerk = django_user_model.objects.create_user(username="clerk", password="pw-clerk-1234", is_staff=True)
    for codename in ("view_run", "change_periodictask"):  # no right to launch examples.add
        clerk.user_permissions.add(Permission.objects.get(codename=codename))
    schedule(*CRON)
    changed = [*CRON[:-1], '{"x": 5, "y": 5}']
    for args in (["disable", "daily_sync"], ["run", "daily_sync"], ["remove", "daily_sync"], changed):
        with pytest.raises(CommandError, match="You may not"):
            schedule(*args, "--user", "clerk")
    assert PeriodicTask.objects.get(name="daily_sync").enabled
    assert not Run.objects.exists()
    assert not AuditEntry.objects.filter(actor__username="clerk").exists()


def test_remove_deletes_and_is_idempotent(db):
    schedule(*CRON)
    assert schedule("remove", "daily_sync") == "Schedule 'daily_sync' removed.\n"
    assert not PeriodicTask.objects.exists()
    assert AuditEntry.objects.filter(action="schedule_delete", target="daily_sync").exists()
    assert schedule("remove", "daily_sync") == "Schedule 'daily_sync' not found, nothing removed.\n"
    assert schedule_json("remove", "daily_sync") == {"status": "not_found", "name": "daily_sync"}


def test_run_sends_the_task_now_through_the_launch_service(db, redis_server):
    schedule(*CRON, "--queue", "low", "--priority", "LOW")
    out = schedule("run", "daily_sync")
    run = Run.objects.get()
    assert out.strip().endswith(f"task id {run.task_id}")
    assert (run.task_name, run.queue, run.priority, run.kwargs) == ("examples.add", "low", "LOW", {"x": 1, "y": 2})
    assert run.periodic_task_name == "daily_sync" and run.source == "cli"
    assert AuditEntry.objects.filter(action="schedule_run_now", task_id=run.task_id).exists()
    document = schedule_json("run", "daily_sync")
    assert Run.objects.filter(task_result_id=document["task_id"]).exists()
    assert document["queue"] == "low" and document["priority"] == "LOW"


def test_run_with_the_broker_down_fails_and_records_no_run(db, redis_server, tmp_path):
    schedule(*CRON)
    with broker_down(tmp_path, redis_server), pytest.raises(CommandError, match="broker"):
        schedule("run", "daily_sync")
    assert not Run.objects.exists()


# --- errors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["add", "x", "examples.add", "-t", "cron", "-c", "61 2 * * *", "--args", "[1, 2]"], "Not a valid crontab"),
        (["add", "x", "examples.add", "-t", "cron", "-c", "0 2 * *", "--args", "[1, 2]"], "five fields"),
        (["add", "x", "examples.add", "-t", "cron", "-c", "0 2 * * *", "--tz", "Mars/Base", "--args", "[1, 2]"],
         "Unknown time zone"),
        (["add", "x", "examples.nope", "-t", "interval", "--every", "1"], "No launchable task is named"),
        (["add", "x", "celery.backend_cleanup", "-t", "interval", "--every", "1"],
         "Only catalogued tasks can be scheduled"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "--args", "[1,"], "--args is not valid JSON"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "--kwargs", "[1]"], "must be a JSON object"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "--args", "[1]"], "Arguments do not fit"),
        (["add", "x", "examples.add", "-t", "interval", "--args", "[1, 2]"], "whole number of at least 1"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "--args", "[1, 2]", "--queue", "nope"],
         "Unknown queue"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "-c", "* * * * *"], "does not apply"),
        (["add", "x", "examples.add", "-t", "clocked", "--at", "2001-01-01T00:00", "--args", "[1, 2]"],
         "must be in the future"),
        (["add", "x", "examples.add", "-t", "clocked", "--at", "tomorrow", "--args", "[1, 2]"], "not an ISO date"),
        (["add", "x", "examples.add", "-t", "solar", "--event", "noon", "--lat", "95", "--lon", "0"],
         "Unknown solar event"),
        (["add", "x", "examples.add", "-t", "weekly"], "invalid choice"),
        (["add", "x", "examples.add", "-t", "interval", "--every", "1", "--args", "[1, 2]", "--user", "ghost"],
         "No user named 'ghost'"),
        (["enable", "ghost"], "No schedule named 'ghost'"),
        (["disable", "ghost"], "No schedule named 'ghost'"),
        (["run", "ghost"], "No schedule named 'ghost'"),
        (["show", "ghost", "--json"], "No schedule named 'ghost'"),
    ],
)  # fmt: skip
def test_errors_raise_command_error_with_the_reason_and_write_nothing(db, args, message):
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace("[", r"\[")):
        schedule(*args)
    assert not PeriodicTask.objects.exists()
    assert not AuditEntry.objects.exists()


def test_an_invalid_change_leaves_the_existing_schedule_as_it_was(db):
    schedule(*CRON)
    with pytest.raises(CommandError, match="Not a valid crontab"):
        schedule(*CRON[:6], "0 25 * * *", "--kwargs", '{"x": 1, "y": 2}')
    task = PeriodicTask.objects.get()
    assert task.crontab.hour == "2"
    assert not AuditEntry.objects.filter(action="schedule_update").exists()


# --- a real command line --------------------------------------------------------------


@pytest.mark.slow
def test_command_line_exit_codes(tmp_path):
    """``python manage.py schedule`` in a process of its own, on a freshly migrated database."""
    hidden = ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE")
    env = {key: value for key, value in os.environ.items() if key not in hidden}
    env.update(DEBUG="true", TASKCENTER_STATE_DIR=str(tmp_path / "state"), LOG_LEVEL="WARNING")

    def manage(*args):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
        )

    migrated = manage("migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr

    created = manage("schedule", *CRON)
    assert created.returncode == 0, created.stderr
    assert "Schedule 'daily_sync' created" in created.stdout
    again = manage("schedule", *CRON, "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "unchanged"

    bad_cron = manage("schedule", "add", "other", "examples.add", "-t", "cron", "-c", "0 99 * * *")
    assert bad_cron.returncode != 0 and "Not a valid crontab" in bad_cron.stderr
    uncatalogued = manage("schedule", "add", "other", "os.system", "-t", "interval", "--every", "1")
    assert uncatalogued.returncode != 0 and "Only catalogued tasks can be scheduled" in uncatalogued.stderr
    unknown = manage("schedule", "enable", "ghost")
    assert unknown.returncode != 0 and "No schedule named 'ghost'" in unknown.stderr
    bad_kind = manage("schedule", "add", "other", "examples.add", "-t", "weekly")
    assert bad_kind.returncode != 0 and "invalid choice" in bad_kind.stderr

    listed = manage("schedule", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [row["name"] for row in json.loads(listed.stdout)["schedules"]] == ["daily_sync"]
    assert manage("schedule", "disable", "daily_sync").returncode == 0
    removed = manage("schedule", "remove", "daily_sync")
    assert removed.returncode == 0 and "removed" in removed.stdout
    missing = manage("schedule", "remove", "daily_sync")
    assert missing.returncode == 0 and "not found, nothing removed" in missing.stdout
