"""Schedule pages and services: create every kind inline, see health and next runs, act."""

import json
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import PeriodicTask, PeriodicTasks
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run, SchedulePolicy
from taskcenter.schedules.timing import AMBIGUOUS, SHIFTED
from taskcenter.selectors.schedules import schedule_next_runs
from taskcenter.services.schedules import InvalidSchedule, ScheduleSpec, schedule_save

pytestmark = pytest.mark.django_db

BASE = {"enabled": "on", "misfire": "run_once", "jitter_seconds": "0", "max_instances": "0", "timezone": ""}


def post_new(client, task="examples.add", **data):
    form = {**BASE, "task": task, "name": "nightly add", "kind": "crontab", "cron": "0 2 * * *",
            "timezone": "Asia/Shanghai", "mode": "typed", "arg_x": "1", "arg_y": "2", "period": "minutes"}  # fmt: skip
    form.update(data)
    return client.post(reverse("taskcenter:schedule_new") + f"?task={task}", form)


def test_crontab_schedule_is_created_inline_with_typed_arguments(staff_client):
    response = post_new(staff_client)
    assert response.status_code == 302, response.content.decode()[:3000]
    task = PeriodicTask.objects.get(name="nightly add")
    assert task.crontab.hour == "2" and str(task.crontab.timezone) == "Asia/Shanghai"
    assert task.kwargs == '{"x": 1, "y": 2}'
    assert SchedulePolicy.objects.get(periodic_task=task).misfire == "run_once"
    assert AuditEntry.objects.filter(action="schedule_create", target="nightly add").exists()


@pytest.mark.parametrize(
    ("data", "check"),
    [
        ({"kind": "interval", "every": "5", "period": "minutes"}, lambda t: t.interval.every == 5),
        (
            {"kind": "clocked", "clocked_time": (timezone.localtime() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")},
            lambda t: t.one_off and t.clocked is not None,
        ),
        ({"kind": "solar", "solar_event": "sunrise", "latitude": "31.23", "longitude": "121.47"},
         lambda t: t.solar.event == "sunrise"),
    ],
)  # fmt: skip
def test_every_kind_of_schedule_is_created_without_a_schedule_row_first(staff_client, data, check):
    response = post_new(staff_client, **data)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert check(PeriodicTask.objects.get(name="nightly add"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"cron": "61 2 * * *"}, "Not a valid crontab"),
        ({"cron": "0 2 * *"}, "five fields"),
        ({"cron": "0 2 * * *", "timezone": "Mars/Olympus"}, "Select a valid choice"),
        ({"kind": "interval", "every": "0"}, "greater than or equal to 1"),
        ({"kind": "interval", "every": ""}, "whole number of at least 1"),
        ({"kind": "clocked", "clocked_time": "2020-01-01T00:00"}, "must be in the future"),
        ({"kind": "solar", "solar_event": "", "latitude": "95"}, "less than or equal to 90"),
        ({"arg_x": "one"}, "Enter a whole number"),
        ({"mode": "json", "args": "[1]", "kwargs": "{}"}, "Arguments do not fit"),
    ],
)
def test_bad_schedule_input_is_a_form_error_and_saves_nothing(staff_client, data, message):
    response = post_new(staff_client, **data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not PeriodicTask.objects.filter(name="nightly add").exists()


def test_uncatalogued_task_cannot_be_scheduled(staff_client):
    assert post_new(staff_client, task="celery.backend_cleanup").status_code == 404
    with pytest.raises(InvalidSchedule, match="Only catalogued tasks can be scheduled"):
        schedule_save(spec=ScheduleSpec(name="x", task="os.system", kind="interval", every=1), actor=None)


def test_duplicate_name_is_a_form_error(staff_client):
    assert post_new(staff_client).status_code == 302
    response = post_new(staff_client)
    assert response.status_code == 400 and "already exists" in response.content.decode()


def make_schedule(name="tick", cron="30 2 * * *", tz="Europe/Berlin", **extra) -> PeriodicTask:
    spec = ScheduleSpec(name=name, task="examples.add", kind="crontab", cron=cron, timezone=tz, args=[1, 2], **extra)
    return schedule_save(spec=spec, actor=None)


def test_list_shows_schedule_in_words_timezone_last_state_next_run_and_counts(staff_client):
    task = make_schedule()
    TaskResult.objects.create(task_id="r1", task_name="examples.add", status="FAILURE")
    Run.objects.create(task_result_id="r1", task_name="examples.add", queue="high", periodic_task_name="tick")
    Run.objects.create(task_result_id="r2", task_name="examples.add", queue="high", periodic_task_name="tick")
    page = staff_client.get(reverse("taskcenter:schedule_list")).content.decode()
    assert "At 02:30 AM (Europe/Berlin)" in page
    assert reverse("taskcenter:run_detail", args=["r2"]) in page  # the last run, linked
    assert "PENDING" in page
    assert '<span class="bad">1</span>' in page  # one failure in 7 days
    assert reverse("taskcenter:schedule_detail", args=[task.pk]) in page


def test_next_runs_are_in_the_schedule_time_zone_and_flag_dst_changes():
    berlin = make_schedule()
    fires = schedule_next_runs(berlin, count=10, now=datetime(2026, 3, 25, tzinfo=ZoneInfo("UTC")))
    assert [f.at.strftime("%m-%d %H:%M %Z") for f in fires[:5]] == [
        "03-25 02:30 CET", "03-26 02:30 CET", "03-27 02:30 CET", "03-28 02:30 CET", "03-29 03:00 CEST",
    ]  # fmt: skip
    assert fires[4].note == SHIFTED
    new_york = make_schedule(name="ny", cron="30 1 * * *", tz="America/New_York")
    fires = schedule_next_runs(new_york, count=3, now=datetime(2026, 10, 31, 12, tzinfo=ZoneInfo("UTC")))
    assert [f.at.isoformat() for f in fires] == [
        "2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00", "2026-11-03T01:30:00-05:00",
    ]  # fmt: skip
    assert fires[0].note == AMBIGUOUS
    shanghai = make_schedule(name="sh", tz="Asia/Shanghai")
    fires = schedule_next_runs(shanghai, count=3, now=datetime(2026, 3, 28, tzinfo=ZoneInfo("UTC")))
    assert all(f.note == "" and f.at.strftime("%H:%M") == "02:30" for f in fires)


def test_detail_page_lists_next_runs_and_runs_with_durations(staff_client):
    task = make_schedule()
    TaskResult.objects.create(
        task_id="r9", status="SUCCESS", date_started=timezone.now() - timedelta(seconds=3), date_done=timezone.now()
    )
    Run.objects.create(task_result_id="r9", task_name="examples.add", queue="high", periodic_task_name="tick")
    page = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert "Next runs" in page and page.count('<li><span class="mono">') == 10
    assert "3.0" in page and "SUCCESS" in page  # duration of the run


def test_bulk_disable_and_enable_notify_beat_and_are_audited(staff_client):
    a, b = make_schedule(name="a"), make_schedule(name="b")
    before = PeriodicTasks.last_change()
    response = staff_client.post(reverse("taskcenter:schedule_action"), {"action": "disable", "ids": [a.pk, b.pk]})
    assert response.status_code == 302
    assert not PeriodicTask.objects.filter(name__in=["a", "b"], enabled=True).exists()
    assert PeriodicTasks.last_change() != before
    assert AuditEntry.objects.filter(action="schedule_disable").count() == 2
    staff_client.post(reverse("taskcenter:schedule_action"), {"action": "enable", "ids": [a.pk]})
    assert PeriodicTask.objects.get(name="a").enabled


def test_duplicate_makes_a_disabled_copy_with_the_same_policy(staff_client):
    task = make_schedule(misfire="skip", max_instances=1)
    staff_client.post(reverse("taskcenter:schedule_action"), {"action": "duplicate", "ids": [task.pk]})
    copy = PeriodicTask.objects.get(name="tick (copy)")
    assert not copy.enabled and copy.crontab_id == task.crontab_id
    assert copy.taskcenter_policy.misfire == "skip" and copy.taskcenter_policy.max_instances == 1


def test_run_now_carries_the_schedule_options_through_the_launch_service(staff_client, redis_server):
    task = make_schedule(queue="low", priority="HIGH", expire_seconds=120)
    response = staff_client.post(reverse("taskcenter:schedule_action"), {"action": "run_now", "ids": [task.pk]})
    assert response.status_code == 302
    run = Run.objects.get()
    assert (run.queue, run.priority, run.args, run.source) == ("low", "HIGH", [1, 2], "web")
    assert run.periodic_task_name == "tick" and run.launched_by == staff_client.user
    assert run.expires is not None and timedelta(seconds=100) < run.expires - run.created_at <= timedelta(seconds=121)
    assert AuditEntry.objects.filter(action="schedule_run_now", task_id=run.task_id).exists()


def test_view_only_user_sees_schedules_but_cannot_act(viewer_client):
    task = make_schedule()
    page = viewer_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert "Run now" not in page and "Disable" not in page and "Edit…" not in page
    for action in ("run_now", "disable", "duplicate", "delete"):
        response = viewer_client.post(reverse("taskcenter:schedule_action"), {"action": action, "ids": [task.pk]})
        assert response.status_code == 403
    assert viewer_client.get(reverse("taskcenter:schedule_edit", args=[task.pk])).status_code == 403
    assert viewer_client.get(reverse("taskcenter:schedule_new") + "?task=examples.add").status_code == 403
    task.refresh_from_db()
    assert task.enabled and not Run.objects.exists()


def test_edit_changes_the_schedule_in_place(staff_client):
    task = make_schedule()
    response = staff_client.post(
        reverse("taskcenter:schedule_edit", args=[task.pk]),
        {**BASE, "task": "examples.add", "name": "tick", "kind": "interval", "every": "10", "period": "seconds",
         "mode": "typed", "arg_x": "5", "arg_y": "6"},
    )  # fmt: skip
    assert response.status_code == 302, response.content.decode()[:3000]
    task.refresh_from_db()
    assert task.interval.every == 10 and task.crontab is None and task.kwargs == '{"x": 5, "y": 6}'


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_schedules_page_shows_the_active_beat_and_its_last_tick(staff_client, celery_beat):
    from tests.conftest import wait_for

    page = staff_client.get(reverse("taskcenter:schedule_list")).content.decode()
    assert "No beat" in page or "not" in page  # nothing ticking yet
    beat = celery_beat()
    page = wait_for(
        lambda: (
            (p := staff_client.get(reverse("taskcenter:schedule_list")).content.decode()) and "is active" in p and p
        ),
        timeout=30,
        message="the beat to take the lock",
    )
    assert f"(pid {beat.process.pid})" in page and "last tick" in page


def test_schedule_list_pages_by_name_and_filters_enabled_ones(staff_client):
    from django_celery_beat.models import IntervalSchedule

    from taskcenter.selectors.schedules import PAGE_SIZE

    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.bulk_create(
        PeriodicTask(name=f"s{i:04d}", task="examples.add", interval=every, enabled=i % 2 == 0)
        for i in range(PAGE_SIZE + 20)
    )
    first = staff_client.get(reverse("taskcenter:schedule_list")).content.decode()
    assert "s0000" in first and f"s{PAGE_SIZE - 1:04d}" in first and f"s{PAGE_SIZE:04d}" not in first
    assert f"after=s{PAGE_SIZE - 1:04d}" in first
    second = staff_client.get(reverse("taskcenter:schedule_list"), {"after": f"s{PAGE_SIZE - 1:04d}"}).content.decode()
    assert f"s{PAGE_SIZE:04d}" in second and f"s{PAGE_SIZE + 19:04d}" in second and "s0000" not in second
    assert "Next →" not in second  # the last page (the language switcher's form carries the page's own URL)

    disabled = staff_client.get(reverse("taskcenter:schedule_list"), {"show": "disabled"}).content.decode()
    assert "s0001" in disabled and "s0000<" not in disabled and ">s0000" not in disabled


# --- Pages tell the truth --------------------------------------------------------------


def add_run(name: str, task_id: str, status: str | None = "SUCCESS") -> Run:
    if status:
        TaskResult.objects.create(task_id=task_id, task_name="examples.add", status=status)
    return Run.objects.create(task_result_id=task_id, task_name="examples.add", periodic_task_name=name)


def test_last_run_comes_from_the_runs_not_beats_counter(staff_client):
    task = make_schedule(name="counted")
    for i in range(11):
        add_run("counted", f"counted-{i}")
    staff_client.post(reverse("taskcenter:schedule_action"), {"action": "disable", "ids": [task.pk]})
    assert PeriodicTask.objects.get(pk=task.pk).last_run_at is None  # django-celery-beat clears it

    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert "never" not in detail and "sent 11 times" not in detail
    assert reverse("taskcenter:run_detail", args=["counted-10"]) in detail
    assert "<dt>Runs (7 d)</dt><dd>11</dd>" in detail
    listing = staff_client.get(reverse("taskcenter:schedule_list")).content.decode()
    assert "never" not in listing


def test_a_one_off_that_ran_shows_its_run_not_never(staff_client):
    at = timezone.now() + timedelta(hours=1)
    task = schedule_save(spec=ScheduleSpec(name="once", task="examples.add", kind="clocked", clocked_time=at,
                                           kwargs={"x": 1, "y": 2}), actor=None)  # fmt: skip
    add_run("once", "once-1")
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False, total_run_count=0)  # as beat leaves a one-off
    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert "sent 0 times" not in detail and "never" not in detail
    assert "state-success" in detail


def test_next_runs_of_a_30_second_interval_show_seconds(staff_client):
    task = schedule_save(spec=ScheduleSpec(name="half-minute", task="examples.add", kind="interval", every=30,
                                           period="seconds", kwargs={"x": 1, "y": 2}), actor=None)  # fmt: skip
    # A schedule that never ran counts from "now"; pin its last run so the page
    # and this test compute the same times however slow the machine is.
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=timezone.now() - timedelta(seconds=2))
    task.refresh_from_db()
    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    times = [fire.at.strftime("%H:%M:%S") for fire in schedule_next_runs(task, count=4)]
    assert len(set(times)) == 4 and all(time in detail for time in times)


def test_solar_next_runs_are_computed_and_shown(staff_client):
    spec = ScheduleSpec(name="dawn", task="examples.add", kind="solar", solar_event="sunrise", latitude=31.23,
                        longitude=121.47, kwargs={"x": 1, "y": 2})  # fmt: skip
    task = schedule_save(spec=spec, actor=None)
    fires = schedule_next_runs(task, count=3)
    assert len(fires) == 3 and fires[0].at > timezone.now()
    assert timedelta(hours=23) < fires[1].at - fires[0].at < timedelta(hours=25)
    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert fires[0].at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d %H:%M:%S") in detail


def test_a_schedule_in_error_shows_on_its_page_in_the_list_and_on_the_alerts_page(staff_client):
    from taskcenter.services.schedules import schedule_mark_error

    task = make_schedule(name="broken")
    schedule_mark_error(name="broken", error="could not be evaluated: ValueError: bad")
    assert AuditEntry.objects.filter(action="schedule_error", target="broken", outcome="error").exists()
    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    assert "Beat cannot run this schedule" in detail and "ValueError: bad" in detail
    assert "in error" in staff_client.get(reverse("taskcenter:schedule_list")).content.decode()
    alerts = staff_client.get(reverse("taskcenter:alerts")).content.decode()
    assert "ScheduleInError" in alerts and "broken" in alerts

    # Saving it again clears the error.
    schedule_save(spec=ScheduleSpec.from_periodic_task(task), actor=None, existing=task)
    assert SchedulePolicy.objects.get(periodic_task=task).error == ""


def test_saving_a_schedule_clears_message_options_stored_around_the_forms():
    task = make_schedule(name="tampered")
    PeriodicTask.objects.filter(pk=task.pk).update(headers='{"task": "celery.map"}', exchange="x", routing_key="y")
    task.refresh_from_db()
    schedule_save(spec=ScheduleSpec.from_periodic_task(task), actor=None, existing=task)
    task.refresh_from_db()
    assert (task.headers, task.exchange, task.routing_key) == ("{}", None, None)


def test_the_schedule_form_offers_no_message_options(staff_client):
    page = staff_client.get(reverse("taskcenter:schedule_new") + "?task=examples.add").content.decode()
    for name in ("headers", "exchange", "routing_key"):
        assert f'name="{name}"' not in page


# --- Raw JSON mode ---------------------------------------------------------------------


def test_raw_json_mode_with_empty_typed_fields_saves_the_json_arguments(staff_client):
    response = post_new(staff_client, mode="json", arg_x="", arg_y="", args="[]", kwargs='{"x": 4, "y": 5}')
    assert response.status_code == 302, response.content.decode()[:2000]
    assert PeriodicTask.objects.get(name="nightly add").kwargs == '{"x": 4, "y": 5}'


def test_refused_raw_json_comes_back_in_json_mode_with_its_error(staff_client):
    response = post_new(staff_client, mode="json", arg_x="", arg_y="", args="[1, 2, 3]", kwargs="{}")
    assert response.status_code == 400
    page = response.content.decode()
    assert "This task takes no arguments." not in page
    assert '<div class="args-json">' in page  # shown, not hidden
    assert '<div class="args-typed" hidden>' in page
    assert "Arguments do not fit" in page and "[1, 2, 3]" in page


def test_refused_typed_arguments_come_back_in_typed_mode(staff_client):
    response = post_new(staff_client, mode="typed", arg_x="one")
    page = response.content.decode()
    assert response.status_code == 400
    assert '<div class="args-typed">' in page and '<div class="args-json" hidden>' in page


# --- Integers beyond the database's range --------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "interval", "every": "9" * 30},
        {"kind": "interval", "every": "9" * 5000},
        {"kind": "interval", "every": "100000", "period": "days"},
        {"max_instances": "9" * 30},
        {"max_instances": "-1"},
        {"grace_seconds": "9" * 30},
        {"jitter_seconds": "9" * 30},
        {"expire_seconds": "9" * 30},
        {"latitude": "1e400", "kind": "solar", "solar_event": "sunrise", "longitude": "0"},
    ],
)
def test_huge_integers_in_schedule_fields_are_a_400_and_save_nothing(staff_client, data):
    response = post_new(staff_client, **data)
    assert response.status_code == 400
    assert not PeriodicTask.objects.filter(name="nightly add").exists()


def test_huge_values_are_refused_by_the_service_too():
    spec = ScheduleSpec(name="big", task="examples.add", kind="interval", every=10**30, kwargs={"x": 1, "y": 2},
                        max_instances=10**30, grace_seconds=10**30)  # fmt: skip
    with pytest.raises(InvalidSchedule) as refused:
        schedule_save(spec=spec, actor=None)
    assert {"every", "max_instances", "grace_seconds"} <= refused.value.errors.keys()


@pytest.mark.parametrize("ids", [["9" * 30], ["1", "-5"], ["abc"], ["9" * 5000]])
def test_schedule_action_ids_out_of_range_are_a_400(staff_client, ids):
    task = make_schedule(name="kept")
    response = staff_client.post(reverse("taskcenter:schedule_action"), {"action": "disable", "ids": [*ids, task.pk]})
    assert response.status_code == 400
    assert PeriodicTask.objects.get(pk=task.pk).enabled


@pytest.mark.parametrize("url", ["/schedules/{}/", "/schedules/{}/edit/", "/schedules/1/?before={}"])
def test_schedule_urls_with_huge_ids_answer_without_error(staff_client, url):
    make_schedule(name="first")
    assert staff_client.get(url.format("9" * 30)).status_code in (200, 404)


def test_pages_list_and_show_schedules_whose_rows_are_corrupt(staff_client):
    from django.db import connection
    from django_celery_beat.models import CrontabSchedule

    zone = CrontabSchedule.objects.create(minute="0", hour="2", timezone="UTC")
    bad_zone = PeriodicTask.objects.create(
        name="bad zone", task="examples.add", crontab=zone, kwargs='{"x": 1, "y": 1}'
    )
    cron = CrontabSchedule.objects.create(minute="1", timezone="UTC")
    bad_cron = PeriodicTask.objects.create(
        name="bad cron", task="examples.add", crontab=cron, kwargs='{"x": 1, "y": 1}'
    )
    CrontabSchedule.objects.filter(pk=cron.pk).update(minute="every now and then")
    with connection.cursor() as cursor:  # the field refuses to write it, as a hand edit or import would not
        cursor.execute(
            "UPDATE django_celery_beat_crontabschedule SET timezone = %s WHERE id = %s", ["Mars/Olympus", zone.pk]
        )
    urls = [reverse("taskcenter:schedule_list"), reverse("admin:django_celery_beat_periodictask_changelist")]
    for task in (bad_zone, bad_cron):
        urls += [
            reverse("taskcenter:schedule_detail", args=[task.pk]),
            reverse("taskcenter:schedule_edit", args=[task.pk]),
        ]
    for url in urls:
        response = staff_client.get(url)
        assert response.status_code == 200, url
    assert "Mars/Olympus" in staff_client.get(urls[0]).content.decode()


def test_a_schedules_secret_argument_is_masked_on_its_pages_and_kept_when_saved_unchanged(staff_client):
    spec = ScheduleSpec(
        name="nightly-login", task="examples.connect", kind="crontab", cron="0 3 * * *", timezone="UTC",
        args=["db.example", "ops", "hunter2-secret"],
    )  # fmt: skip
    task = schedule_save(spec=spec, actor=None)
    detail = staff_client.get(reverse("taskcenter:schedule_detail", args=[task.pk])).content.decode()
    edit_url = reverse("taskcenter:schedule_edit", args=[task.pk])
    form_page = staff_client.get(edit_url).content.decode()
    assert "hunter2-secret" not in detail and "********" in detail
    assert "hunter2-secret" not in form_page and "********" in form_page

    form = {"task": "examples.connect", "name": "nightly-login", "kind": "crontab", "cron": "0 3 * * *",
            "timezone": "UTC", "mode": "json", "args": '["db.example", "ops2", "********"]', "kwargs": "{}",
            "misfire": "run_once", "jitter_seconds": "0", "max_instances": "0", "enabled": "on"}  # fmt: skip
    assert staff_client.post(edit_url, form).status_code == 302
    task.refresh_from_db()
    assert json.loads(task.args) == ["db.example", "ops2", "hunter2-secret"]

    assert staff_client.post(edit_url, {**form, "args": '["db.example", "ops2", "new-pass"]'}).status_code == 302
    task.refresh_from_db()
    assert json.loads(task.args) == ["db.example", "ops2", "new-pass"]
    assert "new-pass" not in str(list(AuditEntry.objects.values_list("message", "detail")))


def test_schedule_list_and_admin_keep_the_last_state_and_failures_after_results_expire(staff_client):
    make_schedule()
    # Both results were deleted by the result cleanup; the runs keep what they recorded.
    Run.objects.create(
        task_result_id="old", task_name="examples.add", periodic_task_name="tick", recorded_state="FAILURE"
    )
    Run.objects.create(
        task_result_id="new", task_name="examples.add", periodic_task_name="tick", recorded_state="SUCCESS"
    )
    page = staff_client.get(reverse("taskcenter:schedule_list")).content.decode()
    assert "SUCCESS" in page and "PENDING" not in page
    assert '<span class="bad">1</span>' in page
    admin_page = staff_client.get(reverse("admin:django_celery_beat_periodictask_changelist")).content.decode()
    assert "SUCCESS" in admin_page and "PENDING" not in admin_page
