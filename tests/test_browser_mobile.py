"""Every page at a phone's width (390 x 844) in a real browser, and the live dashboard (issue 13, parts 3 and 6).

No page scrolls sideways (``scrollWidth <= innerWidth``); the navigation collapses behind
a menu button that opens it with or without JavaScript; screenshots of every page go to
test-output/screenshots/mobile-<language>-*.png, every page in English and in Simplified Chinese
(the browser asks for each language). The page list is checked against taskcenter/urls.py,
so a new page cannot be left out.
"""

from datetime import timedelta

import pytest
from django.urls import URLPattern, reverse
from django.utils import timezone

from tests.browser_support import LANGUAGES, in_language
from tests.test_browser import CHROMIUM, PASSWORD, log_in, shot
from tests.test_browser import browser as browser  # noqa: F401 (the module's browser fixture)

from playwright.sync_api import expect  # isort: skip

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]
assert CHROMIUM

PHONE = {"width": 390, "height": 844}
#: Routes that are no page of their own: POST-only actions (their forms are on the pages
#: visited), the progress JSON and the dashboard's live fragment (fetched by live.js). A worker's
#: page needs a worker online: test_a_worker_page_fits_a_phone visits it.
NOT_PAGES = {
    "worker_detail", "worker_pool_restart", "worker_autoscale", "worker_queue", "worker_time_limit",
    "run_progress", "dashboard_live", "bulk_retry", "queue_pause", "queue_resume", "queue_purge", "worker_pool",
    "rate_limit", "schedule_action", "channel_delete", "channel_test", "rule_delete", "deadletter_bulk",
    "deadletter_discard", "failure_retry", "failure_status", "failure_recover", "failure_deadletter",
    "recovery_policy", "recovery_bulk", "run_recover", "scheduled_run_now", "api_token_revoke",
    "queue_message_delete", "queue_message_deadletter", "saved_filter_create", "saved_filter_remove",
}  # fmt: skip
LONG_TASK_ID = "7f3c2a9e-1b4d-4e8f-9a6b-3c5d7e9f1a2b"


@pytest.fixture
def phone(browser):  # noqa: F811
    context = browser.new_context(viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture(params=list(LANGUAGES))
def phone_in(request, browser):  # noqa: F811
    """A phone whose browser asks for each language in turn; yields (page, language code)."""
    context = browser.new_context(
        viewport=PHONE, device_scale_factor=1, is_mobile=True, has_touch=True, locale=LANGUAGES[request.param]
    )
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page, request.param
    context.close()


@pytest.fixture
def objects(django_user_model, redis_server):
    """One of everything a detail page needs: run, batch, schedule, dead letter, failure group, channel, rule, token."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask
    from django_celery_results.models import TaskResult

    from taskcenter.models import Batch, DeadLetter, FailureGroup, NotificationChannel, Run
    from taskcenter.services.api_tokens import token_create
    from taskcenter.services.notifications import rule_save

    operator = django_user_model.objects.create_superuser(username="op", password=PASSWORD)
    now = timezone.now()
    batch = Batch.objects.create(task_name="examples.add", item_count=2, batch_size=1, launched_by=operator)
    result = TaskResult.objects.create(
        task_id=LONG_TASK_ID,
        task_name="examples.fail",
        status="FAILURE",
        result='{"exc_type": "ExampleFailure", "exc_message": "a rather long message that should wrap on a phone"}',
        traceback="Traceback (most recent call last):\n  File \"/srv/app/tasks.py\", line 10, in fail\n"
        + "    raise ExampleFailure('x' * 200)\nExampleFailure: " + "x" * 200,
        worker="celery@a-rather-long-worker-hostname.example.internal",
        date_started=now - timedelta(seconds=3),
    )  # fmt: skip
    run = Run.objects.create(
        task_result=result, task_name="examples.fail", queue="default", args=[1, "two", {"three": 3}], batch=batch
    )
    every, _ = IntervalSchedule.objects.get_or_create(every=10, period=IntervalSchedule.MINUTES)
    schedule = PeriodicTask.objects.create(
        name="every ten minutes", task="examples.add", kwargs='{"x": 1, "y": 2}', interval=every
    )
    letter = DeadLetter.objects.create(
        task_id="dead-1", task_name="examples.fail", queue="default", reason=DeadLetter.Reason.FAILED,
        exception_type="ExampleFailure", message="bad value " * 20, traceback="Traceback\n" + "y" * 300, args=[1, 2],
    )  # fmt: skip
    group = FailureGroup.objects.create(
        fingerprint="f" * 40, task_name="examples.fail", exception_type="ExampleFailure",
        location="tasks.py:fail", count=1, first_seen=now, last_seen=now,
    )  # fmt: skip
    channel = NotificationChannel.objects.create(name="mail", kind="email", addresses="ops@example.com")
    rule = rule_save(actor=None, alert_name="*", channel=channel)
    token, _secret = token_create(user=operator, name="phone", actor=operator)
    return {"run": run, "batch": batch, "schedule": schedule, "letter": letter, "group": group,
            "channel": channel, "rule": rule, "token": token}  # fmt: skip


def pages(objects) -> dict[str, str]:
    """URL name -> URL of every page of taskcenter/urls.py (GET)."""
    task = "examples.add"
    return {
        "dashboard": reverse("taskcenter:dashboard"),
        "alerts": reverse("taskcenter:alerts"),
        "preferences": reverse("taskcenter:preferences"),
        "catalogue": reverse("taskcenter:catalogue"),
        "launch": reverse("taskcenter:launch", args=[task]),
        "batch_launch": reverse("taskcenter:batch_launch", args=["examples.sum_batch"]),
        "workflow_launch": reverse("taskcenter:workflow_launch"),
        "batch_detail": reverse("taskcenter:batch_detail", args=[objects["batch"].pk]),
        "run_list": reverse("taskcenter:run_list"),
        "run_detail": reverse("taskcenter:run_detail", args=[LONG_TASK_ID]),
        "run_cancel": reverse("taskcenter:run_cancel", args=[LONG_TASK_ID]),
        "run_retry": reverse("taskcenter:run_retry", args=[LONG_TASK_ID]),
        "queue_list": reverse("taskcenter:queue_list"),
        "queue_messages": reverse("taskcenter:queue_messages", args=["default"]),
        "broker": reverse("taskcenter:broker"),
        "worker_list": reverse("taskcenter:worker_list"),
        "schedule_list": reverse("taskcenter:schedule_list"),
        "schedule_new": reverse("taskcenter:schedule_new"),
        "schedule_detail": reverse("taskcenter:schedule_detail", args=[objects["schedule"].pk]),
        "schedule_edit": reverse("taskcenter:schedule_edit", args=[objects["schedule"].pk]),
        "scheduled_list": reverse("taskcenter:scheduled_list"),
        "audit_list": reverse("taskcenter:audit_list"),
        "notification_list": reverse("taskcenter:notification_list"),
        "channel_new": reverse("taskcenter:channel_new"),
        "channel_edit": reverse("taskcenter:channel_edit", args=[objects["channel"].pk]),
        "rule_new": reverse("taskcenter:rule_new"),
        "rule_edit": reverse("taskcenter:rule_edit", args=[objects["rule"].pk]),
        "deadletter_list": reverse("taskcenter:deadletter_list"),
        "deadletter_detail": reverse("taskcenter:deadletter_detail", args=[objects["letter"].pk]),
        "deadletter_replay": reverse("taskcenter:deadletter_replay", args=[objects["letter"].pk]),
        "failure_list": reverse("taskcenter:failure_list"),
        "failure_detail": reverse("taskcenter:failure_detail", args=[objects["group"].fingerprint]),
        "retry_policy": reverse("taskcenter:retry_policy", args=[task]),
        "retry_policy_edit": reverse("taskcenter:retry_policy_edit", args=[task]),
        "recovery": reverse("taskcenter:recovery"),
        "api_tokens": reverse("taskcenter:api_tokens"),
    }


def test_the_page_list_covers_every_route_of_the_task_center():
    from taskcenter import urls

    names = {pattern.name for pattern in urls.urlpatterns if isinstance(pattern, URLPattern)}
    fake = {key: 1 for key in ("batch", "schedule", "letter", "group", "channel", "rule")}
    fake = {key: type("O", (), {"pk": 1, "fingerprint": "f" * 40})() for key in fake}
    covered = set(pages(fake)) | NOT_PAGES
    assert names - covered == set(), "a page of taskcenter/urls.py is not visited at 390 px"
    assert covered - names == set(), "a visited page is no longer a route"


def fits(page) -> tuple[int, int]:
    return page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")


def assert_fits(page, name: str) -> None:
    scroll, inner = fits(page)
    if scroll > inner:
        wide = page.evaluate(
            """() => Array.from(document.querySelectorAll('body *')).filter(e => {
                 const r = e.getBoundingClientRect(); return r.right > window.innerWidth + 1;
               }).slice(0, 5)
                 .map(e => e.tagName + '.' + e.className + '#' + e.id)"""
        )
        raise AssertionError(f"{name} scrolls sideways: {scroll} px wide at {inner} px; too wide: {wide}")


def assert_menu_reaches_its_links(page, name: str) -> None:
    nav = page.locator("#site-nav")
    button = page.locator("label.menu-button")
    expect(button).to_be_visible()
    expect(nav).to_be_hidden()
    button.click()
    expect(nav).to_be_visible()
    for box in nav.locator("a").evaluate_all("links => links.map(a => a.getBoundingClientRect().toJSON())"):
        assert box["width"] > 0 and box["right"] <= PHONE["width"], (name, box)
    assert_fits(page, f"{name} (menu open)")
    button.click()
    expect(nav).to_be_hidden()


def test_every_page_fits_a_phone_and_its_menu_opens(phone_in, live_server, objects, live_alert_banner):
    phone, language = phone_in
    log_in_mobile(phone, live_server, language)
    for name, url in pages(objects).items():
        response = phone.goto(f"{live_server.url}{url}")
        assert response.status < 400, (name, response.status)
        assert phone.locator("html").get_attribute("lang") == language, name
        assert_fits(phone, f"{name} ({language})")
        shot(phone, f"mobile-{language}-{name}")
        assert_menu_reaches_its_links(phone, name)

    phone.goto(f"{live_server.url}{reverse('taskcenter:catalogue')}")
    launch = phone.locator(f"#catalogue a[href='{reverse('taskcenter:launch', args=['examples.add'])}']")
    box = launch.bounding_box()
    assert box and box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"], "the catalogue reflows: Launch in view"
    launch.click()
    expect(phone.locator("h1")).to_contain_text("examples.add")

    phone.goto(f"{live_server.url}{reverse('taskcenter:run_list')}")
    phone.click("label.menu-button")
    phone.locator("#site-nav").get_by_role("link", name=in_language(language, "Dead letters")).click()
    expect(phone.locator("h1")).to_contain_text(in_language(language, "Dead letters"))
    assert phone.url.endswith(reverse("taskcenter:deadletter_list"))


def log_in_mobile(page, live_server, language: str = "en") -> None:
    page.goto(f"{live_server.url}/login/")
    assert_fits(page, f"login ({language})")
    shot(page, f"mobile-{language}-login")
    page.fill("#id_username", "op")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    expect(page.locator("label.menu-button")).to_be_visible()


def test_the_menu_opens_without_javascript(browser, live_server, objects):  # noqa: F811
    context = browser.new_context(viewport=PHONE, java_script_enabled=False)
    page = context.new_page()
    try:
        log_in_mobile(page, live_server)
        page.goto(f"{live_server.url}{reverse('taskcenter:catalogue')}")
        expect(page.locator("#site-nav")).to_be_hidden()
        page.click("label.menu-button")
        expect(page.locator("#site-nav")).to_be_visible()
        shot(page, "mobile-menu-open-no-js")
        page.locator("#site-nav").get_by_role("link", name="History").click()
        assert page.url.endswith(reverse("taskcenter:run_list"))
        assert_fits(page, "history without JavaScript")
    finally:
        context.close()


def test_the_admin_periodic_task_list_fits_a_phone(phone, live_server, objects):
    log_in_mobile(phone, live_server)
    for path in ("/admin/", "/admin/django_celery_beat/periodictask/"):
        phone.goto(f"{live_server.url}{path}")
        assert_fits(phone, path)
        shot(phone, "mobile-admin-" + ("periodictask" if "periodic" in path else "index"))
    expect(phone.locator("#result_list")).to_contain_text("every ten minutes")


def test_the_desktop_menu_shows_every_link_without_a_button(browser, live_server, objects):  # noqa: F811
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    try:
        log_in(page, live_server, "op")
        expect(page.locator("label.menu-button")).to_be_hidden()
        expect(page.locator("#site-nav")).to_be_visible()
        assert_fits(page, "desktop catalogue")
    finally:
        context.close()


def test_the_dashboard_updates_its_figures_without_a_reload_and_says_how_old_they_are(
    browser,  # noqa: F811
    live_server,
    objects,
    celery_monitor,
):
    from taskcenter.models import Run
    from taskcenter.services.launch import run_launch
    from tests.conftest import wait_for

    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    page.set_default_timeout(20_000)
    try:
        log_in_mobile(page, live_server)
        page.goto(f"{live_server.url}{reverse('taskcenter:dashboard')}")
        page.evaluate("window.__notReloaded = true")
        succeeded = page.locator("[data-stat=succeeded]")
        before = int(succeeded.inner_text())
        expect(page.locator("#dashboard-status .reload-note")).to_be_hidden()  # live.js took over the reloads

        run = run_launch(task_name="examples.add", args=[2, 3])
        wait_for(lambda: Run.objects.get(pk=run.pk).is_finished, timeout=30, message="the run")
        # At least ours: a run another test left on the shared worker may end in the same window.
        wait_for(lambda: int(succeeded.inner_text()) > before, timeout=30, message="the live figure to count the run")
        assert page.evaluate("window.__notReloaded === true"), "the figures changed without a reload"
        expect(page.locator("#live-age")).to_contain_text("Figures updated")
        expect(page.locator("#live-age")).to_contain_text("s ago")
        shot(page, "mobile-dashboard-live")

        fetched = []
        page.on("request", lambda request: fetched.append(request.url) if "/dashboard/live/" in request.url else None)
        page.evaluate(
            """() => { Object.defineProperty(document, 'visibilityState', {value: 'hidden', configurable: true});
                       document.dispatchEvent(new Event('visibilitychange')); }"""
        )
        page.wait_for_timeout(7_000)
        assert fetched == [], "a hidden tab does not fetch"
        page.route("**/dashboard/live/", lambda route: route.abort())
        page.evaluate(
            """() => { Object.defineProperty(document, 'visibilityState', {value: 'visible', configurable: true});
                       document.dispatchEvent(new Event('visibilitychange')); }"""
        )
        expect(page.locator("#live-age.stale")).to_contain_text("Stale", timeout=10_000)
        shot(page, "mobile-dashboard-stale")
    finally:
        context.close()


def test_a_worker_page_fits_a_phone(phone, live_server, objects, spare_worker):
    log_in_mobile(phone, live_server)
    for url in (reverse("taskcenter:worker_list"), reverse("taskcenter:worker_detail", args=[spare_worker.hostname])):
        response = phone.goto(f"{live_server.url}{url}")
        assert response.status == 200, url
        assert_fits(phone, url)
    expect(phone.locator("#registered-tasks")).to_contain_text("examples.add")
    expect(phone.locator("#time-limit-actions")).to_be_visible()
    shot(phone, "mobile-worker_detail")
