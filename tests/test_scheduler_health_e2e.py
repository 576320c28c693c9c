"""A real ``celery beat`` survives any schedule row: each kind the form offers is sent
and run by a real worker; rows written around the forms (message headers, an
uncatalogued task, a corrupt crontab or time zone, impossible coordinates) are never
sent, are marked in error, and the other schedules keep sending.
"""

from datetime import UTC, timedelta

import ephem
import pytest
from django.db import connection
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, PeriodicTask, SolarSchedule
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, SchedulePolicy
from taskcenter.services.schedules import ScheduleSpec, schedule_save
from tests.conftest import wait_for
from tests.test_scheduler_e2e import interval_task, runs, start_beat, tail  # noqa: F401  (start_beat: a fixture)

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

ADD_KWARGS = {"x": 2, "y": 3}


def error_of(name: str) -> str:
    return SchedulePolicy.objects.filter(periodic_task__name=name).values_list("error", flat=True).first() or ""


def succeeded(name: str) -> bool:
    return any(run.state == "SUCCESS" for run in runs(name).select_related("task_result"))


def previous_sunrise(latitude: float, longitude: float):
    """The last sunrise at a place before now, computed with ephem as Celery's solar schedule does."""
    observer = ephem.Observer()
    observer.lat, observer.lon = str(latitude), str(longitude)
    observer.date = timezone.now()
    return observer.previous_rising(ephem.Sun()).datetime().replace(tzinfo=UTC)


def test_each_kind_of_schedule_the_form_offers_is_sent_by_beat_and_run_by_a_worker(start_beat):  # noqa: F811
    spec = {"task": "examples.add", "kwargs": ADD_KWARGS}
    schedule_save(spec=ScheduleSpec(name="k interval", kind="interval", every=2, period="seconds", **spec), actor=None)
    schedule_save(spec=ScheduleSpec(name="k crontab", kind="crontab", cron="* * * * *", **spec), actor=None)
    clocked_at = timezone.now() + timedelta(seconds=4)
    schedule_save(spec=ScheduleSpec(name="k clocked", kind="clocked", clocked_time=clocked_at, **spec), actor=None)
    schedule_save(
        spec=ScheduleSpec(name="k solar", kind="solar", solar_event="sunrise", latitude=0.0, longitude=0.0, **spec),
        actor=None,
    )
    # Due now, without waiting for the next minute or sunrise: the last run was just before
    # the previous one (a missed due time; the default misfire policy sends it once).
    PeriodicTask.objects.filter(name="k crontab").update(last_run_at=timezone.now() - timedelta(minutes=2))
    sunrise = previous_sunrise(0.0, 0.0)
    PeriodicTask.objects.filter(name="k solar").update(last_run_at=sunrise - timedelta(minutes=1))
    beat = start_beat()

    for name in ("k interval", "k crontab", "k clocked", "k solar"):
        wait_for(lambda name=name: succeeded(name), timeout=90, message=f"a successful run of {name}\n{tail(beat)}")
        assert error_of(name) == ""
    assert runs("k clocked").first().created_at >= clocked_at
    assert runs("k solar").count() == 1  # the next sunrise is hours away
    assert beat.process.poll() is None


def test_message_options_written_around_the_forms_are_refused_at_send_time(start_beat):  # noqa: F811
    interval_task("healthy", 1)
    interval_task("renamed by headers", 1, headers='{"task": "celery.map"}')
    interval_task("reused id", 1, headers='{"id": "someone-elses-run"}')
    interval_task("routed away", 1, exchange="elsewhere", routing_key="elsewhere")
    interval_task("outside the catalogue", 1, task="celery.map", kwargs="{}", args='["examples.fail", [[1]]]')
    bad = ("renamed by headers", "reused id", "routed away", "outside the catalogue")
    beat = start_beat()

    wait_for(lambda: runs("healthy").count() >= 3, timeout=60, message=f"runs of the healthy schedule\n{tail(beat)}")
    wait_for(lambda: all(error_of(name) for name in bad), timeout=30, message=f"errors recorded\n{tail(beat)}")
    count = runs("healthy").count()
    wait_for(lambda: runs("healthy").count() > count + 1, timeout=30, message=f"more healthy runs\n{tail(beat)}")

    assert "headers (task)" in error_of("renamed by headers") and "headers (id)" in error_of("reused id")
    assert "exchange" in error_of("routed away") and "not in the catalogue" in error_of("outside the catalogue")
    for name in bad:
        assert not runs(name).exists(), name
        assert f"Sending due task {name} " not in tail(beat)
        # Audited once, not on every due time.
        assert AuditEntry.objects.filter(action="schedule_error", target=name, outcome="error").count() == 1
    assert not TaskResult.objects.filter(task_name__in=["celery.map", "examples.fail"]).exists()
    assert not TaskResult.objects.filter(task_id="someone-elses-run").exists()
    assert beat.process.poll() is None


def test_schedules_that_cannot_be_evaluated_are_marked_in_error_and_the_others_keep_sending(start_beat):  # noqa: F811
    interval_task("healthy", 1)
    cron = CrontabSchedule.objects.create(minute="*", timezone="UTC")
    PeriodicTask.objects.create(name="corrupt crontab", task="examples.add", crontab=cron, kwargs='{"x": 1, "y": 1}')
    CrontabSchedule.objects.filter(pk=cron.pk).update(minute="every now and then")
    zone = CrontabSchedule.objects.create(minute="*", hour="*", timezone="UTC")
    PeriodicTask.objects.create(name="corrupt time zone", task="examples.add", crontab=zone, kwargs='{"x": 1, "y": 1}')
    with connection.cursor() as cursor:  # the field refuses to write it: as a bad import or hand edit would
        cursor.execute(
            "UPDATE django_celery_beat_crontabschedule SET timezone = %s WHERE id = %s", ["Mars/Olympus", zone.pk]
        )
    solar = SolarSchedule.objects.create(event="sunset", latitude=10, longitude=10)
    SolarSchedule.objects.filter(pk=solar.pk).update(latitude=95)
    PeriodicTask.objects.create(name="beyond the pole", task="examples.add", solar=solar, kwargs='{"x": 1, "y": 1}')
    PeriodicTask.objects.create(
        name="corrupt arguments", task="examples.add", interval=PeriodicTask.objects.get(name="healthy").interval,
        kwargs="{not json",
    )  # fmt: skip
    bad = ("corrupt crontab", "corrupt time zone", "beyond the pole", "corrupt arguments")
    beat = start_beat()

    wait_for(lambda: runs("healthy").count() >= 3, timeout=60, message=f"runs of the healthy schedule\n{tail(beat)}")
    wait_for(lambda: all(error_of(name) for name in bad), timeout=30, message=f"errors recorded\n{tail(beat)}")
    assert "latitude" in error_of("beyond the pole")
    assert "Mars/Olympus" in error_of("corrupt time zone")
    for name in bad:
        assert not runs(name).exists(), name
        assert AuditEntry.objects.filter(action="schedule_error", target=name).exists()
    assert beat.process.poll() is None

    # Fixed through the service: the error is cleared and beat sends it.
    healthy = PeriodicTask.objects.get(name="corrupt crontab")
    spec = ScheduleSpec(name="corrupt crontab", task="examples.add", kind="interval", every=1, period="seconds",
                        kwargs={"x": 1, "y": 1})  # fmt: skip
    schedule_save(spec=spec, actor=None, existing=healthy)
    wait_for(lambda: runs("corrupt crontab").exists(), timeout=30, message=f"the fixed schedule sent\n{tail(beat)}")
    assert error_of("corrupt crontab") == ""
