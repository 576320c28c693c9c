"""The launch page's two argument modes, typed fields and raw JSON, valid and invalid."""

import re

import pytest
from django.urls import reverse

from taskcenter.models import Run
from taskcenter.priorities import Priority

pytestmark = pytest.mark.django_db

OPTIONS = {"queue": "high", "priority": "HIGH", "countdown": "", "expires": "", "dedup_key": ""}


def post(client, task="examples.add", **data):
    return client.post(reverse("taskcenter:launch", args=[task]), {**OPTIONS, **data})


def section(page: str, name: str) -> str:
    """The opening tag of the ``args-typed`` or ``args-json`` block."""
    return re.search(rf'<div class="{name}"[^>]*>', page).group(0)


def input_tag(page: str, field: str) -> str:
    return re.search(rf'<(input|textarea)[^>]*name="{field}"[^>]*>', page).group(0)


def test_get_shows_typed_fields_with_the_json_box_hidden(staff_client):
    page = staff_client.get(reverse("taskcenter:launch", args=["examples.add"])).content.decode()
    assert "hidden" not in section(page, "args-typed")
    assert "hidden" in section(page, "args-json")
    assert "required" in input_tag(page, "arg_x")
    assert "This task takes no arguments" not in page


def test_raw_json_mode_launches_with_the_typed_fields_empty(staff_client, redis_server):
    response = post(staff_client, mode="json", args="[40, 2]", kwargs="{}", arg_x="", arg_y="")
    assert response.status_code == 302
    assert Run.objects.get().args == [40, 2]


def test_typed_mode_launches_and_ignores_the_json_box(staff_client, redis_server):
    response = post(staff_client, mode="typed", arg_x="40", arg_y="2", args="not json")
    assert response.status_code == 302
    assert Run.objects.get().kwargs == {"x": 40, "y": 2}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ('["a", 2]', "Argument &#x27;x&#x27; must be a whole number (int), got &quot;a&quot;"),
        ("[1, 2", "Not valid JSON"),
        ("[1]", "missing a required argument"),
    ],
)
def test_refused_raw_json_comes_back_in_json_mode_with_its_error(staff_client, args, message):
    response = post(staff_client, mode="json", args=args, kwargs="{}")
    assert response.status_code == 400
    page = response.content.decode()
    assert message in page
    assert "hidden" not in section(page, "args-json")  # the JSON box and its error are shown
    assert "hidden" in section(page, "args-typed")
    assert "This task takes no arguments" not in page
    assert "checked" in re.search(r'<input[^>]*value="json"[^>]*>', page).group(0)
    assert "required" not in input_tag(page, "arg_x")  # a hidden typed field cannot block the JSON launch
    assert args.replace('"', "&quot;") in page  # what the operator typed is kept
    assert not Run.objects.exists()


def test_refused_typed_input_comes_back_in_typed_mode_with_the_error_on_its_field(staff_client):
    response = post(staff_client, "examples.sum_batch", mode="typed", arg_numbers='[1, "x", 3]')
    assert response.status_code == 400
    page = response.content.decode()
    assert "hidden" not in section(page, "args-typed") and "hidden" in section(page, "args-json")
    field = re.search(r'<div class="field has-error">.*?</div>', page, re.S).group(0)
    assert 'name="arg_numbers"' in field and "item 1 must be a whole number (int)" in field
    assert not Run.objects.exists()


def test_typed_field_errors_of_the_form_itself_come_back_in_typed_mode(staff_client):
    response = post(staff_client, mode="typed", arg_x="one", arg_y="2")
    assert response.status_code == 400
    page = response.content.decode()
    assert "Enter a whole number" in page and "hidden" not in section(page, "args-typed")
    assert re.search(r'<textarea[^>]*name="args"[^>]*>\s*\[\]</textarea>', page)  # the JSON box keeps its default


def test_a_variadic_task_has_only_the_json_box():
    from taskcenter import catalogue
    from taskcenter.forms import LaunchForm

    def task(*items):
        pass

    entry = catalogue.CatalogueEntry(name="t", func=task, description="", queue=None, priority=Priority.NORMAL)
    form = LaunchForm({"args": "[1, 2]", **OPTIONS}, entry=entry)
    assert form.argument_mode == "json" and "mode" not in form.fields
    assert form.is_valid(), form.errors
    assert form.arguments() == ([1, 2], {})
