"""A run written after its message was published cannot miss its worker's final state (PostgreSQL's window)."""

import pytest
from django_celery_results.models import TaskResult

from taskcenter.models import Run
from taskcenter.services.recording import _final_states_catch_up, run_record_published

pytestmark = pytest.mark.django_db


def test_a_run_left_started_by_a_race_with_its_result_is_caught_up_to_success():
    run_record_published(
        task_id="raced-1", task_name="examples.add", queue="default", headers={}, body=[[1, 2], {}, {}]
    )
    TaskResult.objects.create(task_id="raced-1", task_name="examples.add", status="SUCCESS")
    Run.objects.filter(task_result_id="raced-1").update(recorded_state="STARTED")  # what the race leaves

    assert _final_states_catch_up(["raced-1"]) == 1

    assert Run.objects.get(task_result_id="raced-1").recorded_state == "SUCCESS"


def test_the_catch_up_leaves_runs_whose_result_is_not_final_and_runs_already_final():
    for task_id, result_state, run_state in (("running", "STARTED", "STARTED"), ("failed", "FAILURE", "FAILURE")):
        run_record_published(task_id=task_id, task_name="examples.add", queue="default", headers={}, body=[[], {}, {}])
        TaskResult.objects.create(task_id=task_id, task_name="examples.add", status=result_state)
        Run.objects.filter(task_result_id=task_id).update(recorded_state=run_state)

    assert _final_states_catch_up(["running", "failed", "unknown"]) == 0
