"""Why the worker unit stops with ``KillMode=mixed``: systemd then sends SIGTERM to the Celery
parent alone, which waits for the running task (warm shutdown); with the default
``KillMode=control-group`` every process of the unit gets it, and the pool child running the
task dies at once (celery#4795). Both are reproduced here on a real worker in its own
process group, as systemd would start it.
"""

import os
import signal
import subprocess
import sys

import pytest
from django_celery_results.models import TaskResult

from taskcenter.services.launch import run_launch
from tests.conftest import LOG_DIR, ROOT, _die_with_parent, process_env, wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SLOW = {"items": 8, "seconds_per_item": 0.5}


@pytest.mark.parametrize("kill_mode", ["mixed", "control-group"])
def test_worker_stop_finishes_the_running_task_only_when_sigterm_reaches_the_parent_alone(
    kill_mode, private_broker, private_redis
):
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    hostname = f"stop-{kill_mode}@localhost"
    with open(LOG_DIR / f"worker-stop-{kill_mode}.log", "wb") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "-c", "1", "-Q", "low",
             f"--hostname={hostname}", "--without-mingle", "--without-gossip"],
            cwd=ROOT, env=process_env(private_redis), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,
        )  # fmt: skip
    try:
        from celery import current_app

        wait_for(lambda: current_app.control.ping(destination=[hostname], timeout=1), timeout=90, message="the worker")
        run = run_launch(task_name="examples.process_items", kwargs=SLOW, queue="low")
        wait_for_state(run, "STARTED", timeout=60)

        if kill_mode == "mixed":
            os.kill(worker.pid, signal.SIGTERM)  # what systemd does with KillMode=mixed
        else:
            os.killpg(worker.pid, signal.SIGTERM)  # KillMode=control-group: every process of the unit
        worker.wait(timeout=60)

        result = TaskResult.objects.get(task_id=run.task_id)
        if kill_mode == "mixed":
            assert result.status == "SUCCESS", result.status  # the task ran to its end before the worker left
        else:
            assert result.status != "SUCCESS", result.status  # the pool child died with the task
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
