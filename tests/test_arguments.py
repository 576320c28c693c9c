"""Typed launch forms generated from task signatures."""

import datetime as dt
import enum
import inspect
import json
from typing import Literal, Optional

import pytest
from django import forms
from django.urls import reverse

from taskcenter import arguments, catalogue
from taskcenter.forms import LaunchForm
from taskcenter.models import Run


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


def sample(
    count: int,
    ratio: float,
    name: str,
    dry_run: bool,
    day: dt.date,
    at: dt.datetime,
    colour: Colour,
    mode: Literal["fast", "slow", 3],
    ids: list[int],
    options: dict,
    note: Optional[str] = None,  # noqa: UP045 (the old spelling must work too)
    limit: int | None = 10,
    anything=None,
):
    """A function with one parameter of each kind of type."""


def form_for(func, data=None):
    signature = inspect.signature(func)
    form_class = type("F", (forms.Form,), arguments.argument_fields(signature, arguments.type_hints(func)))
    return signature, form_class(data)


GOOD = {
    "arg_count": "3",
    "arg_ratio": "0.5",
    "arg_name": "  padded ",
    "arg_dry_run": "false",
    "arg_day": "2026-03-29",
    "arg_at": "2026-03-29T02:30",
    "arg_colour": "blue",
    "arg_mode": "3",
    "arg_ids": "[1, 2]",
    "arg_options": '{"a": 1}',
    "arg_note": "",
    "arg_limit": "",
    "arg_anything": '"text"',
}


def test_each_type_gets_its_own_field_with_required_and_defaults():
    _, form = form_for(sample)
    fields = form.fields
    assert isinstance(fields["arg_count"], forms.IntegerField) and fields["arg_count"].required
    assert isinstance(fields["arg_ratio"], forms.FloatField)
    assert isinstance(fields["arg_day"], forms.DateField) and isinstance(fields["arg_at"], forms.DateTimeField)
    assert [c[0] for c in fields["arg_colour"].choices] == ["", "red", "blue"]
    assert [c[0] for c in fields["arg_mode"].choices] == ["", "fast", "slow", "3"]
    assert [c[0] for c in fields["arg_dry_run"].choices] == ["", "true", "false"]
    assert not fields["arg_note"].required and not fields["arg_limit"].required
    assert fields["arg_limit"].initial == 10
    assert fields["arg_ids"].help_text == "list (JSON)"


def test_good_input_cleans_to_json_safe_arguments(settings):
    settings.TIME_ZONE = "Asia/Shanghai"
    signature, form = form_for(sample, GOOD)
    assert form.is_valid(), form.errors
    args, kwargs = arguments.arguments_from_cleaned(signature, form.cleaned_data)
    json.dumps(kwargs)  # publishable as JSON
    assert args == []
    assert kwargs["count"] == 3 and kwargs["ratio"] == 0.5 and kwargs["name"] == "  padded "
    assert kwargs["dry_run"] is False
    assert kwargs["day"] == "2026-03-29" and kwargs["at"] == "2026-03-29T02:30:00+08:00"
    assert kwargs["colour"] == "blue" and kwargs["mode"] == 3  # the Literal's own type comes back
    assert kwargs["ids"] == [1, 2] and kwargs["options"] == {"a": 1} and kwargs["anything"] == "text"
    assert "limit" not in kwargs and "note" not in kwargs  # empty optional with a default: the default applies


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("arg_count", "abc", "Enter a whole number"),
        ("arg_ratio", "nan", "Enter a number"),
        ("arg_dry_run", "maybe", "Select a valid choice"),
        ("arg_dry_run", "", "This field is required"),
        ("arg_day", "2026-02-31", "Enter a valid date"),
        ("arg_colour", "green", "Select a valid choice"),
        ("arg_mode", "medium", "Select a valid choice"),
        ("arg_ids", '{"a": 1}', "Must be a JSON list"),
        ("arg_options", "[1", "Not valid JSON"),
    ],
)
def test_bad_input_gets_a_message_on_its_field(field, value, message):
    _, form = form_for(sample, {**GOOD, field: value})
    assert not form.is_valid()
    assert message in " ".join(form.errors[field])


def test_optional_without_default_is_passed_as_none():
    def task(when: dt.date | None):
        pass

    signature, form = form_for(task, {"arg_when": ""})
    assert form.is_valid()
    assert arguments.arguments_from_cleaned(signature, form.cleaned_data) == ([], {"when": None})


def test_positional_only_parameters_are_sent_positionally():
    def task(a: int, /, b: int):
        pass

    signature, form = form_for(task, {"arg_a": "1", "arg_b": "2"})
    assert form.is_valid()
    assert arguments.arguments_from_cleaned(signature, form.cleaned_data) == ([1], {"b": 2})


def test_earlier_arguments_prefill_the_form_and_clean_to_the_same_values():
    signature = inspect.signature(sample)
    _, form = form_for(sample, GOOD)
    assert form.is_valid()
    args, kwargs = arguments.arguments_from_cleaned(signature, form.cleaned_data)
    initial = arguments.field_initial_from_arguments(signature, arguments.type_hints(sample), args, kwargs)
    refilled = {**GOOD, **{k: str(v) for k, v in initial.items()}}
    _, again = form_for(sample, refilled)
    assert again.is_valid(), again.errors
    assert arguments.arguments_from_cleaned(signature, again.cleaned_data)[1]["ids"] == [1, 2]


def test_variadic_tasks_are_launched_with_raw_json_only():
    def task(*items, **options):
        pass

    assert not arguments.has_typed_form(inspect.signature(task))


def test_example_task_form_has_typed_fields_with_defaults():
    form = LaunchForm(entry=catalogue.get_entry("examples.process_items"))
    assert isinstance(form.fields["arg_items"], forms.IntegerField) and form.fields["arg_items"].initial == 10
    assert isinstance(form.fields["arg_seconds_per_item"], forms.FloatField)
    assert form.fields["arg_seconds_per_item"].initial == 1.0


@pytest.mark.django_db
def test_typed_form_with_a_bad_field_is_400_with_the_message_and_records_nothing(staff_client):
    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.add"]),
        {"mode": "typed", "arg_x": "one", "arg_y": "2", "queue": "high", "priority": "HIGH"},
    )
    assert response.status_code == 400
    assert "Enter a whole number" in response.content.decode()
    assert not Run.objects.exists()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_typed_form_launches_with_converted_arguments(staff_client, celery_worker):
    from tests.conftest import wait_for

    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.add"]),
        {"mode": "typed", "arg_x": "40", "arg_y": "2", "queue": "high", "priority": "HIGH"},
    )
    assert response.status_code == 302
    run = Run.objects.get()
    assert run.kwargs == {"x": 40, "y": 2}
    wait_for(lambda: run.__class__.objects.get(pk=run.pk).state == "SUCCESS", message="the run to succeed")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[" * 5000 + "]" * 5000, "nested too deeply"),
        ("[" + "1" * 5000 + "]", "more than 30 digits"),
        ('[1, "x", 3]', "item 1 must be a whole number (int)"),
    ],
)
def test_typed_list_field_refuses_unbounded_or_mistyped_json_with_a_400(staff_client, value, message):
    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.sum_batch"]),
        {"mode": "typed", "arg_numbers": value, "queue": "default", "priority": "NORMAL"},
    )
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Run.objects.exists()


@pytest.mark.django_db
def test_typed_int_field_beyond_64_bits_is_refused(staff_client):
    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.add"]),
        {"mode": "typed", "arg_x": str(2**64), "arg_y": "1", "queue": "high", "priority": "HIGH"},
    )
    assert response.status_code == 400
    assert "less than or equal to" in response.content.decode()
