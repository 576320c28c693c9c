"""In a real browser, in each language: History's search, a saved filter, a user's own time zone,
and a run page that tells a retried run's whole story (issue 13, parts 2, 4 and 5)."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services.launch import run_launch
from tests.browser_support import assert_page_in, in_language
from tests.conftest import wait_for, wait_for_state
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)
from tests.test_run_page_e2e import no_override  # noqa: F401 (fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def filter_history(page, language: str, **fields) -> None:
    """Fill History's filter boxes (others emptied) and submit."""
    for name in ("task_name", "task_id", "text"):
        page.fill(f'form.filters input[name="{name}"]', fields.get(name, ""))
    page.locator("form.filters").get_by_role("button", name=in_language(language, "Filter"), exact=True).click()


def listed(page, run):
    """The link to ``run`` in History's table (its task id is shortened in the cell)."""
    return page.locator(f'table.grid a[href$="/runs/{run.task_id}/"]').first


def test_history_finds_runs_by_words_of_their_arguments_by_part_of_a_name_and_by_task_id(  # noqa: F811
    page, language, live_server, operator, redis_server
):
    invoice = run_launch(task_name="examples.add", args=[1234, 5678], queue="high", priority="NORMAL")
    other = run_launch(task_name="examples.add", args=[1, 2], queue="high", priority="NORMAL")
    failing = run_launch(task_name="examples.fail", kwargs={"message": "disk quota exceeded"})
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/runs/")
    assert_page_in(page, language)

    filter_history(page, language, text="5678")  # a word of the arguments
    expect(listed(page, invoice)).to_have_count(1)
    expect(listed(page, other)).to_have_count(0)
    expect(listed(page, failing)).to_have_count(0)
    shot(page, f"history-search-{language}")

    filter_history(page, language, text="quota")  # a word of the keyword arguments
    expect(listed(page, failing)).to_have_count(1)
    expect(listed(page, invoice)).to_have_count(0)

    filter_history(page, language, task_name="ADD")  # part of a name, in any case
    expect(listed(page, invoice)).to_have_count(1)
    expect(listed(page, other)).to_have_count(1)
    expect(listed(page, failing)).to_have_count(0)

    filter_history(page, language, task_id=other.task_id[:8])  # the start of a task id
    expect(listed(page, other)).to_have_count(1)
    expect(listed(page, invoice)).to_have_count(0)

    page.fill('#save-filter input[name="name"]', "mine")
    page.locator("#save-filter").get_by_role("button", name=in_language(language, "Save this filter")).click()
    page.goto(f"{live_server.url}/runs/")
    page.locator("#saved-filters").get_by_role("link", name="mine").click()
    expect(listed(page, other)).to_have_count(1)
    expect(listed(page, invoice)).to_have_count(0)
    shot(page, f"history-saved-filter-{language}")


def test_a_user_chooses_a_time_zone_and_every_time_shows_it_with_its_offset(  # noqa: F811
    page, language, live_server, operator, redis_server
):
    run = run_launch(task_name="examples.add", args=[3, 4], queue="high", priority="NORMAL")
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/preferences/")
    assert_page_in(page, language)
    page.fill("#id_timezone", "Asia/Tokyo")
    page.locator("main form").get_by_role("button", name=in_language(language, "Save"), exact=True).click()
    page.goto(f"{live_server.url}/runs/{run.task_id}/")
    created = Run.objects.get(pk=run.pk).created_at.astimezone(ZoneInfo("Asia/Tokyo"))
    shown = page.locator("time").first
    expect(shown).to_contain_text("UTC+09:00")
    assert shown.get_attribute("title").startswith("Asia/Tokyo")
    expect(page.locator("main")).to_contain_text(created.strftime("%Y-%m-%d %H:%M"))
    shot(page, f"run-in-tokyo-time-{language}")
    page.goto(f"{live_server.url}/preferences/")
    page.fill("#id_timezone", "Europe/Nowhere")
    page.locator("main form").get_by_role("button", name=in_language(language, "Save"), exact=True).click()
    expect(page.locator("main")).to_contain_text(in_language(language, "Unknown time zone: choose one from the list."))
    assert datetime.now(ZoneInfo("Asia/Tokyo")).utcoffset().total_seconds() == 9 * 3600


def test_the_run_page_shows_each_attempt_of_a_retried_run_with_its_worker_and_error(  # noqa: F811
    page, language, live_server, operator, celery_worker, celery_monitor, no_override
):
    run = run_launch(task_name="examples.flaky", kwargs={"failures": 1})
    wait_for_state(run, "SUCCESS", timeout=60)
    wait_for(lambda: len(run_by_task_id(run.task_id).attempt_list) == 2, timeout=30, message="two attempts recorded")
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}/runs/{run.task_id}/")
    assert_page_in(page, language)
    expect(page.locator("h1 .state")).to_have_text("SUCCESS")
    timeline = page.locator("table.timeline")
    retried = timeline.locator("tr.timeline-entry.state-retry")
    expect(retried).to_contain_text("attempt 1: the server did not answer")
    expect(retried).to_contain_text(celery_worker.hostname)
    expect(timeline.locator("tr.timeline-entry.state-success")).to_contain_text(celery_worker.hostname)
    expect(timeline.locator("tr.timeline-entry.state-started")).to_have_count(2)  # one per attempt
    shot(page, f"run-story-{language}")
