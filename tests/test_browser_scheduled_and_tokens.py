"""In a real browser: a delayed launch waits on the Scheduled page and runs when asked; an API token's life."""

import urllib.error
import urllib.request

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from tests.browser_support import assert_page_in, in_language
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_delayed_launch_waits_on_the_scheduled_page_and_run_now_runs_it(  # noqa: F811
    page, language, live_server, operator, celery_worker
):
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tasks/examples.add/launch/")
    page.fill("#id_arg_x", "20")
    page.fill("#id_arg_y", "22")
    page.fill("#id_countdown", "600")
    page.click("button.primary")
    expect(page.locator("dl")).to_contain_text(in_language(language, "Waiting"))
    expect(page.locator('dl a[href$="/scheduled/"]')).to_be_visible()
    run = Run.objects.get()
    page.goto(f"{live_server.url}/scheduled/")
    expect(page.locator("table.grid")).to_contain_text(run.task_id)
    assert_page_in(page, language)
    shot(page, f"scheduled-{language}")
    page.locator("table.grid").get_by_role("button", name=in_language(language, "Run now")).click()
    ran = in_language(
        language, "%(task)s [%(task_id)s] will run within a few seconds.", task="examples.add", task_id=run.task_id
    )
    expect(page.locator(".messages")).to_contain_text(ran)
    page.goto(f"{live_server.url}/runs/{run.task_id}/")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS", timeout=30_000)


def api_status(live_server, token: str) -> int:
    request = urllib.request.Request(f"{live_server.url}/api/v1/runs/", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def test_an_api_token_is_shown_once_works_and_stops_working_when_revoked(  # noqa: F811
    page, language, live_server, operator, redis_server
):
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/tokens/")
    page.fill("#id_name", "deploy script")
    page.get_by_role("button", name=in_language(language, "Create token")).click()
    token = page.locator("#new-token").input_value()
    assert token.startswith("tc_")
    shot(page, f"api-tokens-{language}")
    assert api_status(live_server, token) == 200
    page.goto(f"{live_server.url}/tokens/")
    assert token not in page.content()  # shown once only
    page.locator("table").get_by_role("button", name=in_language(language, "Revoke")).click()
    revoked_before_the_time = in_language(language, "revoked %(at)s").split("%(at)s")[0].strip()
    expect(page.locator("table")).to_contain_text(revoked_before_the_time)
    assert api_status(live_server, token) == 401
