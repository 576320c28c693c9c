"""What a newcomer meets first, with no JavaScript: the favicon, deleting a schedule, raw JSON arguments."""

import re

import pytest
from django.urls import reverse
from django_celery_beat.models import PeriodicTask

from taskcenter.models import Run
from tests.test_launch_form_modes import OPTIONS, input_tag, section
from tests.test_schedules import make_schedule

pytestmark = pytest.mark.django_db


def test_favicon_ico_leads_to_the_shipped_icon_without_login(client):
    response = client.get("/favicon.ico")
    assert response.status_code == 302
    assert response["Location"].endswith("taskcenter/favicon.svg")
    icon = client.get(response["Location"])
    assert icon.status_code == 200 and icon["Content-Type"] == "image/svg+xml"
    assert b"<svg" in b"".join(icon.streaming_content)
    login_page = client.get(reverse("login")).content.decode()
    assert '<link rel="icon" href="/static/taskcenter/favicon.svg"' in login_page


def test_deleting_a_schedule_asks_on_a_page_first(staff_client):
    task = make_schedule()
    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert "onsubmit" not in detail  # the question must not depend on a script

    asked = staff_client.post(reverse("taskcenter:schedule_action"), {"action": "delete", "ids": [task.pk]})
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Delete schedule tick?" in page
    assert '<input type="hidden" name="confirm" value="on">' in page
    assert f'<input type="hidden" name="ids" value="{task.pk}">' in page
    assert PeriodicTask.objects.filter(pk=task.pk).exists()

    done = staff_client.post(
        reverse("taskcenter:schedule_action"), {"action": "delete", "ids": [task.pk], "confirm": "on"}
    )
    assert done.status_code == 302 and done["Location"] == reverse("taskcenter:schedule_list")
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()


def test_a_user_who_may_not_delete_gets_no_confirmation_page_either(viewer_client):
    task = make_schedule()
    for extra in ({}, {"confirm": "on"}):
        response = viewer_client.post(
            reverse("taskcenter:schedule_action"), {"action": "delete", "ids": [task.pk], **extra}
        )
        assert response.status_code == 403
    assert PeriodicTask.objects.filter(pk=task.pk).exists()


def test_the_raw_json_mode_is_a_link_that_works_without_javascript(staff_client):
    url = reverse("taskcenter:launch", args=["examples.add"])
    typed = staff_client.get(url).content.decode()
    assert '<a href="?mode=json">Raw JSON</a>' in typed

    page = staff_client.get(url + "?mode=json").content.decode()
    assert "hidden" in section(page, "args-typed") and "hidden" not in section(page, "args-json")
    assert re.search(r'<input[^>]*value="json"[^>]*checked', page)  # the mode sent with the form
    assert '<a href="?mode=typed">Form</a>' in page
    assert "required" not in input_tag(page, "arg_x")  # a hidden empty field cannot block the launch
    assert "hidden" not in section(staff_client.get(url + "?mode=raw").content.decode(), "args-json")


def test_a_launch_in_raw_json_mode_without_javascript_sends_every_field_and_runs(staff_client, redis_server):
    # Without a script the hidden typed fields are sent too, empty.
    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.add"]),
        {**OPTIONS, "mode": "json", "args": "[40, 2]", "kwargs": "{}", "arg_x": "", "arg_y": ""},
    )
    assert response.status_code == 302
    assert Run.objects.get().args == [40, 2]


def test_the_schedule_form_has_the_same_mode_links(staff_client):
    url = reverse("taskcenter:schedule_new") + "?task=examples.add"
    page = staff_client.get(url + "&mode=json").content.decode()
    assert "hidden" in section(page, "args-typed") and "hidden" not in section(page, "args-json")
    assert '<a href="?task=examples.add&amp;mode=typed">Form</a>' in page
