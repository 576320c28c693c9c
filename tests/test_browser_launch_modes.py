"""The launch page's raw JSON mode in a real browser: required typed fields must not block it."""

import re

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from tests.browser_support import LANGUAGES, assert_page_in, in_language
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_raw_json_launch_with_empty_typed_fields_is_sent(page, language, live_server, operator, redis_server):  # noqa: F811
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tasks/examples.add/launch/")
    assert_page_in(page, language)
    page.check('input[name="mode"][value="json"]')
    page.fill("#id_args", "[40, 2]")
    page.click("button.primary")
    expect(page).to_have_url(re.compile(r"/runs/[0-9a-f-]+/$"))
    assert Run.objects.get().args == [40, 2]


def test_refused_raw_json_comes_back_in_the_json_box_with_its_error(page, language, live_server, operator):  # noqa: F811
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tasks/examples.add/launch/")
    page.check('input[name="mode"][value="json"]')
    page.fill("#id_args", '["a", 2]')
    page.click("button.primary")
    expect(page.locator("#id_args")).to_be_visible()
    expect(page.locator("#id_args")).to_have_value('["a", 2]')
    must_be = in_language(language, "Argument %(name)s must be %(expected)s.", name="'x'", expected="")
    expect(page.locator(".args-json .error")).to_contain_text(must_be.rstrip(".。 "))
    expect(page.locator(".args-json .error")).to_contain_text(in_language(language, "a whole number (int)"))
    expect(page.get_by_text(in_language(language, "This task takes no arguments."))).to_have_count(0)
    shot(page, f"launch-json-refused-{language}")
    # Back to the form: the typed fields are usable again.
    page.check('input[name="mode"][value="typed"]')
    expect(page.locator("#id_arg_x")).to_be_enabled()
    expect(page.locator("#id_args")).to_be_hidden()
    assert not Run.objects.exists()


@pytest.fixture
def page_without_javascript(browser, language):  # noqa: F811 (the imported fixtures)
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, java_script_enabled=False, locale=LANGUAGES[language]
    )
    new_page = context.new_page()
    new_page.set_default_timeout(20_000)
    yield new_page
    context.close()


def test_without_javascript_raw_json_is_reached_by_a_link_and_launches(
    page_without_javascript,
    language,  # noqa: F811
    live_server,
    operator,  # noqa: F811
    redis_server,
):
    nojs = page_without_javascript
    log_in(nojs, live_server, "op")
    nojs.goto(f"{live_server.url}/tasks/examples.add/launch/")
    expect(nojs.locator('input[name="mode"]').first).to_be_hidden()  # radios need the script
    nojs.get_by_role("link", name=in_language(language, "Raw JSON")).click()
    expect(nojs).to_have_url(re.compile(r"\?mode=json$"))
    expect(nojs.locator("#id_args")).to_be_visible()
    expect(nojs.locator("#id_arg_x")).to_be_hidden()
    nojs.fill("#id_args", "[40, 2]")
    nojs.click("button.primary")
    expect(nojs).to_have_url(re.compile(r"/runs/[0-9a-f-]+/$"))
    assert Run.objects.get().args == [40, 2]
    shot(nojs, f"launch-nojs-{language}")


def test_without_javascript_deleting_a_schedule_asks_on_a_page(
    page_without_javascript, language, live_server, operator
):  # noqa: F811
    from django_celery_beat.models import PeriodicTask

    from tests.test_schedules import make_schedule

    task = make_schedule()
    nojs = page_without_javascript
    log_in(nojs, live_server, "op")
    nojs.goto(f"{live_server.url}/schedules/{task.pk}/")
    nojs.get_by_role("button", name=in_language(language, "Delete…")).click()
    expect(
        nojs.get_by_role("heading", name=in_language(language, "Delete schedule %(name)s?", name="tick"))
    ).to_be_visible()
    shot(nojs, f"schedule-delete-confirm-{language}")
    assert PeriodicTask.objects.filter(pk=task.pk).exists()
    nojs.get_by_role("button", name=in_language(language, "Delete"), exact=True).click()
    expect(nojs.locator("body")).to_contain_text("tick")
    expect(nojs).to_have_url(re.compile(r"/schedules/$"))
    assert not PeriodicTask.objects.filter(pk=task.pk).exists()
