"""End-to-end tests in a real headless browser (Playwright driving the system's Chromium).

Chromium comes from Debian's ``chromium`` package (installed by .ci/run), so no
browser is downloaded. Without it these tests skip locally and fail in CI.
Screenshots of the main pages are saved in test-output/screenshots/.
"""

import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from taskcenter.models import Run
from tests.browser_support import LANGUAGES, assert_page_in, in_language

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SHOTS = Path(__file__).resolve().parent.parent / "test-output" / "screenshots"
PASSWORD = "pw-browser-123"

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("Debian's chromium is required for the browser tests in CI (apt-get install chromium)")
    pytest.skip("no system Chromium (apt-get install chromium)", allow_module_level=True)

from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def browser():
    os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's sync API runs an event loop
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run"],
        )  # fmt: skip
        yield browser
        browser.close()


@pytest.fixture
def page(browser, language):
    """A desktop browser asking for ``language`` (each test runs once per interface language)."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale=LANGUAGES[language])
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator(".userbox")).to_contain_text(username)


@pytest.fixture
def operator(django_user_model):
    return django_user_model.objects.create_superuser(username="op", password=PASSWORD)


def test_operator_launches_the_long_task_and_watches_its_progress_reach_100(
    page, language, live_server, operator, celery_worker
):
    log_in(page, live_server, "op")
    assert_page_in(page, language)
    assert page.locator("h1").inner_text() == in_language(language, "Catalogue")
    shot(page, f"catalogue-{language}")
    page.goto(f"{live_server.url}/tasks/examples.process_items/launch/")
    page.fill("#id_arg_items", "5")
    page.fill("#id_arg_seconds_per_item", "0.5")
    shot(page, f"launch-form-{language}")
    page.click("button.primary")

    live = page.locator("[data-progress-for]")
    per_second = in_language(language, "{rate} items/s").replace("{rate}", "").strip()
    expect(live.locator(".progress-text")).to_contain_text(per_second, timeout=30_000)  # moving, with a speed
    shot(page, f"run-in-progress-{language}")
    expect(page.locator("h1 .state")).to_have_text("SUCCESS", timeout=30_000)  # the page reloads when done
    assert Run.objects.get().state == "SUCCESS"
    shot(page, f"run-detail-{language}")
    page.goto(f"{live_server.url}/runs/")
    expect(page.locator("table.grid")).to_contain_text("examples.process_items")
    shot(page, f"history-{language}")
    for name, path in [("queues", "/queues/"), ("workers", "/workers/"), ("schedules", "/schedules/"),
                       ("audit", "/audit/")]:  # fmt: skip
        page.goto(f"{live_server.url}{path}")
        assert_page_in(page, language)
        shot(page, f"{name}-{language}")


def test_dashboard_shows_counts_and_charts_of_what_ran(page, language, live_server, operator, celery_monitor):
    from taskcenter.services.launch import run_launch
    from tests.conftest import wait_for

    runs = [run_launch(task_name="examples.add", args=[i, i]) for i in range(3)]
    runs.append(run_launch(task_name="examples.fail"))
    wait_for(lambda: all(Run.objects.get(pk=r.pk).is_finished for r in runs), timeout=30, message="the runs")
    log_in(page, live_server, "op")

    def dashboard_counts():
        page.goto(f"{live_server.url}/dashboard/?refresh=0")
        counted = page.locator("[data-stat=succeeded]").inner_text().strip() == "3"
        return counted and in_language(language, "online") in page.locator("main").inner_text()  # a heartbeat seen

    wait_for(dashboard_counts, timeout=30, message="the dashboard to count the runs")
    assert page.locator("[data-stat=failed]").inner_text().strip() == "1"
    assert page.locator("svg").count() >= 3  # throughput, runtime and queue charts
    shot(page, f"dashboard-{language}")
    page.goto(f"{live_server.url}/alerts/")
    assert_page_in(page, language)
    shot(page, f"alerts-{language}")


def test_view_only_operator_sees_pages_without_any_action_button(
    page, language, live_server, django_user_model, celery_worker
):
    viewer = django_user_model.objects.create_user(username="viewer", password=PASSWORD, is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_run"))
    run = Run.objects.create(task_result_id="browser-1", task_name="examples.add", queue="high", args=[1, 2])
    log_in(page, live_server, "viewer")
    for path in ["/", f"/runs/{run.task_id}/", "/runs/", "/queues/", "/workers/", "/schedules/", "/dashboard/"]:
        page.goto(f"{live_server.url}{path}")
        expect(page.locator("main")).to_be_visible()
        for english in ["Launch…", "Re-run…", "Cancel…", "Pause", "Purge", "Grow", "Run now", "New schedule…"]:
            label = in_language(language, english)
            assert page.get_by_role("button", name=label).count() == 0, f"{label!r} shown on {path}"
            assert page.get_by_role("link", name=label).count() == 0, f"{label!r} shown on {path}"
    shot(page, f"view-only-schedules-{language}")
