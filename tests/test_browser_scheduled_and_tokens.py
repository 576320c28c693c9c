"""In a real browser: a delayed launch waits on the Scheduled page and runs when asked; an API token's life."""

import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_delayed_launch_waits_on_the_scheduled_page_and_run_now_runs_it(page, live_server, operator, celery_worker):  # noqa: F811
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tasks/examples.add/launch/")
    page.fill("#id_arg_x", "20")
    page.fill("#id_arg_y", "22")
    page.fill("#id_countdown", "600")
    page.click("button.primary")
    expect(page.locator("dl")).to_contain_text("scheduled set")
    run = Run.objects.get()
    page.goto(f"{live_server.url}/scheduled/")
    expect(page.locator("table.grid")).to_contain_text(run.task_id)
    shot(page, "scheduled")
    page.click("text=Run now")
    expect(page.locator(".messages")).to_contain_text("will run within a few seconds")
    page.goto(f"{live_server.url}/runs/{run.task_id}/")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS", timeout=30_000)


def api_status(live_server, token: str) -> int:
    request = urllib.request.Request(f"{live_server.url}/api/v1/runs/", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_api_token_is_shown_once_works_and_stops_working_when_revoked(page, live_server, operator, redis_server):  # noqa: F811
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tokens/")
    page.fill("#id_name", "deploy script")
    page.click("text=Create token")
    token = page.locator("#new-token").input_value()
    assert token.startswith("tc_")
    shot(page, "api-tokens")
    assert api_status(live_server, token) == 200
    page.goto(f"{live_server.url}/tokens/")
    assert token not in page.content()  # shown once only
    page.click("button:has-text('Revoke')")
    expect(page.locator("table")).to_contain_text("revoked")
    assert api_status(live_server, token) == 401
