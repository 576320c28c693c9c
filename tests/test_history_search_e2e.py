"""End to end: History's text search follows what a real worker stores, never holds a secret, and forgets deleted runs.

No monitor runs: the run's outcome is written by the trigger on the results table
(migration 0023) when the worker's backend stores the result, and the full-text index
follows by the triggers on the run table.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from taskcenter.models import Run
from taskcenter.selectors.runs import RunFilters, runs_matching_text, runs_page
from taskcenter.services.launch import run_launch
from taskcenter.services.retention import retention_cleanup
from tests.conftest import wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def found(text: str, **filters) -> set[str]:
    return {run.task_id for run in runs_page(RunFilters(text=text, **filters)).runs}


def test_a_result_and_an_exception_a_worker_stores_become_searchable_at_once(celery_worker, staff_client):
    added = run_launch(task_name="examples.add", args=[20000, 417])
    failed = run_launch(task_name="examples.fail", kwargs={"message": "warehouse quokka unreachable"})
    assert failed.task_id in found("quokka")  # an argument, from the launch on
    wait_for_state([added, failed], "SUCCESS", "FAILURE")
    wait_for(lambda: added.task_id in found("20417"), message="the stored result is searchable")
    wait_for(lambda: failed.task_id in found("ExampleFailure"), message="the stored exception is searchable")
    assert failed.task_id in found("examplefail quok", task_name="FAIL", worker=celery_worker.hostname)
    page = staff_client.get("/runs/", {"text": "20417", "task_name": "add", "state": "SUCCESS"})
    assert [run.task_id for run in page.context["page"].runs] == [added.task_id]


def test_a_secret_argument_is_never_searchable(celery_worker):
    run = run_launch(task_name="examples.connect", kwargs={"host": "db9", "user": "ops", "password": "Tr0ub4dor-zebra"})
    wait_for_state([run], "SUCCESS")
    wait_for(lambda: run.task_id in found("logged"), message="the result is searchable")
    assert run.task_id in found("db9 ops")
    for guess in ("Tr0ub4dor", "zebra", "Tr0ub4dor-zebra"):
        assert runs_matching_text(guess, limit=10) == [], guess
    assert "zebra" not in Run.objects.get(pk=run.pk).outcome


def test_retention_deletes_runs_from_the_index_too(settings):
    settings.TASKCENTER_RETENTION_RUNS_DAYS = 1
    old = timezone.now() - timedelta(days=3)
    gone = Run.objects.create(
        task_result_id="old-1", task_name="examples.add", args=["platypus"], created_at=old, recorded_state="SUCCESS"
    )
    kept = Run.objects.create(task_result_id="new-1", task_name="examples.add", args=["platypus"])
    assert set(runs_matching_text("platypus", limit=10)) == {gone.pk, kept.pk}
    retention_cleanup(kinds=["runs"])
    assert not Run.objects.filter(pk=gone.pk).exists()
    assert runs_matching_text("platypus", limit=10) == [kept.pk]
