"""The launch page's raw JSON mode in a real browser: required typed fields must not block it."""

import re

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from tests.test_browser import browser, log_in, operator, page  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_raw_json_launch_with_empty_typed_fields_is_sent(page, live_server, operator, redis_server):  # noqa: F811
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tasks/examples.add/launch/")
    page.check('input[name="mode"][value="json"]')
    page.fill("#id_args", "[40, 2]")
    page.click("button.primary")
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+/$"))
    assert Run.objects.get().args == [40, 2]


def test_refused_raw_json_comes_back_in_the_json_box_with_its_error(page, live_server, operator):  # noqa: F811
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tasks/examples.add/launch/")
    page.check('input[name="mode"][value="json"]')
    page.fill("#id_args", '["a", 2]')
    page.click("button.primary")
    expect(page.locator("#id_args")).to_be_visible()
    expect(page.locator("#id_args")).to_have_value('["a", 2]')
    expect(page.locator(".args-json .error")).to_contain_text("Argument 'x' must be a whole number")
    expect(page.get_by_text("This task takes no arguments.")).to_have_count(0)
    # Back to the form: the typed fields are usable again.
    page.check('input[name="mode"][value="typed"]')
    expect(page.locator("#id_arg_x")).to_be_enabled()
    expect(page.locator("#id_args")).to_be_hidden()
    assert not Run.objects.exists()
