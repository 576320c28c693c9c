"""``manage.py tc`` end to end: a real worker runs what ``tc task create`` sends; ``tc task wait`` and
``tc task info`` see it finish; and the real command line's exit codes and help."""

import io
import json
import signal
import subprocess
import sys
import time

import pytest
from django.core.management.base import CommandError

from tests.cli_helpers import command_line, tc, tc_json
from tests.conftest import ROOT, _die_with_parent, process_env, wait_for


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_create_wait_and_info_with_a_real_worker(celery_worker):
    task_id = tc("task", "create", "examples.add", "--args", "[20, 22]").strip()
    assert tc("task", "wait", task_id, "--timeout", "60") == f"{task_id} SUCCESS: 42\n"
    info = tc_json("task", "info", task_id)
    assert info["state"] == "SUCCESS" and info["result"] == "42" and info["worker"] == celery_worker.hostname
    assert info["started_at"][-6] in "+-" and info["duration_seconds"] >= 0
    assert info["attempts"] == [] or info["attempts"][0]["worker"] == celery_worker.hostname

    failing = tc("task", "create", "examples.fail", "--kwargs", '{"message": "disk full"}').strip()
    with pytest.raises(CommandError, match="finished FAILURE") as raised:
        tc("task", "wait", failing, "--timeout", "60")
    assert raised.value.returncode == 1
    assert "disk full" in tc_json("task", "info", failing)["result"]


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_wait_draws_the_progress_of_a_task_that_reports_it_and_monitor_progress_shows_it(celery_worker):
    created = tc_json(
        "task", "create", "examples.process_items", "--kwargs", '{"items": 6, "seconds_per_item": 0.5}',
        "--queue", "default",
    )  # fmt: skip
    task_id = created["task_id"]

    def shown():
        frame = tc_json("monitor", "progress", "--once")
        rows = [row for row in frame["running"] if row["task_id"] == task_id and row["progress"]]
        return rows[0] if rows else None

    row = wait_for(shown, timeout=60, interval=0.3, message="the running task's progress in monitor progress")
    assert row["task"] == "examples.process_items" and row["progress"]["total"] == 6
    err = io.StringIO()
    assert tc("task", "wait", task_id, "--timeout", "90", stderr=err).endswith("SUCCESS: " + tc_json(
        "task", "info", task_id)["result"] + "\n")  # fmt: skip
    bars = err.getvalue().splitlines()
    assert bars and all(line.startswith("[") and "/6" in line for line in bars)
    assert bars[-1].startswith("[" + "#" * 30 + "] 100.0%  6/6")


@pytest.mark.slow
def test_the_real_command_line_exit_codes_help_and_a_down_broker(tmp_path):
    manage = command_line(tmp_path)
    migrated = manage("migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr

    helped = manage("tc", "task", "create", "--help")
    assert helped.returncode == 0 and "examples:\n  manage.py tc task create examples.add" in helped.stdout
    assert "examples:" in manage("tc", "--help").stdout

    listed = manage("tc", "task", "list", "--json")
    assert listed.returncode == 0 and json.loads(listed.stdout) == {
        "runs": [],
        "next_before": None,
        "scan_limited": False,
    }

    bad_json = manage("tc", "task", "create", "examples.add", "--args", "[1,")
    assert bad_json.returncode == 2 and "--args is not valid JSON" in bad_json.stderr
    bad_choice = manage("tc", "task", "list", "--state", "SLEEPING")
    assert bad_choice.returncode == 2 and "invalid choice" in bad_choice.stderr
    unknown = manage("tc", "task", "info", "no-such-id")
    assert unknown.returncode == 2 and "No run with task id 'no-such-id'" in unknown.stderr
    unknown_task = manage("tc", "task", "create", "examples.nope")
    assert unknown_task.returncode == 2 and "No launchable task" in unknown_task.stderr

    script = (
        "from django.contrib.auth.models import Permission, User; "
        "u = User.objects.create_user('viewer', is_staff=True); "
        "u.user_permissions.add(Permission.objects.get(codename='view_run'))"
    )
    assert manage("shell", "-c", script).returncode == 0
    refused = manage("tc", "task", "create", "examples.add", "--args", "[1, 2]", "--user", "viewer")
    assert refused.returncode == 1 and "You may not launch 'examples.add'" in refused.stderr
    assert manage("tc", "schedule", "list", "--user", "viewer").returncode == 0

    # No Redis runs for this state folder: the broker is down.
    began = time.monotonic()
    down = manage("tc", "task", "create", "examples.add", "--args", "[1, 2]")
    assert down.returncode == 1 and "broker (Redis) is not reachable" in down.stderr
    status = manage("tc", "status", "--json")
    assert status.returncode == 1 and json.loads(status.stdout)["status"] == "fail"
    assert time.monotonic() - began < 30  # two process starts; each command gives up within 2 s


@pytest.mark.django_db(transaction=True)
def test_monitor_progress_refreshes_until_interrupted(redis_server):
    """Live mode in a real process: a JSON line per frame, and Ctrl-C (SIGINT) ends it cleanly."""
    process = subprocess.Popen(
        [sys.executable, "manage.py", "tc", "monitor", "progress", "--json", "--interval", "0.2"],
        cwd=ROOT, env=process_env(redis_server, LOG_LEVEL="WARNING"), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, preexec_fn=_die_with_parent,
    )  # fmt: skip
    try:
        frames = [json.loads(process.stdout.readline()) for _ in range(3)]
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=20) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert all(frame["running"] == [] for frame in frames)
    assert frames[0]["at"] <= frames[1]["at"] <= frames[2]["at"]
