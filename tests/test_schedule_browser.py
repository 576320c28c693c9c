"""The schedule form in a real headless browser: raw JSON mode with required typed fields left empty."""

import pytest
from django_celery_beat.models import PeriodicTask

from tests.browser_support import assert_page_in, in_language
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_raw_json_mode_submits_with_the_typed_fields_empty_and_a_refusal_stays_in_json_mode(
    page,  # noqa: F811
    language,  # noqa: F811
    live_server,
    operator,  # noqa: F811
):
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/schedules/new/?task=examples.add")
    assert_page_in(page, language)
    page.fill("#id_name", "json add")
    page.check('input[name="kind"][value="interval"]')
    page.fill("#id_every", "5")
    page.check('input[name="mode"][value="json"]')  # the typed x and y (required) stay empty
    page.fill("#id_args", "[1, 2, 3]")
    page.fill("#id_kwargs", "{}")
    page.click("#schedule-form button[type=submit]")

    # Refused by the server: the page comes back in JSON mode with the box and its error.
    page.wait_for_selector(".args-json:not([hidden])")
    assert page.is_checked('input[name="mode"][value="json"]')
    fit = in_language(
        language, "Arguments do not fit %(signature)s: %(error)s.", signature="add(x: int, y: int) -> int", error=""
    )
    assert fit.split(":")[0].split("：")[0].strip() in page.inner_text(".args-json")
    assert page.get_by_text(in_language(language, "This task takes no arguments.")).count() == 0
    shot(page, f"schedule-json-refused-{language}")

    page.fill("#id_args", "[]")
    page.fill("#id_kwargs", '{"x": 1, "y": 2}')
    page.click("#schedule-form button[type=submit]")
    page.wait_for_url("**/schedules/*/")
    assert PeriodicTask.objects.get(name="json add").kwargs == '{"x": 1, "y": 2}'
