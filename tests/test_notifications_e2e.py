"""The monitor process notifies: a real ``manage.py taskcenter_monitor`` posts signed webhooks to a local server."""

import time

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from taskcenter.models import NotificationDelivery, SchedulePolicy
from taskcenter.services import notifications
from tests.conftest import CeleryProcess, process_env, wait_for
from tests.test_notifications import SECRET, Receiver, verified

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_the_monitor_process_notifies_once_on_firing_and_once_on_resolving(redis_server, settings):
    settings.TASKCENTER_WEBHOOK_ALLOW_PRIVATE = True
    receiver = Receiver()
    channel = notifications.channel_save(actor=None, name="hook", kind="webhook", url=receiver.url, secret=SECRET)
    notifications.rule_save(actor=None, alert_name="ScheduleInError", channel=channel)
    every = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.HOURS)
    task = PeriodicTask.objects.create(name="broken nightly", task="examples.add", interval=every)
    # By construction: beat marked this schedule in error, so ScheduleInError fires.
    policy = SchedulePolicy.objects.create(periodic_task=task, error="crontab never occurs", error_at=timezone.now())

    env = process_env(redis_server, TASKCENTER_NOTIFY_INTERVAL="0.5", TASKCENTER_WEBHOOK_ALLOW_PRIVATE="true")
    monitor = CeleryProcess(
        "monitor-notify", ["taskcenter_monitor", "--flush-interval=0.5"], env, program=CeleryProcess.MANAGE
    )
    try:
        wait_for(lambda: len(receiver.requests) >= 1, timeout=60, message="the firing webhook")
        firing = verified(receiver.requests[0])
        assert firing["alert"] == "ScheduleInError" and firing["status"] == "firing"
        assert "broken nightly" in firing["messages"][0]

        time.sleep(3)  # several more passes while it still fires
        assert len(receiver.requests) == 1

        policy.error = ""
        policy.save()
        wait_for(lambda: len(receiver.requests) >= 2, timeout=60, message="the resolved webhook")
        assert verified(receiver.requests[1])["status"] == "resolved"
        time.sleep(2)
        assert len(receiver.requests) == 2
    finally:
        monitor.stop()
        receiver.close()
    sent = NotificationDelivery.objects.filter(status="sent").values_list("event", flat=True).order_by("id")
    assert list(sent) == ["firing", "resolved"]
