"""In a real browser: the Broker page, and the queue browser deleting one message (no worker consumes here)."""

import pytest
from playwright.sync_api import expect

from taskcenter.models import Run
from taskcenter.services.launch import run_launch
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_broker_page_and_the_queue_browser_delete_one_message(page, live_server, operator, private_broker):  # noqa: F811
    runs = [run_launch(task_name="examples.add", args=[i, i], queue="low", priority="NORMAL") for i in range(3)]
    private_broker.lpush("low\x06\x166", b"\x00garbage from another client")
    log_in(page, live_server, "op")
    page.click("nav >> text=Broker")
    expect(page.locator("#broker-policy")).to_contain_text("noeviction")
    expect(page.locator("#broker-queue-low")).to_contain_text("4")
    shot(page, "broker")
    page.click("#broker-queue-low >> text=Browse messages")
    rows = page.locator("tr.queue-message")
    expect(rows).to_have_count(4)
    expect(page.locator("tr.unreadable")).to_contain_text("Unreadable")
    shot(page, "queue-browser")
    page.once("dialog", lambda dialog: dialog.accept())
    rows.nth(1).locator("button:has-text('Delete')").click()
    expect(page.locator(".messages")).to_contain_text(f"Deleted examples.add [{runs[1].task_id}]")
    expect(rows).to_have_count(3)
    expect(page.locator("table.messages-table")).not_to_contain_text(runs[1].task_id)
    assert Run.objects.get(pk=runs[1].pk).state == "REVOKED"
    shot(page, "queue-browser-after-delete")
