"""End to end: History's state filter tells the truth through a real worker, with no monitor running.

The state column is moved by the results the worker's backend stores (triggers on the
results table), so a run is found under the right state on History as soon as its
result is stored: launched PENDING, then STARTED, RETRY, SUCCESS, FAILURE, REVOKED.
"""

import pytest

from taskcenter.models import Run
from taskcenter.selectors.runs import RunFilters, runs_page
from taskcenter.services.control import run_cancel
from taskcenter.services.launch import run_launch
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def listed_as(run: Run, state: str, *, timeout: float = 60) -> None:
    wait_for(
        lambda: run.task_id in [r.task_id for r in runs_page(RunFilters(state=state, task_name=run.task_name)).runs],
        timeout=timeout,
        message=f"{run.task_name} {run.task_id} listed as {state}",
    )


def test_history_lists_each_run_under_its_state_through_a_real_worker(celery_worker, staff_client):
    waiting = run_launch(task_name="examples.add", args=[1, 2], countdown=600)
    assert Run.objects.get(pk=waiting.pk).state == "PENDING"
    listed_as(waiting, "PENDING")

    done = run_launch(task_name="examples.add", args=[2, 3])
    failed = run_launch(task_name="examples.fail")
    flaky = run_launch(task_name="examples.flaky", kwargs={"failures": 3})  # retried after 1, 2 and 4 s
    listed_as(flaky, "RETRY")
    listed_as(done, "SUCCESS")
    listed_as(failed, "FAILURE")
    listed_as(flaky, "SUCCESS")
    assert Run.objects.get(pk=done.pk).worker == celery_worker.hostname

    run_cancel(run=Run.objects.get(pk=waiting.pk), actor=None)
    listed_as(waiting, "REVOKED")
    page = staff_client.get("/runs/?state=FAILURE&task_name=examples.fail").content.decode()
    assert failed.task_id in page and done.task_id not in page
    page = staff_client.get(f"/runs/?worker={celery_worker.hostname}&state=SUCCESS").content.decode()
    assert done.task_id in page


def test_a_started_run_is_listed_as_started_while_it_runs(celery_worker):
    run = run_launch(task_name="examples.process_items", kwargs={"items": 3, "seconds_per_item": 1.0})
    listed_as(run, "STARTED")
    listed_as(run, "SUCCESS")
