"""Runs tell the truth after the fact, end to end: expired results, late revokes, other clients, attempts.

Real Valkey, the session's real worker, the real monitor process; results are
deleted by Celery's own ``celery.backend_cleanup`` task run by the worker.
"""

import os
import signal
import subprocess
import sys
from datetime import timedelta

import pytest
from celery import current_app
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run
from taskcenter.services.control import run_cancel
from taskcenter.services.launch import DuplicateRun, run_launch
from taskcenter.services.queues import queue_message_present
from tests.conftest import CeleryProcess, process_env, wait_for
from tests.test_control_e2e import paused_queue

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def wait_for_status(task_id: str, *statuses: str, timeout: float = 30) -> TaskResult:
    return wait_for(
        lambda: TaskResult.objects.filter(task_id=task_id, status__in=statuses).first(),
        timeout=timeout,
        message=f"{task_id} to reach {statuses}",
    )


def fresh(run: Run) -> Run:
    from taskcenter.selectors.runs import run_by_task_id

    return run_by_task_id(run.task_id)


def test_an_expired_result_deleted_by_backend_cleanup_keeps_its_run_success_and_frees_its_key(celery_worker):
    run = run_launch(task_name="examples.sync_account", kwargs={"account_id": 7, "seconds": 0}, dedup_key="acct-7")
    wait_for_status(run.task_id, "SUCCESS")
    TaskResult.objects.filter(task_id=run.task_id).update(date_done=timezone.now() - timedelta(days=30))

    # Celery's own periodic clean-up, run by the real worker with the configured backend.
    current_app.tasks["celery.backend_cleanup"].apply_async(queue="default")
    wait_for(lambda: not TaskResult.objects.filter(task_id=run.task_id).exists(), message="the result to be deleted")

    kept = fresh(run)
    assert kept.result_row is None
    assert kept.state == "SUCCESS"
    assert kept.finished_at is not None and kept.started_at is not None
    assert kept.worker_name == celery_worker.hostname
    assert "7" in kept.outcome  # the result summary survives
    again = run_launch(task_name="examples.sync_account", kwargs={"account_id": 7, "seconds": 0}, dedup_key="acct-7")
    assert again.task_id != run.task_id  # the key is free: its holder finished


def test_a_late_revoke_of_a_finished_run_keeps_its_success_result_and_worker(celery_worker):
    run = run_launch(task_name="examples.add", args=[20, 22])
    wait_for_status(run.task_id, "SUCCESS")

    replies = current_app.control.revoke(run.task_id, destination=[celery_worker.hostname], reply=True, timeout=5)
    assert replies, "the worker did not answer the revoke"

    result = TaskResult.objects.get(task_id=run.task_id)
    assert result.status == "SUCCESS"
    assert result.result == "42"
    assert result.worker == celery_worker.hostname
    assert result.task_args
    assert fresh(run).state == "SUCCESS"


def test_a_run_cancelled_before_it_started_shows_no_start_time(celery_worker, staff_client):
    run = run_launch(task_name="examples.add", args=[1, 2], countdown=60)
    run_cancel(run=run, actor=staff_client.user)
    wait_for_status(run.task_id, "REVOKED")  # the worker reports it (Celery stores REVOKED for every revoke)

    run = fresh(run)
    assert run.state == "REVOKED"
    assert run.started_at is None and run.duration is None
    page = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert "<dt>Started</dt><dd>–</dd>" in page
    history = staff_client.get(reverse("taskcenter:run_list")).content.decode()
    assert run.task_id[:10] in history


PLAIN_CLIENT = """
import sys
from celery import Celery
app = Celery("plain", broker=sys.argv[1])
app.conf.task_serializer = "json"
app.conf.update(broker_connection_retry_on_startup=False)
result = app.send_task(sys.argv[2], args=[3, 4], queue=sys.argv[3])
print(result.id)
"""


def send_plain(redis_server, task_name: str, queue: str) -> str:
    """Send a task from a separate plain Celery process (no Django, no taskcenter signals)."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    done = subprocess.run(
        [sys.executable, "-c", PLAIN_CLIENT, redis_server.url, task_name, queue],
        cwd="/",
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def test_a_task_sent_by_a_plain_celery_client_appears_in_history_with_its_result(
    redis_server, celery_worker, celery_monitor, staff_client
):
    task_id = send_plain(redis_server, "examples.add", "high")
    wait_for_status(task_id, "SUCCESS")
    run = wait_for(lambda: Run.objects.filter(task_result_id=task_id).first(), timeout=40, message="the monitor's row")
    assert run.task_name == "examples.add"
    assert run.args == [3, 4]
    assert run.get_source_display() == "Other client"

    page = staff_client.get(reverse("taskcenter:run_detail", args=[task_id]))
    assert page.status_code == 200
    assert "SUCCESS" in page.content.decode() and "7" in page.content.decode()
    history = staff_client.get(reverse("taskcenter:run_list")).content.decode()
    assert reverse("taskcenter:run_detail", args=[task_id]) in history


def test_a_message_sent_to_a_queue_nobody_consumes_shows_on_the_queues_page(redis_server, celery_worker, staff_client):
    send_plain(redis_server, "examples.add", "celery")
    page = staff_client.get(reverse("taskcenter:queue_list")).content.decode()
    assert "Queues that are not configured" in page
    section = page[page.index("other-queues") :]
    assert '<td class="mono">celery</td>' in section
    assert "Unconsumed" in section
    redis_server.client().delete("celery")


def test_a_run_whose_worker_process_was_killed_shows_both_attempts(celery_worker, celery_monitor, staff_client):
    run = run_launch(task_name="examples.process_items", kwargs={"items": 12, "seconds_per_item": 0.25})
    wait_for_status(run.task_id, "STARTED")

    def child_pid():
        active = current_app.control.inspect([celery_worker.hostname], timeout=2).active() or {}
        for task in active.get(celery_worker.hostname, []):
            if task["id"] == run.task_id:
                return task.get("worker_pid")
        return None

    os.kill(wait_for(child_pid, message="the pool process running the run"), signal.SIGKILL)
    # task_reject_on_worker_lost: the message goes back to the queue and runs again.
    wait_for_status(run.task_id, "SUCCESS", timeout=60)
    attempts = wait_for(
        lambda: (
            len(fresh(run).attempts) == 2 and fresh(run).attempts[-1]["ended"] == "succeeded" and fresh(run).attempts
        ),
        timeout=30,
        message="two attempts recorded by the monitor",
    )
    assert attempts[0]["ended"] in ("requeued", "lost")
    assert all(attempt["worker"] == celery_worker.hostname for attempt in attempts)
    page = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert "<h2>Timeline</h2>" in page  # the run page's state timeline shows each attempt
    assert "Attempt 2 succeeded" in page and ("sent back to the queue" in page or "Attempt 1 lost" in page)


QUICK_SYNC = {"account_id": 9, "seconds": 0}


def test_a_key_held_by_a_run_whose_message_was_purged_outside_taskcenter_is_freed(redis_server, celery_worker):
    with paused_queue(celery_worker, "default"):  # the message stays in the queue's list
        run = run_launch(task_name="examples.sync_account", kwargs={"account_id": 9}, dedup_key="acct-9")
        with pytest.raises(DuplicateRun):
            run_launch(task_name="examples.sync_account", kwargs={"account_id": 9}, dedup_key="acct-9")
        Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))
        with pytest.raises(DuplicateRun):  # old, but its message still waits
            run_launch(task_name="examples.sync_account", kwargs={"account_id": 9}, dedup_key="acct-9")

        purge = CeleryProcess("purge", ["purge", "-f", "-Q", "default"], process_env(redis_server))
        assert purge.process.wait(timeout=60) == 0, purge.log()[-2000:]
        purge.stop()

        again = run_launch(
            task_name="examples.sync_account", kwargs={"account_id": 9, "seconds": 0}, dedup_key="acct-9"
        )
    assert again.task_id != run.task_id
    lost = fresh(run)
    assert lost.state == "REVOKED"
    assert "no longer in the broker" in lost.cancel_reason
    wait_for_status(again.task_id, "SUCCESS")


def test_the_monitor_sends_again_a_waiting_run_whose_message_left_the_broker(redis_server, celery_worker):
    """A message purged behind taskcenter's back, or lost by a worker killed as it took it, is sent again."""
    from taskcenter.monitor.runs import runs_lost_reconcile

    with paused_queue(celery_worker, "default"):
        run = run_launch(task_name="examples.sum_batch", args=[[1, 2]])
        Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))
        assert runs_lost_reconcile(set()) == (set(), 0)  # its message waits: not a suspect

        purge = CeleryProcess("purge", ["purge", "-f", "-Q", "default"], process_env(redis_server))
        assert purge.process.wait(timeout=60) == 0, purge.log()[-2000:]
        purge.stop()

        suspects, marked = runs_lost_reconcile(set())
        assert (suspects, marked) == ({run.task_id}, 0)  # missing once: only suspected
        assert fresh(run).state == "PENDING"
        # A run created before the monitor (re)connected may have run unseen: never judged.
        assert runs_lost_reconcile(suspects, since=timezone.now()) == (set(), 0)
        assert runs_lost_reconcile(suspects) == (set(), 1)
        assert queue_message_present(task_id=run.task_id, queue="default")  # sent again, same task id
        assert fresh(run).state == "PENDING"
        entry = AuditEntry.objects.get(action="run_recover", task_id=run.task_id)
        assert "Sent again to queue default" in entry.message and entry.actor is None
    assert wait_for_status(run.task_id, "SUCCESS", timeout=60)


def test_a_delayed_run_is_neither_suspected_lost_nor_freed_of_its_key(redis_server, celery_worker):
    from taskcenter import scheduled_set
    from taskcenter.broker import broker_client
    from taskcenter.monitor.runs import runs_lost_reconcile

    run = run_launch(
        task_name="examples.sync_account", kwargs={"account_id": 11, "seconds": 0}, dedup_key="acct-11", countdown=600
    )
    try:
        Run.objects.filter(pk=run.pk).update(created_at=timezone.now() - timedelta(minutes=1))
        assert runs_lost_reconcile(set()) == (set(), 0)
        with pytest.raises(DuplicateRun):  # old and not on any queue, but waiting in the scheduled set
            run_launch(task_name="examples.sync_account", kwargs={"account_id": 11}, dedup_key="acct-11")
        assert fresh(run).state == "PENDING"
    finally:
        with broker_client() as client:
            scheduled_set.cancel(client, run.task_id)
