"""In a real browser, in each language: a worker's page and its controls (issue 13, part 7), on a
worker of this module's own (``spare_worker``), so the shared worker is never resized."""

import pytest
from django.urls import reverse
from playwright.sync_api import expect

from tests.browser_support import assert_page_in, in_language
from tests.test_browser import browser, log_in, operator, page, shot  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_an_operator_grows_the_pool_and_makes_the_worker_consume_another_queue(  # noqa: F811
    page, language, live_server, operator, spare_worker
):
    hostname = spare_worker.hostname
    log_in(page, live_server, "op")
    page.goto(f"{live_server.url}{reverse('taskcenter:worker_detail', args=[hostname])}")
    assert_page_in(page, language)
    expect(page.locator("#registered-tasks")).to_contain_text("examples.add")
    expect(page.locator("#worker-queues")).to_contain_text("spare")
    before = int(page.locator("#worker-pool").inner_text().split(",")[1].split()[0])
    shot(page, f"worker-{language}")

    page.locator("#pool-actions").get_by_role("button", name=in_language(language, "Grow"), exact=True).click()
    grown = in_language(language, "The pool of %(worker)s grows by %(n)d process(es).", worker=hostname, n=1)
    expect(page.locator(".messages")).to_contain_text(grown)
    # The page asks the pool to start its process at once: the new size shows on this page, not 5 s later.
    expect(page.locator("#worker-pool")).to_contain_text(f"{before + 1}", timeout=10_000)

    queues = page.locator("form", has=page.locator('select[name="queue"]'))
    queues.locator('select[name="queue"]').select_option("low")
    queues.get_by_role("button", name=in_language(language, "Consume"), exact=True).click()
    consumes = in_language(language, "Worker %(worker)s now consumes %(queue)s too.", worker=hostname, queue="low")
    expect(page.locator(".messages")).to_contain_text(consumes)
    expect(page.locator("#worker-queues")).to_contain_text("low")
    shot(page, f"worker-after-actions-{language}")

    queues = page.locator("form", has=page.locator('select[name="queue"]'))
    queues.locator('select[name="queue"]').select_option("low")
    queues.get_by_role("button", name=in_language(language, "Stop consuming"), exact=True).click()
    stopped = in_language(language, "Worker %(worker)s no longer consumes %(queue)s.", worker=hostname, queue="low")
    expect(page.locator(".messages")).to_contain_text(stopped)
    expect(page.locator("#worker-queues")).not_to_contain_text("low")

    page.locator("#pool-actions").get_by_role("button", name=in_language(language, "Shrink"), exact=True).click()
    shrunk = in_language(language, "The pool of %(worker)s shrinks by %(n)d process(es).", worker=hostname, n=1)
    expect(page.locator(".messages")).to_contain_text(shrunk)
