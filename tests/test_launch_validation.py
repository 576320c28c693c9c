"""The launch service and form refuse bad input with a reason, and record nothing."""

import pytest
from django.urls import reverse

from taskcenter.models import Run
from taskcenter.services.launch import InvalidLaunch, NotLaunchable, run_launch

pytestmark = pytest.mark.django_db


def launch_errors(**options) -> dict:
    with pytest.raises(InvalidLaunch) as info:
        run_launch(**options)
    assert not Run.objects.exists()
    return info.value.errors


def test_unknown_task_name_is_not_launchable():
    with pytest.raises(NotLaunchable, match="No launchable task is named 'os.system'"):
        run_launch(task_name="os.system", args=["rm -rf /"])
    assert not Run.objects.exists()


def test_celery_builtin_tasks_are_not_launchable():
    with pytest.raises(NotLaunchable):
        run_launch(task_name="celery.backend_cleanup")


def test_arguments_must_fit_the_task_signature():
    errors = launch_errors(task_name="examples.add", args=[1])
    assert "missing a required argument: 'y'" in errors["args"][0]
    errors = launch_errors(task_name="examples.add", kwargs={"x": 1, "y": 2, "z": 3})
    assert "unexpected keyword argument 'z'" in errors["kwargs"][0]


def test_args_must_be_a_list_and_kwargs_an_object():
    errors = launch_errors(task_name="examples.add", args={"x": 1}, kwargs=[1])
    assert "JSON list" in errors["args"][0]
    assert "JSON object" in errors["kwargs"][0]


def test_arguments_must_be_plain_json():
    errors = launch_errors(task_name="examples.add", args=[object(), 1])
    assert "plain JSON" in errors["args"][0]


def test_unknown_queue_and_priority_are_refused():
    errors = launch_errors(task_name="examples.add", args=[1, 2], queue="nope", priority="SOON")
    assert "Unknown queue 'nope'" in errors["queue"][0]
    assert "Unknown priority 'SOON'" in errors["priority"][0]


@pytest.mark.parametrize(
    ("countdown", "message"),
    [(-5, "cannot be negative"), (10**7, "cannot exceed"), (1.5, "whole number"), (True, "whole number")],
)
def test_countdown_must_be_whole_seconds_within_the_visibility_timeout(countdown, message):
    errors = launch_errors(task_name="examples.add", args=[1, 2], countdown=countdown)
    assert message in errors["countdown"][0]


# --- The launch page --------------------------------------------------------------


def post_launch(client, task_name="examples.add", **data):
    form = {"args": "[1, 2]", "kwargs": "{}", "queue": "high", "priority": "HIGH", "countdown": ""}
    form.update(data)
    return client.post(reverse("taskcenter:launch", args=[task_name]), form)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"args": "[1, 2"}, "Not valid JSON"),
        ({"kwargs": "{'x': 1}"}, "Not valid JSON"),
        ({"args": '{"x": 1}'}, "Must be a list"),
        ({"queue": "nope"}, "Select a valid choice"),
        ({"priority": "SOON"}, "Select a valid choice"),
        ({"countdown": "-1"}, "greater than or equal to 0"),
        ({"countdown": "abc"}, "Enter a whole number"),
        ({"countdown": "99999999"}, "cannot exceed"),
        ({"args": "[1]"}, "missing a required argument"),
    ],
)
def test_bad_launch_form_input_gets_400_with_the_reason_and_records_nothing(staff_client, data, message):
    response = post_launch(staff_client, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Run.objects.exists()


def test_launch_page_of_an_uncatalogued_task_is_404_with_the_reason(staff_client):
    response = post_launch(staff_client, task_name="celery.backend_cleanup")
    assert response.status_code == 404
    response = staff_client.get(reverse("taskcenter:launch", args=["os.system"]))
    assert response.status_code == 404
    assert not Run.objects.exists()


def test_launch_form_shows_defaults_and_configured_queues(staff_client):
    response = staff_client.get(reverse("taskcenter:launch", args=["examples.process_items"]))
    assert response.status_code == 200
    page = response.content.decode()
    assert "seconds_per_item" in page  # defaults prefilled in the kwargs field
    for queue in ("default", "high", "low"):
        assert f'value="{queue}"' in page
