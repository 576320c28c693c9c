"""TaskcenterBackend writes each state of a task in one statement, and the row ends as django-celery-results' did."""

import pytest
from celery import current_app, states
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_celery_results.models import TaskResult

pytestmark = pytest.mark.django_db


def test_each_state_is_one_statement_and_keeps_creation_and_start_times(settings):
    settings.TASKCENTER_STARTED_WRITE_DELAY = 0  # STARTED written at once, Celery's way
    backend = current_app.backend
    with CaptureQueriesContext(connection) as started:
        backend.store_result("upsert-1", {"pid": 1, "hostname": "w@h"}, states.STARTED)
    row = TaskResult.objects.get(task_id="upsert-1")
    assert row.status == states.STARTED and row.date_started is not None
    created, began = row.date_created, row.date_started

    with CaptureQueriesContext(connection) as succeeded:
        backend.store_result("upsert-1", 42, states.SUCCESS)
    assert len(started) == 1 and len(succeeded) == 1, [q["sql"] for q in [*started, *succeeded]]
    row = TaskResult.objects.get(task_id="upsert-1")
    assert row.status == states.SUCCESS and row.result == "42"
    assert (row.date_created, row.date_started) == (created, began)
    assert row.date_done >= began
    assert TaskResult.objects.filter(task_id="upsert-1").count() == 1


def test_a_first_write_that_is_not_started_creates_the_row_without_a_start_time():
    current_app.backend.store_result("upsert-2", "boom", states.FAILURE)
    row = TaskResult.objects.get(task_id="upsert-2")
    assert row.status == states.FAILURE and row.date_started is None


def test_a_revoke_after_success_still_keeps_the_success():
    backend = current_app.backend
    backend.store_result("upsert-3", 7, states.SUCCESS)
    backend.store_result("upsert-3", None, states.REVOKED)
    assert TaskResult.objects.get(task_id="upsert-3").status == states.SUCCESS


@pytest.mark.parametrize("late", [states.RETRY, states.STARTED, "PROGRESS"])
def test_a_state_that_is_not_final_stored_after_the_outcome_keeps_the_outcome(settings, late):
    """A retry's message goes out before its RETRY is stored: the next attempt can succeed first."""
    settings.TASKCENTER_STARTED_WRITE_DELAY = 0
    backend = current_app.backend
    backend.store_result(f"late-{late}", {"attempt": 3}, states.SUCCESS)
    backend.store_result(f"late-{late}", {"progress": "attempt 2"}, late)
    row = TaskResult.objects.get(task_id=f"late-{late}")
    assert row.status == states.SUCCESS and row.result == '{"attempt": 3}'
    backend.store_result(f"late-f-{late}", ValueError("final"), states.FAILURE)
    backend.store_result(f"late-f-{late}", None, late)
    assert TaskResult.objects.get(task_id=f"late-f-{late}").status == states.FAILURE


def test_a_retry_then_its_success_end_in_success():
    backend = current_app.backend
    backend.store_result("retry-then-success", {"retry": "attempt 1"}, states.RETRY)
    assert TaskResult.objects.get(task_id="retry-then-success").status == states.RETRY
    backend.store_result("retry-then-success", 5, states.SUCCESS)
    assert TaskResult.objects.get(task_id="retry-then-success").status == states.SUCCESS
