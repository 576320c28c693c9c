"""The schedule form in a real headless browser: raw JSON mode with required typed fields left empty."""

import pytest
from django_celery_beat.models import PeriodicTask

from tests.test_browser import browser, log_in, operator, page  # noqa: F401  (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_raw_json_mode_submits_with_the_typed_fields_empty_and_a_refusal_stays_in_json_mode(
    page,  # noqa: F811
    live_server,
    operator,  # noqa: F811
):
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/schedules/new/?task=examples.add")
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
    assert "Arguments do not fit" in page.inner_text(".args-json")
    assert not page.is_visible("text=This task takes no arguments.")

    page.fill("#id_args", "[]")
    page.fill("#id_kwargs", '{"x": 1, "y": 2}')
    page.click("#schedule-form button[type=submit]")
    page.wait_for_url("**/schedules/*/")
    assert PeriodicTask.objects.get(name="json add").kwargs == '{"x": 1, "y": 2}'
