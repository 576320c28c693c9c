"""Orphaned runs follow their task type's recovery strategy, end to end: a worker SIGKILLed mid-task, the real
monitor finds its run orphaned and applies SKIP, MANUAL, RESTART or RESUME; a second worker is there to run
whatever is given back. Real processes on a Redis of the module's own."""

import json
import time
import uuid

import pytest
from celery import current_app
from django.urls import reverse
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Checkpoint, FailureGroup, RecoveryAction, Run
from taskcenter.services.launch import run_launch
from taskcenter.services.recovery import recovery_policy_set
from tests.conftest import CeleryProcess, process_env, wait_for
from tests.test_recovery_e2e import kill_whole_worker, start_monitor, stop_all

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

TASK = "examples.process_items"


def start_worker(redis, name: str) -> CeleryProcess:
    """A worker with one pool process, checkpoints written at once.

    Not the solo pool: a solo worker busy with a task neither sends heartbeats nor answers the monitor.
    """
    hostname = f"{name}-{uuid.uuid4().hex[:6]}@localhost"
    worker = CeleryProcess(
        f"orphans-{hostname}",
        ["worker", "--loglevel=INFO", "--concurrency=1", "-Q", "low", f"--hostname={hostname}",
         "--without-mingle", "--without-gossip"],
        process_env(redis, TASKCENTER_CHECKPOINT_INTERVAL="0"),
    )  # fmt: skip
    worker.hostname = hostname

    def answers():
        if worker.process.poll() is not None:
            raise AssertionError(f"Worker exited early:\n{worker.log()[-3000:]}")
        return current_app.control.ping(destination=[hostname], timeout=0.5)

    wait_for(answers, timeout=90, message=f"worker {hostname} to answer a ping")
    return worker


def last_done(task_id: str) -> int:
    state = Checkpoint.objects.filter(task_id=task_id).order_by("-id").values_list("state", flat=True).first()
    return (state or {}).get("done", 0)


def kill_mid_task(worker: CeleryProcess, task_id: str, *, after_item: int = 2) -> None:
    wait_for(lambda: last_done(task_id) >= after_item, timeout=90, interval=0.02, message=f"item {after_item} saved")
    kill_whole_worker(worker)


def ran_on(worker: CeleryProcess, task_id: str) -> bool:
    return f"[{task_id}]" in worker.log()


def test_a_skip_task_killed_mid_run_is_recorded_failed_and_never_runs_again(private_redis, private_broker):
    recovery_policy_set(task_name=TASK, strategy="SKIP", actor=None)
    doomed = start_worker(private_redis, "doomed")
    monitor = survivor = None
    try:
        monitor = start_monitor(private_redis)
        run = run_launch(task_name=TASK, kwargs={"items": 20, "seconds_per_item": 0.3})
        survivor = start_worker(private_redis, "survivor")
        kill_mid_task(doomed, run.task_id)

        action = wait_for(
            lambda: RecoveryAction.objects.filter(task_id=run.task_id).first(), timeout=60, message="the SKIP"
        )
        assert (action.strategy, action.rule, action.actor) == ("SKIP", "operator override", None)
        assert "not run again" in action.message
        result = TaskResult.objects.get(task_id=run.task_id)
        assert result.status == "FAILURE" and result.task_name == TASK
        assert f"worker {doomed.hostname} gone; skipped by strategy" in result.result
        recorded = wait_for(
            lambda: (r := Run.objects.get(pk=run.pk)).recorded_state == "FAILURE" and r.failure_fingerprint and r,
            timeout=30, message="the run recorded failed and grouped",
        )  # fmt: skip
        assert recorded.state == "FAILURE" and "WorkerLostError" in recorded.outcome
        assert recorded.attempts[-1]["worker"] == doomed.hostname and recorded.attempts[-1]["ended"] == "worker lost"
        assert FailureGroup.objects.get(fingerprint=recorded.failure_fingerprint).exception_type == "WorkerLostError"
        audit = AuditEntry.objects.get(action="run_recover", task_id=run.task_id)
        assert audit.detail["strategy"] == "SKIP" and audit.detail["removed"] is True

        time.sleep(3)  # several sweeps: nothing gives it back
        assert not private_broker.hlen("unacked")
        assert all(not private_broker.llen(key) for key in private_broker.keys("low*"))
        assert not ran_on(survivor, run.task_id)
        assert Run.objects.get(pk=run.pk).state == "FAILURE"
    finally:
        stop_all(survivor, monitor, doomed)


def test_a_manual_task_killed_mid_run_waits_for_an_operator_whose_retry_runs_it(
    private_redis, private_broker, staff_client
):
    recovery_policy_set(task_name=TASK, strategy="MANUAL", actor=None)
    doomed = start_worker(private_redis, "doomed")
    monitor = survivor = None
    try:
        monitor = start_monitor(private_redis)
        run = run_launch(task_name=TASK, kwargs={"items": 20, "seconds_per_item": 0.3})
        survivor = start_worker(private_redis, "survivor")
        kill_mid_task(doomed, run.task_id)

        action = wait_for(
            lambda: RecoveryAction.objects.filter(task_id=run.task_id).first(), timeout=60, message="the MANUAL"
        )
        assert action.strategy == "MANUAL" and action.rule == "operator override" and action.resolved_at is None
        assert TaskResult.objects.get(task_id=run.task_id).status == "FAILURE"
        page = staff_client.get(reverse("taskcenter:recovery")).content.decode()
        attention = page.split("Needing attention", 1)[1]
        assert run.task_id in attention
        time.sleep(3)
        assert not ran_on(survivor, run.task_id) and not private_broker.hlen("unacked")

        response = staff_client.post(reverse("taskcenter:run_recover", args=[run.task_id]), {"strategy": "RETRY"})
        retry = RecoveryAction.objects.get(task_id=run.task_id, strategy="RETRY")
        assert response.status_code == 302 and retry.actor == staff_client.user
        again = Run.objects.get(task_result_id=retry.new_task_id)
        assert again.retry_of_id == run.pk
        result = wait_for(
            lambda: TaskResult.objects.filter(task_id=again.task_id, status__in=["SUCCESS", "FAILURE"]).first(),
            timeout=90, message="the operator's retry to finish",
        )  # fmt: skip
        assert result.status == "SUCCESS", result.traceback
        assert result.worker == survivor.hostname
        assert RecoveryAction.objects.get(pk=action.pk).resolved_at is not None
        assert (
            run.task_id
            not in staff_client.get(reverse("taskcenter:recovery")).content.decode().split("Needing attention", 1)[1]
        )
    finally:
        stop_all(survivor, monitor, doomed)


def test_a_restart_task_killed_mid_run_loses_its_checkpoints_and_runs_again_from_item_1(private_redis, private_broker):
    recovery_policy_set(task_name=TASK, strategy="RESTART", actor=None)
    doomed = start_worker(private_redis, "doomed")
    monitor = survivor = None
    try:
        monitor = start_monitor(private_redis)
        run = run_launch(task_name=TASK, kwargs={"items": 20, "seconds_per_item": 0.3})
        survivor = start_worker(private_redis, "survivor")
        kill_mid_task(doomed, run.task_id, after_item=3)
        saved = Checkpoint.objects.filter(task_id=run.task_id).count()
        assert saved >= 3

        result = wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status__in=["SUCCESS", "FAILURE"]).first(),
            timeout=90, message="the same run to finish on the survivor",
        )  # fmt: skip
        assert result.status == "SUCCESS", result.traceback
        assert json.loads(result.result) == {"processed": 20, "first_item": 1}
        assert result.worker == survivor.hostname
        action = RecoveryAction.objects.get(task_id=run.task_id)
        assert action.strategy == "RESTART" and action.rule == "operator override"
        assert action.message.startswith(f"Worker {doomed.hostname} gone")
        assert f"{saved} checkpoint(s) discarded" in action.message
        states = list(Checkpoint.objects.filter(task_id=run.task_id).order_by("id").values_list("state", flat=True))
        assert states[0] == {"done": 1} and states[-1] == {"done": 20}  # only the second run's
    finally:
        stop_all(survivor, monitor, doomed)


def test_the_long_example_task_killed_at_item_11_resumes_at_item_11_by_itself(private_redis, private_broker):
    """RESUME is examples.process_items' strategy in code: the monitor gives the message back and the same
    run continues from its own last checkpoint."""
    doomed = start_worker(private_redis, "doomed")
    monitor = survivor = None
    try:
        monitor = start_monitor(private_redis)
        run = run_launch(task_name=TASK, kwargs={"items": 30, "seconds_per_item": 1.0})
        survivor = start_worker(private_redis, "survivor")
        kill_mid_task(doomed, run.task_id, after_item=10)  # during item 11
        assert last_done(run.task_id) == 10

        result = wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status__in=["SUCCESS", "FAILURE"]).first(),
            timeout=120, message="the run to finish on the survivor",
        )  # fmt: skip
        assert result.status == "SUCCESS", result.traceback
        assert json.loads(result.result) == {"processed": 30, "first_item": 11}
        assert "Resuming at item 11 of 30" in survivor.log()
        action = RecoveryAction.objects.get(task_id=run.task_id)
        assert (action.strategy, action.rule, action.new_task_id) == ("RESUME", "default in code", run.task_id)
    finally:
        stop_all(survivor, monitor, doomed)
