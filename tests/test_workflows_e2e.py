"""Batches and workflows (chain, group, chord) end to end, with their pages."""

import json

import pytest
from django.urls import reverse

from taskcenter.models import Batch, Run, Workflow
from taskcenter.services.launch import InvalidLaunch, NotLaunchable
from taskcenter.services.workflows import Step, workflow_launch
from tests.conftest import wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_batch_launch_splits_items_and_shows_progress(staff_client, celery_worker):
    response = staff_client.post(
        reverse("taskcenter:batch_launch", args=["examples.sum_batch"]),
        {"items": json.dumps(list(range(1, 11))), "batch_size": "4", "kwargs": "{}", "queue": "default",
         "priority": "NORMAL"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:2000]
    batch = Batch.objects.get()
    runs = list(batch.runs.order_by("id"))
    assert [r.kwargs["numbers"] for r in runs] == [[1, 2, 3, 4], [5, 6, 7, 8], [9, 10]]
    results = wait_for_state([r.task_id for r in runs])
    assert sorted(int(r.result) for r in results.values()) == [10, 19, 26]
    page = staff_client.get(reverse("taskcenter:batch_detail", args=[batch.pk])).content.decode()
    assert "<strong>3</strong> done" in page and "<strong>3</strong> total" in page and "(100%)" in page


def test_batch_launch_refuses_bad_input_with_reasons(staff_client):
    url = reverse("taskcenter:batch_launch", args=["examples.sum_batch"])
    base = {"kwargs": "{}", "queue": "default", "priority": "NORMAL"}
    response = staff_client.post(url, {**base, "items": "[]", "batch_size": "2"})
    assert response.status_code == 400 and "This field is required" in response.content.decode()
    response = staff_client.post(url, {**base, "items": "[1, 2]", "batch_size": "0"})
    assert response.status_code == 400
    assert staff_client.get(reverse("taskcenter:batch_launch", args=["examples.add"])).status_code == 404
    assert not Run.objects.exists() and not Batch.objects.exists()


def test_chain_passes_each_result_to_the_next_step(staff_client, celery_worker):
    spec = {
        "kind": "chain",
        "steps": [
            {"task": "examples.add", "args": [1, 2]},
            {"task": "examples.add", "args": [10]},
            {"task": "examples.add", "args": [100]},
        ],
    }
    response = staff_client.post(reverse("taskcenter:workflow_launch"), {"spec": json.dumps(spec)})
    assert response.status_code == 302, response.content.decode()[:2000]
    workflow = Workflow.objects.get()
    ids = [stage[0] for stage in workflow.stages]
    assert Run.objects.filter(workflow=workflow).count() == 3  # all recorded up front
    results = wait_for_state(ids)
    assert [results[i].result for i in ids] == ["3", "13", "113"]

    page = staff_client.get(reverse("taskcenter:run_detail", args=[ids[1]])).content.decode()
    assert "Chain workflow" in page
    for task_id in ids:
        assert reverse("taskcenter:run_detail", args=[task_id]) in page


def test_chord_callback_runs_after_its_group_with_their_results(celery_worker):
    workflow = workflow_launch(
        kind="chord",
        steps=[Step("examples.add", [1, 2]), Step("examples.add", [3, 4]), Step("examples.add", [5, 6])],
        callback=Step("examples.sum_batch"),
    )
    header, (callback_id,) = workflow.stages
    results = wait_for_state([*header, callback_id])
    assert results[callback_id].result == "21"
    assert results[callback_id].date_started >= max(results[i].date_done for i in header)


def test_group_runs_every_member(celery_worker):
    workflow = workflow_launch(kind="group", steps=[Step("examples.add", [i, i]) for i in range(4)])
    (members,) = workflow.stages
    results = wait_for_state(members)
    assert sorted(int(r.result) for r in results.values()) == [0, 2, 4, 6]


def test_workflow_with_an_uncatalogued_or_misfitting_step_is_refused_and_records_nothing(staff_client):
    with pytest.raises(InvalidLaunch) as info:
        workflow_launch(kind="chain", steps=[Step("examples.add", [1, 2]), Step("celery.backend_cleanup")])
    assert "No launchable task is named 'celery.backend_cleanup'" in str(info.value)
    with pytest.raises(InvalidLaunch) as info:
        workflow_launch(kind="chain", steps=[Step("examples.add", [1, 2]), Step("examples.add", [1, 2])])
    assert "Arguments do not fit" in str(info.value)  # the second step also gets the first's result
    response = staff_client.post(reverse("taskcenter:workflow_launch"), {"spec": '{"kind": "chord", "steps": []}'})
    assert response.status_code == 400
    assert not Run.objects.exists() and not Workflow.objects.exists()


def test_unknown_task_in_a_batch_is_not_launchable():
    from taskcenter.services.batches import batch_launch

    with pytest.raises(NotLaunchable):
        batch_launch(task_name="os.system", items=[1], batch_size=1)
