"""In a real browser: the Broker page, and the queue browser deleting one message (no worker consumes here)."""

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from taskcenter.services.launch import run_launch
from tests.browser_support import assert_page_in, in_language
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_broker_page_and_the_queue_browser_delete_one_message(
    page, language, live_server, operator, private_broker
):  # noqa: F811
    runs = [run_launch(task_name="examples.add", args=[i, i], queue="low", priority="NORMAL") for i in range(3)]
    private_broker.lpush("low\x06\x166", b"\x00garbage from another client")
    log_in(page, live_server, "op")
    page.locator("nav").get_by_role("link", name=in_language(language, "Broker"), exact=True).click()
    assert_page_in(page, language)
    expect(page.locator("#broker-policy")).to_contain_text("noeviction")
    expect(page.locator("#broker-queue-low")).to_contain_text("4")
    shot(page, f"broker-{language}")
    page.locator("#broker-queue-low").get_by_role("link", name=in_language(language, "Browse messages")).click()
    rows = page.locator("tr.queue-message")
    expect(rows).to_have_count(4)
    expect(page.locator("tr.unreadable")).to_contain_text(in_language(language, "Unreadable"))
    shot(page, f"queue-browser-{language}")
    page.once("dialog", lambda dialog: dialog.accept())
    rows.nth(1).get_by_role("button", name=in_language(language, "Delete"), exact=True).click()
    deleted = in_language(
        language, "Deleted %(what)s from queue %(queue)s.", what=f"examples.add [{runs[1].task_id}]", queue="low"
    )
    expect(page.locator(".messages")).to_contain_text(deleted)
    expect(rows).to_have_count(3)
    expect(page.locator("table.messages-table")).not_to_contain_text(runs[1].task_id)
    assert Run.objects.get(pk=runs[1].pk).state == "REVOKED"
    shot(page, f"queue-browser-after-delete-{language}")
