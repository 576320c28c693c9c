"""A task's STARTED row is written only if the task still runs after TASKCENTER_STARTED_WRITE_DELAY.

The worker's hot path (issue 12): a short task writes one row, its final state with its
start time; a long one shows STARTED in the database after the delay, monitor or not.
"""

import threading
import time

import pytest
from celery import current_app, states
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_results.models import TaskResult

from taskcenter.started_writes import HeldStartedWrites
from tests.conftest import wait_for


class RecordingWriter:
    def __init__(self, seconds: float = 0.0):
        self.written, self.seconds = [], seconds

    def __call__(self, values: dict) -> None:
        time.sleep(self.seconds)
        self.written.append(values["task_id"])


def test_a_held_write_is_made_once_it_is_due():
    held, writer = HeldStartedWrites(), RecordingWriter()
    held.hold("long", {"task_id": "long"}, writer, delay=0.05)
    wait_for(lambda: writer.written == ["long"], timeout=5, message="the held write")
    assert held.take("long") is None  # already written: the final write has nothing to add


def test_a_task_that_ends_before_the_delay_never_writes_started():
    held, writer = HeldStartedWrites(), RecordingWriter()
    held.hold("short", {"task_id": "short", "date_started": "t0"}, writer, delay=0.2)
    assert held.take("short") == {"task_id": "short", "date_started": "t0"}
    time.sleep(0.4)
    assert writer.written == [] and held.held_count() == 0


def test_the_final_write_waits_while_the_started_write_of_its_task_is_being_made():
    held, writer = HeldStartedWrites(), RecordingWriter(seconds=0.3)
    held.hold("racing", {"task_id": "racing"}, writer, delay=0.01)
    wait_for(lambda: held.held_count() == 0, timeout=5, message="the write to begin")
    began = time.monotonic()
    assert held.take("racing") is None
    assert writer.written == ["racing"], "take() returned before the STARTED write finished"
    assert time.monotonic() - began > 0.1


def test_a_failing_write_is_logged_and_the_thread_goes_on(caplog):
    held, writer = HeldStartedWrites(), RecordingWriter()

    def broken(values):
        raise RuntimeError("database gone")

    held.hold("first", {"task_id": "first"}, broken, delay=0.01)
    held.hold("second", {"task_id": "second"}, writer, delay=0.02)
    wait_for(lambda: writer.written == ["second"], timeout=5, message="the write after a failed one")
    assert "STARTED of first could not be written" in caplog.text


def test_many_tasks_ending_quickly_leave_nothing_held():
    held, writer = HeldStartedWrites(), RecordingWriter()
    for i in range(1000):
        held.hold(f"t{i}", {"task_id": f"t{i}"}, writer, delay=0.05)
        held.take(f"t{i}")
    time.sleep(0.2)
    assert writer.written == [] and held.held_count() == 0
    assert threading.active_count() < 50
    wait_for(lambda: not held._due, timeout=5, message="the taken entries dropped")


def test_the_writer_thread_wakes_once_for_many_taken_entries_not_once_each(monkeypatch):
    """At hundreds of short tasks a second, a wake-up per task cost the pool process CPU and the GIL."""
    held, writer = HeldStartedWrites(), RecordingWriter()
    held.hold("first", {"task_id": "first"}, writer, delay=0.05)
    held.take("first")
    waits = []
    wait = held._condition.wait
    monkeypatch.setattr(held._condition, "wait", lambda timeout=None: waits.append(timeout) or wait(timeout))
    for i in range(300):
        held.hold(f"t{i}", {"task_id": f"t{i}"}, writer, delay=0.05)
        held.take(f"t{i}")
        time.sleep(0.001)
    held.hold("long", {"task_id": "long"}, writer, delay=0.05)
    wait_for(lambda: writer.written == ["long"], timeout=5, message="the still-held write")
    assert len(waits) < 30, f"{len(waits)} wake-ups for 300 taken entries"


@pytest.mark.django_db(transaction=True)
def test_a_short_task_writes_only_its_final_row_with_its_start_time(settings):
    settings.TASKCENTER_STARTED_WRITE_DELAY = 0.5
    backend = current_app.backend
    with CaptureQueriesContext(connection) as queries:
        backend.store_result("short-1", {"pid": 1, "hostname": "w@h"}, states.STARTED)
        assert not TaskResult.objects.filter(task_id="short-1").exists()
        backend.store_result("short-1", 42, states.SUCCESS)
    assert len([q for q in queries if "INSERT" in q["sql"]]) == 1
    row = TaskResult.objects.get(task_id="short-1")
    assert row.status == states.SUCCESS and row.date_started is not None
    assert row.date_started <= row.date_done
    time.sleep(0.8)
    assert TaskResult.objects.get(task_id="short-1").status == states.SUCCESS


@pytest.mark.django_db(transaction=True)
def test_a_long_task_shows_started_in_the_database_after_the_delay(settings):
    settings.TASKCENTER_STARTED_WRITE_DELAY = 0.2
    backend = current_app.backend
    backend.store_result("long-1", {"pid": 1, "hostname": "w@h"}, states.STARTED)
    wait_for(lambda: TaskResult.objects.filter(task_id="long-1", status=states.STARTED).exists(),
             timeout=5, message="the held STARTED row")  # fmt: skip
    began = TaskResult.objects.get(task_id="long-1").date_started
    backend.store_result("long-1", 42, states.SUCCESS)
    row = TaskResult.objects.get(task_id="long-1")
    assert row.status == states.SUCCESS and row.date_started == began


@pytest.mark.django_db(transaction=True)
def test_a_late_started_write_never_replaces_a_final_state():
    backend = current_app.backend
    backend.store_result("revoked-1", None, states.REVOKED)
    started = {"task_id": "revoked-1", "status": states.STARTED, "result": "{}", "content_type": "application/json",
               "content_encoding": "utf-8", "date_created": None, "date_started": None, "date_done": None}  # fmt: skip
    from django.utils import timezone

    started.update(date_created=timezone.now(), date_started=timezone.now(), date_done=timezone.now())
    backend._upsert(connection, started, keep_final=True)
    assert TaskResult.objects.get(task_id="revoked-1").status == states.REVOKED
    backend._upsert(connection, {**started, "task_id": "fresh-1"}, keep_final=True)
    assert TaskResult.objects.get(task_id="fresh-1").status == states.STARTED


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_running_task_is_started_in_the_database_and_a_short_one_still_gets_its_start_time(celery_worker):
    long_run = current_app.tasks["examples.sync_account"].apply_async(args=[1], kwargs={"seconds": 3})
    wait_for(lambda: TaskResult.objects.filter(task_id=long_run.id, status=states.STARTED).exists(),
             timeout=30, message="the long task's STARTED row")  # fmt: skip
    assert not TaskResult.objects.filter(task_id=long_run.id, status__in=states.READY_STATES).exists()
    short = current_app.tasks["examples.add"].apply_async(args=[1, 2])
    assert short.get(timeout=30) == 3
    row = TaskResult.objects.get(task_id=short.id)
    assert row.date_started is not None and row.date_started <= row.date_done
    assert long_run.get(timeout=30)
