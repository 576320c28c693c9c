"""End to end: web launch -> real Redis -> real Celery worker -> results in history.

A Valkey server and a worker of the project's own app run as subprocesses.
"""

import time

import pytest
from celery import current_app
from django.urls import reverse

from taskcenter.models import Run
from taskcenter.priorities import Priority
from taskcenter.services.launch import run_launch
from tests.conftest import broker_down, wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def launch_via_page(client, task_name, **data) -> Run:
    form = {"args": "[]", "kwargs": "{}", "countdown": "", "priority": "NORMAL"}
    form.update(data)
    response = client.post(reverse("taskcenter:launch", args=[task_name]), form)
    assert response.status_code == 302, response.content.decode()[:2000]
    run = Run.objects.get(task_result_id=response.url.rstrip("/").rsplit("/", 1)[-1])
    return run


def test_task_launched_from_the_page_is_pending_then_succeeds_and_shows_in_history(staff_client, celery_worker):
    run = launch_via_page(staff_client, "examples.add", args="[20, 22]", queue="high", priority="URGENT")
    assert run.launched_by == staff_client.user
    assert (run.queue, run.priority, run.args) == ("high", Priority.URGENT, [20, 22])

    result = wait_for_state(run)
    assert result.status == "SUCCESS"
    assert result.result == "42"
    assert result.worker == celery_worker.hostname

    history = staff_client.get(reverse("taskcenter:run_list"), {"state": "SUCCESS"}).content.decode()
    assert run.task_id in history
    detail = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert "SUCCESS" in detail and "42" in detail and "operator" in detail and celery_worker.hostname in detail


def test_launch_is_listed_as_pending_until_a_worker_takes_it(staff_client, celery_worker):
    run = launch_via_page(staff_client, "examples.add", args="[1, 1]", queue="default", countdown="3")
    history = staff_client.get(reverse("taskcenter:run_list"), {"state": "PENDING"}).content.decode()
    assert run.task_id in history
    result = wait_for_state(run, timeout=30)
    assert result.date_started >= run.eta.replace(microsecond=0)  # the countdown was honoured


def test_failing_task_reaches_failure_with_its_traceback(staff_client, celery_worker):
    run = launch_via_page(staff_client, "examples.fail", kwargs='{"message": "disk full"}', queue="default")
    result = wait_for_state(run)
    assert result.status == "FAILURE"
    assert "ExampleFailure" in result.traceback and "disk full" in result.traceback
    detail = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert "FAILURE" in detail and "ExampleFailure: disk full" in detail


def test_urgent_task_queued_behind_low_ones_runs_first(celery_worker):
    queue = "default"
    replies = current_app.control.cancel_consumer(queue, destination=[celery_worker.hostname], reply=True)
    assert replies, "the worker did not stop consuming"
    try:
        lows = [
            run_launch(task_name="examples.process_items", kwargs={"items": 1, "seconds_per_item": 0.3},
                       queue=queue, priority=Priority.LOW)
            for _ in range(6)
        ]  # fmt: skip
        urgent = run_launch(
            task_name="examples.process_items",
            kwargs={"items": 1, "seconds_per_item": 0.3},
            queue=queue,
            priority=Priority.URGENT,
        )
    finally:
        current_app.control.add_consumer(queue, destination=[celery_worker.hostname], reply=True)

    results = [wait_for_state(run) for run in [*lows, urgent]]
    start_order = [r.task_id for r in sorted(results, key=lambda r: r.date_started)]
    # The worker runs two at a time, so the URGENT run must be in the first pair,
    # although it was queued after all six LOW runs.
    assert start_order.index(urgent.task_id) < 2, start_order


def test_periodic_task_created_on_the_schedules_page_is_sent_by_beat_and_recorded(staff_client, celery_beat):
    from django_celery_beat.models import PeriodicTask

    response = staff_client.post(
        reverse("taskcenter:schedule_new") + "?task=examples.add",
        {
            "task": "examples.add",
            "name": "add every second",
            "enabled": "on",
            "kind": "interval",
            "every": "1",
            "period": "seconds",
            "timezone": "",
            "mode": "typed",
            "arg_x": "2",
            "arg_y": "3",
            "misfire": "run_once",
            "jitter_seconds": "0",
            "max_instances": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    assert PeriodicTask.objects.filter(name="add every second").exists()

    beat = celery_beat()

    def recorded_run():
        return Run.objects.filter(periodic_task_name="add every second").first()

    run = wait_for(recorded_run, timeout=30, message=f"beat to send the task\n{beat.log()[-2000:]}")
    assert run.source == "schedule"
    assert run.queue == "high"  # the task's declared queue
    result = wait_for_state(run)
    assert result.result == "5"
    history = staff_client.get(reverse("taskcenter:run_list"), {"task_name": "examples.add"}).content.decode()
    assert run.task_id in history


def post_launch_timed(client) -> tuple:
    began = time.monotonic()
    response = client.post(
        reverse("taskcenter:launch", args=["examples.add"]),
        {"args": "[1, 2]", "kwargs": "{}", "queue": "high", "priority": "NORMAL", "countdown": ""},
    )
    return response, time.monotonic() - began


def test_launch_with_the_broker_stopped_fails_fast_with_a_clear_message(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        response, elapsed = post_launch_timed(staff_client)
    assert response.status_code == 503
    assert "broker (Redis) is not reachable" in response.content.decode()
    assert elapsed < 3, f"the request took {elapsed:.1f}s"
    assert not Run.objects.exists()


def test_launch_with_a_frozen_broker_gives_up_within_seconds(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        response, elapsed = post_launch_timed(staff_client)
    assert response.status_code == 503
    assert "broker (Redis) is not reachable" in response.content.decode()
    assert elapsed < 10, f"the request took {elapsed:.1f}s"
    assert not Run.objects.exists()
