"""Times shown and entered with their zone's name and offset, in the zone each user chose."""

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskcenter.models import Run
from taskcenter.services import control
from taskcenter.zones import COOKIE_NAME, SESSION_KEY, offset_text

pytestmark = pytest.mark.django_db

PAGES = ("run_list", "dashboard", "audit_list", "schedule_list", "scheduled_list", "failure_list", "deadletter_list")


def choose_zone(client, name: str):
    return client.post(reverse("taskcenter:preferences"), {"timezone": name})


def make_run(task_id: str, at: datetime) -> Run:
    return Run.objects.create(
        task_result_id=task_id, task_name="examples.add", queue="high", args=[1, 2], created_at=at
    )


def test_offsets_are_written_with_sign_hours_and_minutes_never_an_abbreviation():
    assert offset_text(timedelta(hours=8)) == "UTC+08:00"
    assert offset_text(timedelta(hours=-5, minutes=-30)) == "UTC-05:30"
    assert offset_text(timedelta(0)) == "UTC+00:00"


def test_preferences_need_login_and_view_access(client, django_user_model):
    assert client.get(reverse("taskcenter:preferences")).status_code == 302
    assert choose_zone(client, "Asia/Shanghai").status_code == 302
    assert SESSION_KEY not in client.session
    django_user_model.objects.create_user(username="nobody", password="pw-nobody-1")
    other = Client()
    other.login(username="nobody", password="pw-nobody-1")
    assert other.get(reverse("taskcenter:preferences")).status_code == 403
    assert choose_zone(other, "Asia/Shanghai").status_code == 403


def test_a_chosen_zone_is_kept_in_the_session_and_a_cookie(viewer_client):
    response = choose_zone(viewer_client, "America/Chicago")
    assert response.status_code == 302
    assert viewer_client.session[SESSION_KEY] == "America/Chicago"
    assert response.cookies[COOKIE_NAME].value == "America/Chicago"
    page = viewer_client.get(reverse("taskcenter:preferences")).content.decode()
    assert "America/Chicago, UTC-0" in page  # -06:00 or -05:00 with DST


def test_an_unknown_zone_is_a_form_error_and_changes_nothing(viewer_client):
    for name in ("CST", "Mars/Olympus", "../../etc/passwd", "", "Asia/Shanghai" * 10):
        response = choose_zone(viewer_client, name)
        assert response.status_code == 400, name
        assert SESSION_KEY not in viewer_client.session


def test_a_bad_zone_cookie_is_ignored(viewer_client, settings):
    settings.TIME_ZONE = "UTC"
    viewer_client.cookies[COOKIE_NAME] = "Not/AZone"
    page = viewer_client.get(reverse("taskcenter:run_list"))
    assert page.status_code == 200
    assert "UTC, UTC+00:00" in page.content.decode()


def test_a_user_in_shanghai_sees_converted_times_with_the_offset(viewer_client, settings):
    settings.TIME_ZONE = "UTC"
    run = make_run("tz-run-1", datetime(2026, 1, 5, 2, 0, 0, tzinfo=UTC))
    assert choose_zone(viewer_client, "Asia/Shanghai").status_code == 302
    for url in (reverse("taskcenter:run_list"), reverse("taskcenter:run_detail", args=[run.task_id])):
        page = viewer_client.get(url).content.decode()
        assert "2026-01-05 10:00:00" in page, url
        assert "UTC+08:00" in page, url
        assert "Asia/Shanghai, UTC+08:00" in page, url  # the zone by name, in the header
    dashboard = viewer_client.get(reverse("taskcenter:dashboard")).content.decode()
    assert re.search(r"As of <time [^>]*>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC\+08:00</time>", dashboard)
    # Another user, with no choice, sees the site's zone.
    other = get_user_model().objects.create_superuser(username="elsewhere", password="pw-elsewhere-1")
    client = Client()
    client.force_login(other)
    page = client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert "2026-01-05 02:00:00" in page and "UTC+00:00" in page


def test_no_page_says_cst(staff_client, settings, redis_server):
    settings.TIME_ZONE = "Asia/Shanghai"
    run = make_run("tz-run-2", datetime(2026, 1, 5, 2, 0, 0, tzinfo=UTC))
    Run.objects.filter(pk=run.pk).update(
        recorded_started_at=datetime(2026, 1, 5, 2, 0, 1, tzinfo=UTC), eta=datetime(2026, 1, 5, 2, 0, tzinfo=UTC)
    )
    urls = [reverse(f"taskcenter:{name}") for name in PAGES]
    urls += [reverse("taskcenter:run_detail", args=[run.task_id]), reverse("taskcenter:launch", args=["examples.add"])]
    for url in urls:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        page = response.content.decode()
        assert not re.search(r"\bCST\b", page), url
        assert "UTC+08:00" in page, url


def test_the_eta_field_names_the_zone_it_reads(staff_client):
    choose_zone(staff_client, "Asia/Shanghai")
    page = staff_client.get(reverse("taskcenter:launch", args=["examples.add"])).content.decode()
    assert "In Asia/Shanghai, UTC+08:00 (your time zone" in page
    assert "site&#x27;s time zone" not in page and "site's time zone" not in page


@pytest.mark.django_db(transaction=True)
def test_an_eta_typed_in_shanghai_is_stored_in_utc(staff_client, settings, redis_server):
    settings.TIME_ZONE = "UTC"
    choose_zone(staff_client, "Asia/Shanghai")
    form = {"mode": "json", "args": "[1, 2]", "kwargs": "{}", "countdown": "", "priority": "NORMAL", "queue": "high"}
    day = (datetime.now(UTC) + timedelta(days=3)).date()
    form["eta"] = f"{day:%Y-%m-%d}T10:00"
    response = staff_client.post(reverse("taskcenter:launch", args=["examples.add"]), form)
    assert response.status_code == 302, response.content.decode()[:3000]
    run = Run.objects.get(task_result_id=response.url.rstrip("/").rsplit("/", 1)[-1])
    try:
        assert run.eta == datetime(day.year, day.month, day.day, 2, 0, tzinfo=UTC)
        page = staff_client.get(response.url).content.decode()
        assert f"{day:%Y-%m-%d} 10:00:00" in page and "UTC+08:00" in page
    finally:
        control.run_cancel(run=run, actor=staff_client.user)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.one_of(st.text(max_size=80), st.sampled_from(["UTC", "Asia/Shanghai", "Etc/GMT+14", "posixrules"])))
def test_any_zone_input_is_saved_or_refused_never_a_server_error(viewer_client, name):
    response = viewer_client.post(reverse("taskcenter:preferences"), {"timezone": name, "next": name})
    assert response.status_code in (302, 400)
    # A header carries bytes: a cookie is latin-1 at most (NUL is refused by another middleware).
    viewer_client.cookies[COOKIE_NAME] = name.encode("latin-1", "ignore").decode("latin-1").replace("\x00", "")
    assert viewer_client.get(reverse("taskcenter:run_list")).status_code == 200
