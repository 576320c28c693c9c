"""Notifications: a real local HTTP server receives signed webhooks on firing and resolving; e-mail, tests, pages."""

import hashlib
import hmac
import json
import threading
import time
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.contrib.auth.models import Permission

from taskcenter.models import AlertState, AuditEntry, NotificationChannel, NotificationDelivery, NotificationRule
from taskcenter.selectors.alerts import BeatSummary, LiveQueues, Snapshot, evaluate
from taskcenter.services import notifications
from taskcenter.services.errors import InvalidInput

pytestmark = pytest.mark.django_db
SECRET = "webhook-secret-0123456789-abcdef"


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every POST and answers ``status``."""

    def __init__(self, status: int = 200):
        self.status = status
        self.requests: list[dict] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.requests.append({"headers": dict(self.headers), "body": body, "at": time.time()})
                self.send_response(receiver.status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(settings):
    settings.TASKCENTER_WEBHOOK_ALLOW_PRIVATE = True  # the receiver listens on loopback
    server = Receiver()
    yield server
    server.close()


def verified(request: dict, *, secret: str = SECRET, max_age: float = 300) -> dict:
    """What a receiver does: check the timestamp is recent and the HMAC matches, then parse the body."""
    timestamp = request["headers"]["X-Taskcenter-Timestamp"]
    assert abs(time.time() - int(timestamp)) < max_age, "stale timestamp: a replay"
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + request["body"], hashlib.sha256).hexdigest()
    assert hmac.compare_digest(request["headers"]["X-Taskcenter-Signature"], f"sha256={expected}")
    return json.loads(request["body"])


def state(*, workers_online: int) -> Snapshot:
    """A healthy snapshot but for the number of workers online: NoWorkersOnline fires at 0, by construction."""
    beat = BeatSummary(True, True, {"hostname": "beat"}, time.time(), 1.0, 0, "")
    return Snapshot(
        failed=0,
        finished=10,
        failure_rate=0.0,
        queues=LiveQueues([]),
        workers_online=workers_online,
        beat=beat,
        stuck_runs=0,
        monitor_alive=True,
    )


def webhook(url: str, *, name: str = "ops hook") -> NotificationChannel:
    return notifications.channel_save(actor=None, name=name, kind="webhook", url=url, secret=SECRET)


def test_a_signed_webhook_is_sent_once_when_an_alert_fires_and_once_when_it_resolves(receiver):
    channel = webhook(receiver.url)
    notifications.rule_save(actor=None, alert_name="NoWorkersOnline", channel=channel)
    assert [alert.name for alert in evaluate(state(workers_online=0))] == ["NoWorkersOnline"]

    for _ in range(3):  # evaluated again and again while it fires: one notification
        notifications.notifications_evaluate(alerts=evaluate(state(workers_online=0)))
        notifications.deliveries_send_due()
    assert len(receiver.requests) == 1
    firing = verified(receiver.requests[0])
    assert firing["alert"] == "NoWorkersOnline" and firing["status"] == "firing" and firing["severity"] == "critical"
    assert "No worker is online" in firing["messages"][0]

    for _ in range(2):
        notifications.notifications_evaluate(alerts=evaluate(state(workers_online=1)))
        notifications.deliveries_send_due()
    assert len(receiver.requests) == 2
    assert verified(receiver.requests[1])["status"] == "resolved"
    log = NotificationDelivery.objects.order_by("id")
    assert [(d.event, d.status, d.attempts) for d in log] == [("firing", "sent", 1), ("resolved", "sent", 1)]


def test_a_tampered_body_or_another_secret_does_not_verify(receiver):
    channel = webhook(receiver.url)
    notifications.channel_test(actor=None, channel=channel)
    request = receiver.requests[0]
    with pytest.raises(AssertionError):
        verified({**request, "body": request["body"].replace(b"test", b"tesT")})
    with pytest.raises(AssertionError):
        verified(request, secret="another-secret-0123456789")


def test_the_alert_state_survives_a_restart_so_nothing_is_sent_twice(receiver):
    channel = webhook(receiver.url)
    notifications.rule_save(actor=None, alert_name="*", channel=channel, notify_on_resolve=False)
    assert notifications.notifications_evaluate(alerts=evaluate(state(workers_online=0))) == 1
    # A new process knows only the database: the same alert firing queues nothing.
    assert AlertState.objects.get(name="NoWorkersOnline").firing
    assert notifications.notifications_evaluate(alerts=evaluate(state(workers_online=0))) == 0
    # Resolving does not notify a rule that does not ask for it, but is recorded.
    assert notifications.notifications_evaluate(alerts=[]) == 0
    assert not AlertState.objects.get(name="NoWorkersOnline").firing


def test_rules_route_any_alert_by_name_including_alerts_added_later(receiver):
    channel = webhook(receiver.url)
    notifications.rule_save(actor=None, alert_name="DeadLettersArriving", channel=channel)
    alert = replace(evaluate(state(workers_online=0))[0], name="DeadLettersArriving", message="3 dead letters")
    assert notifications.notifications_evaluate(alerts=[alert]) == 1
    notifications.deliveries_send_due()
    assert verified(receiver.requests[0])["messages"] == ["3 dead letters"]


def test_a_failing_endpoint_is_retried_with_backoff_and_logged(receiver, settings):
    settings.TASKCENTER_NOTIFY_BACKOFF = 0.3
    settings.TASKCENTER_NOTIFY_MAX_ATTEMPTS = 3
    receiver.status = 500
    channel = webhook(receiver.url)
    notifications.rule_save(actor=None, alert_name="NoWorkersOnline", channel=channel)
    notifications.notifications_evaluate(alerts=evaluate(state(workers_online=0)))

    assert notifications.deliveries_send_due() == 1
    delivery = NotificationDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_error) == ("pending", 1, "HTTP 500 Internal Server Error")
    assert notifications.deliveries_send_due() == 0, "retried before its backoff"
    deadline = time.monotonic() + 10
    while NotificationDelivery.objects.get().status == "pending" and time.monotonic() < deadline:
        notifications.deliveries_send_due()
        time.sleep(0.05)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("failed", 3)
    assert len(receiver.requests) == 3
    gaps = [b["at"] - a["at"] for a, b in zip(receiver.requests, receiver.requests[1:], strict=False)]
    assert gaps[0] >= 0.3 and gaps[1] >= 0.6, gaps  # 0.3 s, then doubled
    assert [notifications.backoff_seconds(n) for n in (1, 2, 3)] == [0.3, 0.6, 1.2]


def test_an_unreachable_endpoint_fails_within_the_timeout(settings):
    settings.TASKCENTER_WEBHOOK_ALLOW_PRIVATE = True
    settings.TASKCENTER_NOTIFY_TIMEOUT = 1
    channel = webhook("http://127.0.0.1:9/nothing-listens")
    began = time.monotonic()
    delivery = notifications.channel_test(actor=None, channel=channel)
    assert time.monotonic() - began < 5
    assert delivery.status == "failed" and delivery.last_error


def test_email_notifications_go_through_djangos_mail_backend(mailoutbox):
    channel = notifications.channel_save(
        actor=None, name="on call", kind="email", addresses="ops@example.com\n  dev@example.com  "
    )
    notifications.rule_save(actor=None, alert_name="NoWorkersOnline", channel=channel)
    notifications.notifications_evaluate(alerts=evaluate(state(workers_online=0)))
    notifications.deliveries_send_due()
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert mail.to == ["ops@example.com", "dev@example.com"]
    assert "NoWorkersOnline" in mail.subject and "firing" in mail.subject
    assert "No worker is online" in mail.body
    assert NotificationDelivery.objects.get().status == "sent"


def test_webhook_urls_are_http_only_and_private_targets_are_refused_by_default(settings):
    settings.TASKCENTER_WEBHOOK_ALLOW_PRIVATE = False
    for url in ("ftp://example.com/x", "file:///etc/passwd", "http://127.0.0.1:8000/", "http://10.0.0.5/",
                "http://169.254.169.254/latest/meta-data/", "http://[::1]/", "http://localhost/", "not a url",
                "http://user:pw@example.com/"):  # fmt: skip
        with pytest.raises(InvalidInput) as refused:
            notifications.channel_save(actor=None, name="x", kind="webhook", url=url, secret=SECRET)
        assert "url" in refused.value.errors, url
    assert not NotificationChannel.objects.exists()


def test_send_a_test_from_the_page_sends_now_shows_the_result_and_is_audited(staff_client, receiver):
    channel = webhook(receiver.url)
    response = staff_client.post(f"/notifications/channels/{channel.pk}/test/", follow=True)
    assert response.status_code == 200
    assert f"Test sent to {channel.name}" in response.content.decode()
    assert verified(receiver.requests[0])["status"] == "test"
    entry = AuditEntry.objects.filter(action=AuditEntry.Action.CHANNEL_TEST).get()
    assert entry.outcome == "ok" and entry.actor == staff_client.user

    receiver.status = 503
    response = staff_client.post(f"/notifications/channels/{channel.pk}/test/", follow=True)
    assert "failed: HTTP 503" in response.content.decode()
    assert NotificationDelivery.objects.filter(event="test", status="failed", attempts=1).count() == 1


def test_channels_and_rules_are_managed_from_the_pages_and_the_secret_never_shows(staff_client, receiver):
    response = staff_client.post(
        "/notifications/channels/new/",
        {"name": "ops hook", "kind": "webhook", "url": receiver.url, "secret": SECRET, "enabled": "on"},
    )
    assert response.status_code == 302
    channel = NotificationChannel.objects.get()
    assert channel.secret == SECRET
    response = staff_client.post(
        f"/notifications/channels/{channel.pk}/edit/",
        {"name": "ops hook 2", "kind": "webhook", "url": receiver.url, "secret": "", "enabled": "on"},
    )
    assert response.status_code == 302
    channel.refresh_from_db()
    assert channel.name == "ops hook 2" and channel.secret == SECRET, "a blank secret keeps the saved one"
    response = staff_client.post(
        "/notifications/rules/new/", {"alert_name": "NoWorkersOnline", "channel": channel.pk, "enabled": "on"}
    )
    assert response.status_code == 302
    rule = NotificationRule.objects.get()
    assert rule.alert_name == "NoWorkersOnline" and not rule.notify_on_resolve
    staff_client.post(f"/notifications/channels/{channel.pk}/test/")

    pages = [
        "/notifications/",
        f"/notifications/channels/{channel.pk}/edit/",
        f"/notifications/rules/{rule.pk}/edit/",
        "/audit/",
        "/admin/taskcenter/notificationchannel/",
        f"/admin/taskcenter/notificationchannel/{channel.pk}/change/",
        "/admin/taskcenter/notificationdelivery/",
    ]
    for url in pages:
        response = staff_client.get(url)
        assert response.status_code == 200, url
        assert SECRET not in response.content.decode(), url
    assert SECRET not in json.dumps(list(AuditEntry.objects.values("message", "detail")))

    assert staff_client.post(f"/notifications/rules/{rule.pk}/delete/").status_code == 302
    assert staff_client.post(f"/notifications/channels/{channel.pk}/delete/").status_code == 302
    assert not NotificationChannel.objects.exists()
    actions = list(AuditEntry.objects.order_by("id").values_list("action", flat=True))
    assert actions == ["channel_create", "channel_update", "rule_create", "channel_test", "rule_delete",
                       "channel_delete"]  # fmt: skip


def test_invalid_channel_input_is_a_400_with_reasons(staff_client):
    response = staff_client.post("/notifications/channels/new/", {"name": "x", "kind": "webhook", "url": "ftp://a/"})
    assert response.status_code == 400
    text = response.content.decode()
    assert "Only http:// and https:// URLs are allowed." in text and "needs a secret" in text
    response = staff_client.post("/notifications/channels/new/", {"name": "x", "kind": "email", "addresses": "nope"})
    assert response.status_code == 400 and "Not an e-mail address" in response.content.decode()
    response = staff_client.post("/notifications/rules/new/", {"alert_name": "a b;", "channel": "999"})
    assert response.status_code == 400


def test_a_view_only_user_sees_the_log_but_gets_403_on_every_change(viewer_client, settings, receiver):
    channel = webhook(receiver.url)
    rule = notifications.rule_save(actor=None, alert_name="*", channel=channel)
    response = viewer_client.get("/notifications/")
    assert response.status_code == 200
    assert "Send a test" not in response.content.decode() and SECRET not in response.content.decode()
    for method, url in [
        ("get", "/notifications/channels/new/"),
        ("post", "/notifications/channels/new/"),
        ("get", f"/notifications/channels/{channel.pk}/edit/"),
        ("post", f"/notifications/channels/{channel.pk}/delete/"),
        ("post", f"/notifications/channels/{channel.pk}/test/"),
        ("get", "/notifications/rules/new/"),
        ("post", f"/notifications/rules/{rule.pk}/edit/"),
        ("post", f"/notifications/rules/{rule.pk}/delete/"),
    ]:
        assert getattr(viewer_client, method)(url).status_code == 403, (method, url)
    assert receiver.requests == [] and NotificationChannel.objects.count() == 1

    viewer_client.user.user_permissions.add(Permission.objects.get(codename="manage_notifications"))
    assert viewer_client.get("/notifications/channels/new/").status_code == 200


def test_the_monitor_hook_evaluates_in_a_thread_and_never_runs_two_passes_at_once(monkeypatch):
    started = threading.Event()
    release = threading.Event()

    def slow_pass():
        started.set()
        release.wait(5)

    monkeypatch.setattr(notifications, "notifications_pass", slow_pass)
    assert notifications.notifications_pass_start()
    assert started.wait(5)
    assert not notifications.notifications_pass_start(), "a second pass while the first still runs"
    release.set()
    notifications._pass_thread.join(5)
    assert notifications.notifications_pass_start()
    release.set()
    notifications._pass_thread.join(5)


def test_old_finished_deliveries_are_pruned_and_pending_ones_kept(settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.TASKCENTER_NOTIFY_LOG_DAYS = 30
    channel = NotificationChannel.objects.create(name="mail", kind="email", addresses="ops@example.com")
    old = timezone.now() - timedelta(days=31)
    for status in ("sent", "failed", "pending"):
        NotificationDelivery.objects.create(
            channel=channel, alert_name="X", event="firing", status=status, created_at=old
        )
    NotificationDelivery.objects.create(channel=channel, alert_name="X", event="firing", status="sent")
    assert notifications.deliveries_prune(batch=1) == 1
    assert notifications.deliveries_prune() == 1
    assert sorted(NotificationDelivery.objects.values_list("status", flat=True)) == ["pending", "sent"]
