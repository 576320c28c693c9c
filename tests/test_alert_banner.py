"""Alerts where the operator looks: the Alerts link's badge and the banner on every page,
the dashboard's coloured figures and its live fragment (issue 13, part 6).

Alerts fire through their real conditions (a queue over its threshold in this module's
own Redis, runs that failed in the minute table), as in ``test_alert_rules``.
"""

import json
import re
import time
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from taskcenter.models import Run, TaskMinute
from taskcenter.selectors import alerts
from tests.conftest import broker_down

QUEUE = "banner-test"
PRIORITY_SEPARATOR = "\x06\x16"
#: Most queries the banner may add to a page whose cached summary expired (none while cached).
BANNER_QUERIES = 10


@pytest.fixture
def healthy(private_broker, settings):
    """One worker online, a monitor that flushed, a beat that ticked, and a queue no worker consumes."""
    settings.TASKCENTER_QUEUES = [*settings.TASKCENTER_QUEUES, QUEUE]
    now = time.time()
    worker = {"hostname": "w1@banner", "online": True, "last_heartbeat": now, "active": 0, "processed": 3, "freq": 2}
    private_broker.hset("taskcenter:monitor:workers", "w1@banner", json.dumps(worker))
    private_broker.set("taskcenter:monitor:tick", repr(now))
    private_broker.set("taskcenter:monitor:started", repr(now - 3600))
    private_broker.set("taskcenter:beat:leader", "beathost:7:abc")
    private_broker.set(
        "taskcenter:beat:last_tick",
        json.dumps({"id": "beathost:7:abc", "hostname": "beathost", "pid": 7, "time": now - 1, "max_interval": 5}),
    )
    return private_broker


def push(client, count: int) -> None:
    for i in range(count):
        client.lpush(
            f"{QUEUE}{PRIORITY_SEPARATOR}6",
            json.dumps({"body": "", "headers": {"id": f"m{i}", "taskcenter_sent_at": time.time()}}),
        )


def banner(html: str) -> str | None:
    found = re.search(r'<div class="alert-banner[^"]*" id="alert-banner".*?</div>', html, flags=re.S)
    return found.group(0) if found else None


def badge(html: str) -> str | None:
    found = re.search(r'id="alert-badge"[^>]*>(\d+)<', html)
    return found.group(1) if found else None


@pytest.mark.django_db
def test_badge_and_banner_appear_when_an_alert_fires_and_go_when_it_clears(
    staff_client, healthy, settings, live_alert_banner
):
    settings.TASKCENTER_ALERT_QUEUE_DEPTH = 3
    history = reverse("taskcenter:run_list")
    html = staff_client.get(history).content.decode()
    assert banner(html) is None and badge(html) is None, "all clear: no badge, no banner"

    push(healthy, 5)
    cache.delete(alerts.SUMMARY_CACHE_KEY)  # the cached "all clear" expires
    for url in (history, reverse("taskcenter:catalogue"), reverse("taskcenter:queue_list")):
        html = staff_client.get(url).content.decode()
        assert badge(html) == "1", url
        text = banner(html)
        assert text and "QueueBacklogHigh" in text and reverse("taskcenter:alerts") in text, url
        assert "1 alert is firing" in text

    healthy.delete(f"{QUEUE}{PRIORITY_SEPARATOR}6")
    staff_client.get(reverse("taskcenter:alerts"))  # the alerts page stores what it just computed
    html = staff_client.get(history).content.decode()
    assert banner(html) is None and badge(html) is None, "cleared: the badge and banner go"


@pytest.mark.django_db
def test_a_critical_alert_colours_the_banner(staff_client, healthy, live_alert_banner):
    healthy.delete("taskcenter:monitor:workers")  # NoWorkersOnline is critical
    html = staff_client.get(reverse("taskcenter:run_list")).content.decode()
    assert 'class="alert-banner critical"' in html and "NoWorkersOnline" in banner(html)
    assert "badge-critical" in html


@pytest.mark.django_db
def test_the_banner_costs_no_query_while_cached_and_a_bounded_few_when_it_expires(
    staff_client, healthy, settings, live_alert_banner
):
    settings.TASKCENTER_ALERT_QUEUE_DEPTH = 0
    push(healthy, 1)
    url = reverse("taskcenter:run_list")
    staff_client.get(url)  # warm the session, the user, and the summary
    with CaptureQueriesContext(connection) as cached:
        assert badge(staff_client.get(url).content.decode()) == "1"
    with CaptureQueriesContext(connection) as summary_only:
        alerts.alert_summary()
    assert len(summary_only) == 0, "a cached summary is read from the cache, not the database"

    cache.delete(alerts.SUMMARY_CACHE_KEY)
    with CaptureQueriesContext(connection) as expired:
        assert badge(staff_client.get(url).content.decode()) == "1"
    added = len(expired) - len(cached)
    assert 0 < added <= BANNER_QUERIES, [q["sql"] for q in expired.captured_queries]


@pytest.mark.django_db
def test_a_frozen_broker_does_not_hang_a_page_for_its_banner(staff_client, tmp_path, redis_server, live_alert_banner):
    with broker_down(tmp_path, redis_server, frozen=True):
        began = time.monotonic()
        response = staff_client.get(reverse("taskcenter:catalogue"))
        elapsed = time.monotonic() - began
        assert response.status_code == 200
        assert "BrokerUnreachable" in banner(response.content.decode())
        began = time.monotonic()
        staff_client.get(reverse("taskcenter:catalogue"))
        cached = time.monotonic() - began
    assert elapsed < 2, f"the page took {elapsed:.1f}s"
    assert cached < 1, "the outcome is cached: the next page does not wait for the broker again"


@pytest.mark.django_db
def test_a_failing_summary_gives_no_banner_rather_than_a_broken_page(staff_client, monkeypatch, live_alert_banner):
    def broken():
        raise RuntimeError("boom")

    monkeypatch.setattr(alerts, "current_alerts", broken)
    response = staff_client.get(reverse("taskcenter:catalogue"))
    assert response.status_code == 200 and banner(response.content.decode()) is None


@pytest.mark.django_db
def test_dashboard_figures_beyond_their_thresholds_are_coloured(staff_client, healthy, settings):
    settings.TASKCENTER_ALERT_QUEUE_DEPTH = 2
    settings.TASKCENTER_ALERT_FAILURE_RATE = 0.1
    settings.TASKCENTER_ALERT_STUCK_RUNS = 2
    TaskMinute.objects.create(
        minute=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=2),
        task_name="examples.add",
        queue="default",
        succeeded=7,
        failed=3,
    )
    result = TaskResult.objects.create(task_id="stuck-1", task_name="examples.add", status="STARTED", worker="gone@x")
    Run.objects.create(task_result=result, task_name="examples.add", queue="default")
    push(healthy, 3)

    html = staff_client.get(reverse("taskcenter:dashboard")).content.decode()
    assert 'class="tile bad" id="tile-failure"' in html, "30 % failed, threshold 10 %"
    assert 'class="tile warn" id="tile-stuck"' in html, "one stuck run, alert at two"
    assert re.search(rf'id="queue-{QUEUE}">.*?class="depth over">3<', html, flags=re.S)

    settings.TASKCENTER_ALERT_FAILURE_RATE = 0.5
    settings.TASKCENTER_ALERT_STUCK_RUNS = 1
    settings.TASKCENTER_ALERT_QUEUE_DEPTH = 10
    html = staff_client.get(reverse("taskcenter:dashboard")).content.decode()
    assert 'class="tile" id="tile-failure"' in html
    assert 'class="tile bad" id="tile-stuck"' in html
    assert re.search(rf'id="queue-{QUEUE}">.*?class="depth">3<', html, flags=re.S)


@pytest.mark.django_db
def test_dashboard_fragment_returns_fresh_figures(staff_client, healthy):
    url = reverse("taskcenter:dashboard_live")
    first = staff_client.get(url)
    assert first.status_code == 200 and first["Cache-Control"] == "no-store"
    html = first.content.decode()
    assert "<html" not in html and 'id="dashboard-figures"' in html
    assert re.search(r'id="tile-workers">.*?class="value">1<', html, flags=re.S)
    assert re.search(rf'id="queue-{QUEUE}">.*?class="depth">0<', html, flags=re.S)

    push(healthy, 4)
    second = {"hostname": "w2@banner", "online": True, "last_heartbeat": time.time(), "freq": 2}
    healthy.hset("taskcenter:monitor:workers", "w2@banner", json.dumps(second))
    html = staff_client.get(url).content.decode()
    assert re.search(r'id="tile-workers">.*?class="value">2<', html, flags=re.S)
    assert re.search(rf'id="queue-{QUEUE}">.*?class="depth">4<', html, flags=re.S)


@pytest.mark.django_db
def test_dashboard_page_points_live_js_at_the_fragment_and_keeps_a_refresh_without_javascript(staff_client, healthy):
    html = staff_client.get(reverse("taskcenter:dashboard")).content.decode()
    assert f'data-live-url="{reverse("taskcenter:dashboard_live")}"' in html
    assert '<noscript><meta http-equiv="refresh" content="10"></noscript>' in html
    assert 'id="dashboard-reload"' in html and 'id="live-age"' in html
    stopped = staff_client.get(reverse("taskcenter:dashboard") + "?refresh=0").content.decode()
    assert "data-live-url" not in stopped and "http-equiv" not in stopped


@pytest.mark.django_db
def test_dashboard_fragment_needs_login_and_the_view_permission(client, django_user_model):
    url = reverse("taskcenter:dashboard_live")
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and "/login/" in anonymous["Location"]
    staff = django_user_model.objects.create_user(username="noperm", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(url).status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_run"))
    staff = django_user_model.objects.get(pk=staff.pk)
    client.force_login(staff)
    assert client.get(url).status_code == 200


@pytest.mark.django_db
def test_a_user_without_the_view_permission_gets_no_alert_summary(rf, django_user_model):
    from taskcenter.context_processors import alerts as processor

    request = rf.get("/")
    request.user = django_user_model.objects.create_user(username="plain", password="pw", is_staff=True)
    summary = processor(request)["alert_summary"]
    assert not summary.firing and not summary.known


@pytest.mark.django_db
@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(query=st.dictionaries(st.text(max_size=12), st.text(max_size=40), max_size=4))
def test_dashboard_fragment_never_fails_on_any_query_string(staff_client, query):
    assert staff_client.get(reverse("taskcenter:dashboard_live"), query).status_code < 500
