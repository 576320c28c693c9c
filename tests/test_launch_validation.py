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


# --- Types against the signature ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field", "message"),
    [
        ({"task_name": "examples.add", "args": ["a", 2]}, "args", "Argument 'x' must be a whole number (int), got"),
        ({"task_name": "examples.add", "kwargs": {"x": 1, "y": True}}, "kwargs", "Argument 'y' must be a whole number"),
        ({"task_name": "examples.add", "args": [1.5, 2]}, "args", "Argument 'x' must be a whole number"),
        (
            {"task_name": "examples.sum_batch", "kwargs": {"numbers": [1, "x", 3]}},
            "kwargs",
            'item 1 must be a whole number (int), got "x"',
        ),
        ({"task_name": "examples.sum_batch", "args": [{"a": 1}]}, "args", "Argument 'numbers' must be a JSON list"),
        (
            {"task_name": "examples.process_items", "kwargs": {"seconds_per_item": "fast"}},
            "kwargs",
            "Argument 'seconds_per_item' must be a number (float)",
        ),
        ({"task_name": "examples.fail", "kwargs": {"message": None}}, "kwargs", "Argument 'message' must be a string"),
    ],
)
def test_arguments_must_fit_the_type_hints(options, field, message):
    errors = launch_errors(**options)
    assert message in " ".join(errors[field])


def test_values_that_fit_the_hints_pass_and_unannotated_parameters_take_any_json():
    from taskcenter.services.launch import launch_prepare

    launch_prepare(task_name="examples.process_items", kwargs={"items": 3, "seconds_per_item": 1})  # int for float
    assert launch_prepare(task_name="examples.sum_batch", args=[[1, 2, 3]]).args == [[1, 2, 3]]


def test_type_hints_cover_optional_literal_enum_dates_and_containers():
    import datetime as dt
    import enum
    import inspect
    from typing import Literal

    from taskcenter import arguments

    class Colour(enum.Enum):
        RED = "red"

    def task(
        a: int | None,
        b: Literal["x", 3],
        c: Colour,
        d: dt.date,
        e: dt.datetime,
        f: dict[str, int],
        g: tuple[int, str],
        h=None,
        i: int = None,  # noqa: RUF013 (implicit Optional is accepted)
    ):
        pass

    def problems(*args, **kwargs):
        return dict(arguments.check_arguments(inspect.signature(task), arguments.type_hints(task), list(args), kwargs))

    good = (None, 3, "red", "2026-03-29", "2026-03-29T02:30:00+08:00", {"k": 1}, [1, "s"], {"any": [1]}, None)
    assert problems(*good) == {}
    bad = problems(1.5, True, "blue", "2026-02-31", "soon", {"k": "v"}, [1, 2], None, "7")
    assert set(bad) == {"a", "b", "c", "d", "e", "f", "g", "i"}
    assert 'one of "x", 3' in bad["b"] and "at key 'k'" in bad["f"]


# --- Bounded input: never a RecursionError or ValueError --------------------------------


def test_strings_that_look_nested_are_fine():
    from taskcenter.services.launch import launch_prepare

    launch_prepare(task_name="examples.fail", kwargs={"message": "[" * 40 + "]" * 40})


def nested(depth: int):
    value = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task_name": "examples.add", "args": [nested(40), 2]}, "nested too deeply"),
        ({"task_name": "examples.add", "args": [nested(5000), 2]}, "nested too deeply"),
        ({"task_name": "examples.add", "args": [10**40, 2]}, "fit in 64 bits"),
        ({"task_name": "examples.add", "args": [2**63, 2]}, "fit in 64 bits"),
        ({"task_name": "examples.process_items", "kwargs": {"seconds_per_item": float("inf")}}, "finite"),
        ({"task_name": "examples.fail", "kwargs": {"message": "a\x00b"}}, "NUL character"),  # jsonb cannot hold it
        ({"task_name": "examples.fail", "kwargs": {"message\x00": "a"}}, "NUL character"),
    ],
)
def test_service_refuses_unbounded_values_that_bypass_the_forms(options, message):
    errors = launch_errors(**options)
    assert message in " ".join(m for msgs in errors.values() for m in msgs)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"args": "[" * 100_000 + "]" * 100_000}, "nested too deeply"),
        ({"args": "[" * 900 + "1" + "]" * 900}, "nested too deeply"),
        ({"kwargs": '{"x": ' + "9" * 5000 + ', "y": 1}'}, "more than 30 digits"),
        ({"args": "[1e999, 2]"}, "finite"),
        ({"args": "[NaN, 2]"}, "NaN is not a JSON number"),
        ({"args": '["a", 2]'}, "Argument &#x27;x&#x27; must be a whole number"),
        ({"expires": "9" * 5000}, "Enter a whole number"),
        ({"expires": str(10**20)}, "less than or equal to"),
        ({"expires": str(2**62)}, "cannot exceed"),
        ({"countdown": "9" * 40}, "cannot exceed"),
        ({"eta": "0001-01-01 00:00:00"}, "between the years 2 and 9998"),
        ({"kwargs": '{"x": 1, "y": 2, "note": "\\u0000"}'}, "NUL character"),  # PostgreSQL's jsonb cannot hold it
    ],
)
def test_raw_json_and_options_out_of_bounds_get_400_with_a_clear_message(staff_client, data, message):
    response = post_launch(staff_client, mode="json", **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Run.objects.exists()


def test_huge_expiry_and_year_one_eta_are_field_errors_in_the_service():
    from datetime import datetime

    assert "cannot exceed" in launch_errors(task_name="examples.add", args=[1, 2], expires=10**30)["expires"][0]
    assert "years 2 and 9998" in launch_errors(task_name="examples.add", args=[1, 2], eta=datetime(1, 1, 1))["eta"][0]
    expires = launch_errors(task_name="examples.add", args=[1, 2], expires=datetime(1, 1, 1))["expires"][0]
    assert "years 2 and 9998" in expires


# --- Year-1 dates in the history and audit filters ---------------------------------------


@pytest.mark.parametrize("url_name", ["taskcenter:run_list", "taskcenter:audit_list"])
@pytest.mark.parametrize("value", ["0001-01-01 00:00:00", "9999-12-31 23:59:59", "0001-01-01"])
def test_filter_dates_without_a_utc_time_are_a_400_not_a_500(staff_client, settings, url_name, value):
    settings.TIME_ZONE = "Asia/Shanghai"
    names = ("created_from", "created_to") if url_name == "taskcenter:run_list" else ("at_from", "at_to")
    for name in names:
        response = staff_client.get(reverse(url_name), {name: value})
        assert response.status_code in (200, 400), response.status_code
        if response.status_code == 400:
            assert "between the years 2 and 9998" in response.content.decode()
    assert staff_client.get(reverse(url_name), {names[0]: "0001-01-01 00:00:00"}).status_code == 400


def test_history_cursors_beyond_64_bits_are_refused(staff_client):
    assert staff_client.get(reverse("taskcenter:run_list"), {"before": "9" * 30}).status_code == 400
    assert staff_client.get(reverse("taskcenter:audit_list"), {"before": "9" * 30}).status_code == 400
