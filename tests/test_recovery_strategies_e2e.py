"""The long example task, killed at item 11 of 30 (SIGKILL of its worker) and recovered with RESUME,
goes on at item 11, not 1: real worker processes, a real broker, the command line."""

import json
import os
import signal

import pytest
from django.core.management import call_command

from config.celery import app as celery_app
from taskcenter.models import Checkpoint, RecoveryAction, Run
from taskcenter.services.launch import run_launch
from tests.conftest import CeleryProcess, process_env, wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def start_worker(private_redis, name: str) -> CeleryProcess:
    """A worker of its own on the module's broker, running tasks in its main process (solo pool)."""
    hostname = f"{name}-{os.getpid()}@localhost"
    worker = CeleryProcess(
        name,
        ["worker", "--loglevel=INFO", "--pool=solo", "-Q", "low", f"--hostname={hostname}",
         "--without-mingle", "--without-gossip"],
        process_env(private_redis, TASKCENTER_CHECKPOINT_INTERVAL="0"),
    )  # fmt: skip

    def answers():
        if worker.process.poll() is not None:
            raise AssertionError(f"Worker exited early:\n{worker.log()[-3000:]}")
        return celery_app.control.ping(destination=[hostname], timeout=0.5)

    wait_for(answers, timeout=90, message=f"worker {hostname} to answer a ping")
    return worker


def last_done(task_id: str) -> int:
    state = Checkpoint.objects.filter(task_id=task_id).order_by("-id").values_list("state", flat=True).first()
    return (state or {}).get("done", 0)


def test_a_run_killed_at_item_11_resumes_at_item_11(private_redis, private_broker):
    first_worker = start_worker(private_redis, "killed-worker")
    second_worker = None
    try:
        run = run_launch(task_name="examples.process_items", kwargs={"items": 30, "seconds_per_item": 1.0})
        wait_for(lambda: last_done(run.task_id) >= 10, timeout=90, interval=0.02, message="item 10 to be saved")
        os.kill(first_worker.process.pid, signal.SIGKILL)  # during item 11
        first_worker.process.wait(timeout=10)
        assert last_done(run.task_id) == 10
        assert Run.objects.get(pk=run.pk).state == "STARTED"  # its worker is gone; nothing will finish it

        call_command("recovery", "apply", run.task_id, "--strategy", "RESUME", "--force")
        action = RecoveryAction.objects.get(task_id=run.task_id)
        resumed = Run.objects.get(task_result_id=action.new_task_id)
        assert resumed.retry_of_id == run.pk and resumed.source == "cli"

        second_worker = start_worker(private_redis, "resuming-worker")
        result = wait_for_state(resumed, "SUCCESS", "FAILURE", timeout=120)
        assert result.status == "SUCCESS", result.traceback
        assert json.loads(result.result) == {"processed": 30, "first_item": 11}
        states = list(Checkpoint.objects.filter(task_id=resumed.task_id).order_by("id").values_list("state", flat=True))
        assert states[0] == {"done": 11} and states[-1] == {"done": 30}
        assert "Resuming at item 11 of 30" in second_worker.log()
    finally:
        first_worker.stop()
        if second_worker is not None:
            second_worker.stop()


def test_a_final_failure_on_a_real_worker_gets_the_operators_strategy_until_the_automatic_limit(celery_worker):
    from taskcenter.services.recovery import recovery_policy_set

    recovery_policy_set(task_name="examples.fail", strategy="RETRY", actor=None)
    run = run_launch(task_name="examples.fail", kwargs={"message": "fails every time"})
    manual = wait_for(
        lambda: RecoveryAction.objects.filter(task_name="examples.fail", strategy="MANUAL").first(),
        timeout=90,
        message="the lineage to be left for an operator",
    )
    lineage = list(RecoveryAction.objects.filter(task_name="examples.fail").order_by("id"))
    assert [a.strategy for a in lineage] == ["RETRY", "RETRY", "RETRY", "MANUAL"]  # TASKCENTER_RECOVERY_MAX_AUTOMATIC
    assert lineage[0].task_id == run.task_id and all(a.rule.startswith("operator override") for a in lineage)
    for earlier, later in zip(lineage, lineage[1:], strict=False):
        assert Run.objects.get(task_result_id=later.task_id).retry_of.task_id == earlier.task_id
        assert earlier.new_task_id == later.task_id
    assert manual.new_task_id == "" and "limit of 3 reached" in manual.rule
