"""Launch options and control of runs, end to end with a real Redis and real workers."""

import threading
import time
from datetime import timedelta

import pytest
from celery import current_app
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run
from taskcenter.services.launch import DuplicateRun, InvalidLaunch, run_launch
from tests.conftest import CeleryProcess, process_env, wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

LONG = {"items": 40, "seconds_per_item": 0.25}
QUICK = {"items": 1, "seconds_per_item": 0.05}


def result_of(run: Run) -> TaskResult | None:
    return TaskResult.objects.filter(task_id=run.task_id).first()


class paused_queue:
    """Stop the shared test worker consuming ``queue`` for the duration of a block."""

    def __init__(self, worker, queue: str):
        self.worker, self.queue = worker, queue

    def __enter__(self):
        replies = current_app.control.cancel_consumer(self.queue, destination=[self.worker.hostname], reply=True)
        assert replies, "the worker did not answer"
        return self

    def __exit__(self, *exc):
        current_app.control.add_consumer(self.queue, destination=[self.worker.hostname], reply=True)


# --- Launch options -------------------------------------------------------------------


def test_eta_is_honoured(celery_worker):
    eta = timezone.now() + timedelta(seconds=3)
    run = run_launch(task_name="examples.add", args=[1, 2], eta=eta)
    result = wait_for_state(run, "SUCCESS")
    assert result.date_started >= eta - timedelta(milliseconds=5)


def test_eta_beyond_the_longest_delay_is_refused_with_a_schedule_hint(settings):
    with pytest.raises(InvalidLaunch) as info:
        run_launch(
            task_name="examples.add", args=[1, 2],
            eta=timezone.now() + timedelta(seconds=settings.TASKCENTER_MAX_COUNTDOWN + 60),
        )  # fmt: skip
    assert "use a one-off (clocked) schedule instead" in info.value.errors["eta"][0]
    assert not Run.objects.exists()


def test_expiry_drops_a_run_that_waited_too_long(celery_worker):
    with paused_queue(celery_worker, "low"):
        run = run_launch(task_name="examples.process_items", kwargs=QUICK, queue="low", expires=1)
        time.sleep(2)
    result = wait_for_state(run, "REVOKED", "SUCCESS")
    assert result.status == "REVOKED"  # expired, never run
    assert result.date_started is None


# --- De-duplication -----------------------------------------------------------------------


def test_only_one_of_two_concurrent_launches_with_the_same_key_is_sent(celery_worker):
    outcomes, barrier = [], threading.Barrier(2)

    def launch():
        from django.db import connection

        barrier.wait()
        try:
            outcomes.append(run_launch(task_name="examples.add", args=[1, 1], countdown=30, dedup_key="nightly"))
        except DuplicateRun as exc:
            outcomes.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=launch) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = [o for o in outcomes if isinstance(o, Run)]
    refused = [o for o in outcomes if isinstance(o, DuplicateRun)]
    assert len(runs) == 1 and len(refused) == 1
    assert refused[0].existing.task_id == runs[0].task_id
    assert Run.objects.filter(dedup_key="nightly").count() == 1


def test_duplicate_launch_from_the_page_is_refused_with_a_link_to_the_running_one(staff_client, celery_worker):
    first = run_launch(task_name="examples.sync_account", kwargs={"account_id": 7, "seconds": 1.5})
    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.sync_account"]),
        {"args": "[]", "kwargs": '{"account_id": 7, "seconds": 1.5}', "queue": "default", "priority": "NORMAL"},
    )
    assert response.status_code == 409
    page = response.content.decode()
    assert "still pending or running" in page
    assert reverse("taskcenter:run_detail", args=[first.task_id]) in page
    wait_for_state(first, "SUCCESS")
    again = run_launch(task_name="examples.sync_account", kwargs={"account_id": 7, "seconds": 1.5})
    assert again.dedup_key == first.dedup_key  # the key is free once the first run finished


# --- Cancel and terminate ---------------------------------------------------------------


def test_revoked_pending_run_never_runs_even_on_a_worker_started_afterwards(
    staff_client, celery_worker, redis_server, django_db_blocker
):
    fresh = None
    with paused_queue(celery_worker, "low"):
        run = run_launch(task_name="examples.process_items", kwargs=QUICK, queue="low")
        response = staff_client.post(reverse("taskcenter:run_cancel", args=[run.task_id]))
        assert response.status_code == 302
        run.refresh_from_db()
        assert run.state == "REVOKED" and run.cancelled_by == staff_client.user
        try:
            # A worker that was not running when the revoke was broadcast, and does not
            # sync with the others (no mingle): only the persistent revoke list stops it.
            with django_db_blocker.unblock():
                env = process_env(redis_server)
            fresh = CeleryProcess(
                "worker-fresh",
                ["worker", "--loglevel=INFO", "-Q", "low", "-c", "1", "--hostname=fresh@localhost", "--without-mingle"],
                env,
            )
            # Wait until the fresh worker has taken the message off the queue...
            client = redis_server.client()
            low_lists = [k for k in client.keys("low*") if not k.startswith(b"low_")]
            wait_for(lambda: not any(client.llen(k) for k in low_lists), timeout=30, message="the message to be taken")
            time.sleep(1)
        finally:
            if fresh:
                fresh.stop()
    # ...and dropped it: the task never started.
    result = result_of(run)
    assert result.status == "REVOKED" and result.date_started is None
    # Celery's revoke list drops it, or, when the message came back marked redelivered, the
    # worker's guard acknowledges it unrun because the run already ended REVOKED.
    log = fresh.log()
    assert "Discarding revoked task" in log or "without running it: it already finished in REVOKED" in log
    entry = AuditEntry.objects.get(action="cancel", task_id=run.task_id)
    assert entry.actor == staff_client.user and entry.outcome == "ok"


def test_running_run_is_terminated_after_confirmation(staff_client, celery_worker):
    run = run_launch(task_name="examples.process_items", kwargs=LONG, queue="default")
    wait_for_state(run, "STARTED")
    confirm = staff_client.get(reverse("taskcenter:run_cancel", args=[run.task_id]))
    assert confirm.status_code == 200 and "Terminate a running task?" in confirm.content.decode()
    response = staff_client.post(reverse("taskcenter:run_cancel", args=[run.task_id]))
    assert response.status_code == 302
    result = wait_for_state(run, "REVOKED", "SUCCESS", timeout=15)
    assert result.status == "REVOKED"
    time.sleep(1.5)
    assert result_of(run).status == "REVOKED"  # not delivered again
    run.refresh_from_db()
    assert run.cancel_reason.startswith("terminated") and run.cancelled_by == staff_client.user
    assert AuditEntry.objects.filter(action="terminate", task_id=run.task_id, outcome="ok").exists()


def test_finished_run_cannot_be_cancelled(staff_client, celery_worker):
    run = run_launch(task_name="examples.add", args=[1, 2])
    wait_for_state(run, "SUCCESS")
    response = staff_client.post(reverse("taskcenter:run_cancel", args=[run.task_id]))
    assert response.status_code == 409
    assert AuditEntry.objects.filter(action="cancel", task_id=run.task_id, outcome="refused").exists()


# --- Retry ------------------------------------------------------------------------------------


def test_retry_with_edited_arguments_links_both_ways(staff_client, celery_worker):
    original = run_launch(task_name="examples.add", args=[1, 2])
    wait_for_state(original, "SUCCESS")
    response = staff_client.post(
        reverse("taskcenter:run_retry", args=[original.task_id]), {"args": "[40, 2]", "kwargs": "{}"}
    )
    assert response.status_code == 302
    rerun = Run.objects.get(retry_of=original)
    assert rerun.args == [40, 2] and rerun.launched_by == staff_client.user
    assert wait_for_state(rerun, "SUCCESS").result == "42"
    original_page = staff_client.get(reverse("taskcenter:run_detail", args=[original.task_id])).content.decode()
    rerun_page = staff_client.get(reverse("taskcenter:run_detail", args=[rerun.task_id])).content.decode()
    assert rerun.task_id in original_page and original.task_id in rerun_page
    assert AuditEntry.objects.filter(action="retry", task_id=rerun.task_id).exists()


def test_failed_run_is_retried_with_the_same_arguments(staff_client, celery_worker):
    failed = run_launch(task_name="examples.fail", kwargs={"message": "again"})
    wait_for_state(failed, "FAILURE")
    response = staff_client.post(
        reverse("taskcenter:run_retry", args=[failed.task_id]), {"args": "[]", "kwargs": '{"message": "again"}'}
    )
    assert response.status_code == 302
    assert Run.objects.get(retry_of=failed).kwargs == {"message": "again"}


def test_bulk_retry_of_a_filter_confirms_the_count_then_reruns_each(staff_client, celery_worker):
    failures = [run_launch(task_name="examples.fail", kwargs={"message": f"m{i}"}) for i in range(3)]
    success = run_launch(task_name="examples.add", args=[1, 1])
    for run in [*failures, success]:
        wait_for_state(run, "SUCCESS", "FAILURE")
    form = {"scope": "filter", "state": "FAILURE", "task_name": "examples.fail"}
    confirm = staff_client.post(reverse("taskcenter:bulk_retry"), form)
    assert confirm.status_code == 200
    assert "Re-run 3 finished runs?" in confirm.content.decode()
    assert not Run.objects.filter(retry_of__isnull=False).exists()  # nothing before confirming

    done = staff_client.post(reverse("taskcenter:bulk_retry"), {**form, "confirm": "on"})
    assert done.status_code == 302
    assert sorted(Run.objects.filter(retry_of__isnull=False).values_list("retry_of_id", flat=True)) == sorted(
        r.id for r in failures
    )


def test_bulk_retry_of_selected_runs(staff_client, celery_worker):
    runs = [run_launch(task_name="examples.add", args=[i, i]) for i in range(3)]
    for run in runs:
        wait_for_state(run, "SUCCESS")
    chosen = [runs[0].task_id, runs[2].task_id]
    response = staff_client.post(
        reverse("taskcenter:bulk_retry"), {"scope": "selected", "task_ids": chosen, "confirm": "on"}
    )
    assert response.status_code == 302
    assert sorted(Run.objects.filter(retry_of__isnull=False).values_list("retry_of__task_result_id", flat=True)) == (
        sorted(chosen)
    )
