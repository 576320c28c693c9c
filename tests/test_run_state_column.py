"""A run's ``state`` column is its real state through every transition, whoever writes it.

The column is what History filters on (through an index), so it must say what the
result row, the monitor's events and cancel say together: written PENDING at launch,
then moved by every result a worker stores (triggers on the results table, migration
0020), by the monitor's events and by cancel, with one set of rules: SUCCESS or
FAILURE replaces anything, REVOKED anything but those, other states only a state that
is not final. Existing runs are backfilled with the state ``Run.state`` used to compute.
"""

import importlib
import time
from types import SimpleNamespace

import pytest
from celery import current_app
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import Run
from taskcenter.monitor.runs import RunChanges, runs_changes_write
from taskcenter.selectors.runs import RunFilters, runs_page

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def started_written_at_once(settings):
    """These tests follow each stored state through the triggers: STARTED is not held back."""
    settings.TASKCENTER_STARTED_WRITE_DELAY = 0


backfill_migration = importlib.import_module("taskcenter.migrations.0020_history_scale")


def make_run(task_id: str, **fields) -> Run:
    return Run.objects.create(task_result_id=task_id, task_name="examples.add", queue="high", **fields)


def state_of(task_id: str) -> str:
    return Run.objects.filter(task_result_id=task_id).values_list("recorded_state", flat=True).get()


def listed_under(state: str) -> list[str]:
    return [run.task_id for run in runs_page(RunFilters(state=state)).runs]


def store(task_id: str, status: str, **request) -> None:
    """Store a result as a worker does, through the configured backend (taskcenter's)."""
    current_app.backend.store_result(task_id, None if status != "FAILURE" else ValueError("boom"), status)


def test_a_launched_run_is_pending_then_follows_every_result_the_worker_stores():
    make_run("t-1")
    assert state_of("t-1") == "PENDING" and listed_under("PENDING") == ["t-1"]
    for status in ("STARTED", "RETRY", "STARTED", "SUCCESS"):
        store("t-1", status)
        assert state_of("t-1") == status
        assert listed_under(status) == ["t-1"]
        assert [s for s in ("PENDING", "STARTED", "RETRY", "SUCCESS") if s != status and listed_under(s)] == []


def test_a_failure_is_recorded_and_the_worker_that_ran_it_is_copied_to_the_run():
    make_run("t-2")
    TaskResult.objects.create(task_id="t-2", status="STARTED", worker="w1@host")
    assert Run.objects.get(task_result_id="t-2").worker == "w1@host"
    store("t-2", "FAILURE")
    run = Run.objects.get(task_result_id="t-2")
    assert (run.state, run.worker) == ("FAILURE", "w1@host")
    assert [r.task_id for r in runs_page(RunFilters(worker="w1@host", state="FAILURE")).runs] == ["t-2"]


@pytest.mark.parametrize(
    "first, then, expected",
    [
        ("SUCCESS", "STARTED", "SUCCESS"),  # a redelivered message starting again does not unfinish it
        ("SUCCESS", "RETRY", "SUCCESS"),
        ("SUCCESS", "REVOKED", "SUCCESS"),  # a late revoke keeps a finished run
        ("FAILURE", "REVOKED", "FAILURE"),
        ("SUCCESS", "FAILURE", "FAILURE"),  # the latest outcome wins (as the monitor's events)
        ("STARTED", "REVOKED", "REVOKED"),  # terminated
        ("REVOKED", "STARTED", "REVOKED"),
        ("REVOKED", "SUCCESS", "SUCCESS"),  # it finished anyway: the outcome wins
        ("RETRY", "STARTED", "STARTED"),
    ],
)
def test_result_rows_move_the_state_by_the_monitors_rules(first, then, expected):
    make_run("t-3")
    TaskResult.objects.create(task_id="t-3", status=first)
    TaskResult.objects.filter(task_id="t-3").update(status=then)  # a plain UPDATE moves it too
    assert state_of("t-3") == expected


def test_a_revoke_from_a_control_command_moves_a_waiting_run_and_keeps_a_finished_one():
    make_run("t-4")
    TaskResult.objects.create(task_id="t-4", status="STARTED")
    store("t-4", "REVOKED")  # no request: the backend's own revoke path (an UPDATE)
    assert state_of("t-4") == "REVOKED"
    make_run("t-5")
    store("t-5", "SUCCESS")
    store("t-5", "REVOKED")
    assert state_of("t-5") == "SUCCESS"


def test_a_run_written_after_its_result_takes_the_results_state():
    """A task sent by another client: the monitor writes its run when a worker already reported on it."""
    TaskResult.objects.create(task_id="t-6", status="SUCCESS", worker="w2@host")
    make_run("t-6")
    run = Run.objects.get(task_result_id="t-6")
    assert (run.state, run.worker) == ("SUCCESS", "w2@host")
    TaskResult.objects.create(task_id="t-7", status="STARTED")
    make_run("t-7", recorded_state="FAILURE")  # the events already told the outcome: kept
    assert state_of("t-7") == "FAILURE"


def test_the_monitors_events_move_the_state_and_never_undo_a_final_one():
    make_run("t-8")
    changes = RunChanges()
    now = time.time()
    for kind, at in (("task-received", now), ("task-started", now + 1)):
        changes.handle({"type": kind, "uuid": "t-8", "timestamp": at, "hostname": "w3@host", "pid": 1})
    runs_changes_write(changes.take())
    assert state_of("t-8") == "STARTED" and listed_under("STARTED") == ["t-8"]
    store("t-8", "SUCCESS")
    changes.handle({"type": "task-retried", "uuid": "t-8", "timestamp": now + 2, "hostname": "w3@host"})
    runs_changes_write(changes.take())  # a late event after the result
    assert state_of("t-8") == "SUCCESS"


def test_a_received_run_with_no_result_row_is_listed_as_received():
    make_run("t-9")
    changes = RunChanges()
    changes.handle({"type": "task-received", "uuid": "t-9", "timestamp": time.time(), "hostname": "w@h"})
    runs_changes_write(changes.take())
    assert listed_under("RECEIVED") == ["t-9"] and listed_under("PENDING") == []


def old_property(recorded: str, result: str | None, cancelled: bool) -> str:
    """``Run.state`` before migration 0020, from the run's record and its result row."""
    if recorded in ("SUCCESS", "FAILURE"):
        return recorded
    if result is not None:
        return result
    if recorded != "PENDING":
        return recorded
    return "REVOKED" if cancelled else "PENDING"


def test_the_backfill_writes_the_state_the_property_computed_for_every_existing_run():
    cases = [
        (recorded, result, cancelled)
        for recorded in ("PENDING", "RECEIVED", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
        for result in (None, "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")
        for cancelled in (False, True)
    ]
    for n, (_, result, cancelled) in enumerate(cases):
        make_run(f"b-{n}", cancelled_at=timezone.now() if cancelled else None)
        if result is not None:
            TaskResult.objects.create(task_id=f"b-{n}", status=result, worker="w9@host")
    with connection.cursor() as cursor:  # rows as they were before the migration: the record alone
        for n, (recorded, _, _) in enumerate(cases):
            cursor.execute("UPDATE taskcenter_run SET state = %s, worker = '' WHERE task_id = %s", [recorded, f"b-{n}"])
    backfill_migration.backfill_states(None, SimpleNamespace(connection=connection))
    for n, (recorded, result, cancelled) in enumerate(cases):
        run = Run.objects.get(task_result_id=f"b-{n}")
        assert run.state == old_property(recorded, result, cancelled), (recorded, result, cancelled)
        assert run.worker == ("w9@host" if result else "")


def test_the_backfill_goes_batch_by_batch(monkeypatch):
    monkeypatch.setattr(backfill_migration, "BACKFILL_BATCH", 3)
    for n in range(10):
        make_run(f"c-{n}", cancelled_at=timezone.now())
    Run.objects.update(recorded_state="PENDING")
    backfill_migration.backfill_states(None, SimpleNamespace(connection=connection))
    assert set(Run.objects.values_list("recorded_state", flat=True)) == {"REVOKED"}
