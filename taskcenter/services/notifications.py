"""Alert notifications: channels and rules, transitions of the alerts, signed webhooks and e-mail, with retries.

Who evaluates: the monitor process (``manage.py taskcenter_monitor``, the one holding
the monitor lock) calls ``notifications_pass_start()`` every
``TASKCENTER_NOTIFY_INTERVAL`` seconds. A pass runs in its own daemon thread, so a slow
endpoint never holds up event counting; a pass still running when the next is due is
not doubled. A pass compares ``current_alerts()`` with the ``AlertState`` rows (so a
restart does not notify again), queues one ``NotificationDelivery`` per transition and
matching rule (firing; resolved when the rule asks), then sends the deliveries that are
due. A failed send is retried with exponential backoff
(``TASKCENTER_NOTIFY_BACKOFF`` × 2^(attempt-1), at most an hour) until
``TASKCENTER_NOTIFY_MAX_ATTEMPTS``; each send waits at most ``TASKCENTER_NOTIFY_TIMEOUT``.

Rules match alerts by name (``*``: every alert), so a new alert in
``selectors.alerts.evaluate`` can be routed without a change here. Alerts of one name
(two queues over their backlog) make one notification listing every message.

Webhooks: a JSON POST; ``X-Taskcenter-Timestamp`` (Unix seconds) and
``X-Taskcenter-Signature: sha256=<hex>``, the HMAC-SHA256 with the channel's secret of
``<timestamp>.<body>``. A receiver recomputes it, compares in constant time and refuses
old timestamps (replay). Only http(s) URLs; redirects are not followed; addresses that
resolve to private, loopback, link-local or reserved networks are refused unless
``TASKCENTER_WEBHOOK_ALLOW_PRIVATE`` (checked when saved and again before each send).
"""

import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.core.validators import EmailValidator
from django.db import close_old_connections, connections, transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from taskcenter.models import AlertState, NotificationChannel, NotificationDelivery, NotificationRule
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import InvalidInput

logger = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Taskcenter-Signature"
TIMESTAMP_HEADER = "X-Taskcenter-Timestamp"
#: Longest wait between two attempts of one delivery (seconds).
BACKOFF_MAX = 3600.0
#: Most deliveries one pass sends (the rest wait for the next pass).
SEND_LIMIT = 50
EVERY_ALERT = "*"
ALERT_NAME_MAX = 100


class InvalidChannel(InvalidInput):
    """The channel's fields are wrong (URL, addresses, secret)."""


@dataclass(frozen=True)
class SendResult:
    ok: bool
    error: str = ""


# --- Validation ------------------------------------------------------------------------


def webhook_url_problem(url: str) -> str:
    """Why ``url`` may not be a webhook target ("" when it may): http(s) only, no private addresses."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return _("Enter a valid URL.")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return _("Only http:// and https:// URLs are allowed.")
    if parts.username or parts.password:
        return _("Put no user name or password in the URL; the request is signed instead.")
    if settings.TASKCENTER_WEBHOOK_ALLOW_PRIVATE:
        return ""
    try:
        infos = socket.getaddrinfo(parts.hostname, port or (443 if parts.scheme == "https" else 80))
    except (OSError, UnicodeError) as exc:
        return _("The host %(host)s could not be resolved (%(error)s).") % {"host": parts.hostname, "error": exc}
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%")[0])
        if not address.is_global or address.is_multicast:
            return _(
                "%(host)s resolves to %(address)s, a private, loopback or reserved address; "
                "set TASKCENTER_WEBHOOK_ALLOW_PRIVATE to allow it."
            ) % {"host": parts.hostname, "address": address}
    return ""


def _channel_fields(*, kind: str, url: str, addresses: str, secret: str, keep_secret: str) -> dict:
    errors: dict[str, list[str]] = {}
    url, addresses, secret = url.strip(), addresses.strip(), secret.strip()
    if kind == NotificationChannel.Kind.WEBHOOK:
        problem = webhook_url_problem(url) if url else _("A webhook needs a URL.")
        if problem:
            errors["url"] = [problem]
        if not (secret or keep_secret):
            errors["secret"] = [_("A webhook needs a secret to sign its requests.")]
        elif secret and len(secret) < 16:
            errors["secret"] = [_("Use a secret of at least 16 characters.")]
        addresses = ""
    elif kind == NotificationChannel.Kind.EMAIL:
        lines = [line.strip() for line in addresses.splitlines() if line.strip()]
        validate = EmailValidator()
        bad = [line for line in lines if not _valid(validate, line)]
        if not lines:
            errors["addresses"] = [_("Enter at least one e-mail address.")]
        elif bad:
            errors["addresses"] = [_("Not an e-mail address: %(address)s") % {"address": bad[0][:100]}]
        url, secret, keep_secret = "", "", ""
        addresses = "\n".join(lines)
    else:
        errors["kind"] = [_("Choose webhook or e-mail.")]
    if errors:
        raise InvalidChannel(errors=errors)
    return {"kind": kind, "url": url, "addresses": addresses, "secret": secret or keep_secret}


def _valid(validator, value: str) -> bool:
    try:
        validator(value)
    except Exception:
        return False
    return True


def _alert_name(value: str) -> str:
    name = value.strip()
    if name != EVERY_ALERT and not (name[:1].isalpha() and name.replace("_", "").isalnum() and name.isascii()):
        raise InvalidInput(errors={"alert_name": [_("Enter an alert name (letters, digits, _) or * for every alert.")]})
    if len(name) > ALERT_NAME_MAX:
        raise InvalidInput(errors={"alert_name": [_("At most %(limit)s characters.") % {"limit": ALERT_NAME_MAX}]})
    return name


# --- Channels and rules (operator actions, audited) -------------------------------------


def channel_save(
    *,
    actor,
    channel: NotificationChannel | None = None,
    name: str,
    kind: str,
    url: str = "",
    addresses: str = "",
    secret: str = "",
    enabled: bool = True,
) -> NotificationChannel:
    """Create a channel, or change ``channel``; a blank ``secret`` keeps the saved one."""
    name = name.strip()
    if not name:
        raise InvalidInput(errors={"name": [_("Enter a name.")]})
    clash = NotificationChannel.objects.filter(name=name).exclude(pk=getattr(channel, "pk", None))
    if clash.exists():
        raise InvalidInput(errors={"name": [_("A channel of this name exists.")]})
    fields = _channel_fields(
        kind=kind, url=url, addresses=addresses, secret=secret, keep_secret=channel.secret if channel else ""
    )
    creating = channel is None
    channel = channel or NotificationChannel()
    channel.name, channel.enabled = name, enabled
    for key, value in fields.items():
        setattr(channel, key, value)
    channel.save()
    audit_record(
        actor=actor,
        action=Action.CHANNEL_CREATE if creating else Action.CHANNEL_UPDATE,
        target=channel.name,
        message=(_("%(kind)s to %(target)s") if enabled else _("%(kind)s to %(target)s (disabled)"))
        % {"kind": channel.get_kind_display(), "target": channel.target},
        detail={"channel": channel.pk, "secret_changed": bool(secret.strip())},
    )
    return channel


def channel_delete(*, actor, channel: NotificationChannel) -> None:
    """Delete a channel with its rules and deliveries."""
    name = channel.name
    channel.delete()
    audit_record(actor=actor, action=Action.CHANNEL_DELETE, target=name, message=_("Channel deleted."))


def rule_save(
    *,
    actor,
    rule: NotificationRule | None = None,
    alert_name: str,
    channel: NotificationChannel,
    notify_on_resolve: bool = True,
    enabled: bool = True,
) -> NotificationRule:
    """Create a rule, or change ``rule``: notify ``channel`` when ``alert_name`` fires (and resolves)."""
    alert_name = _alert_name(alert_name)
    clash = NotificationRule.objects.filter(alert_name=alert_name, channel=channel)
    if clash.exclude(pk=getattr(rule, "pk", None)).exists():
        raise InvalidInput(errors={"alert_name": [_("This alert already goes to this channel.")]})
    creating = rule is None
    rule = rule or NotificationRule()
    rule.alert_name, rule.channel = alert_name, channel
    rule.notify_on_resolve, rule.enabled = notify_on_resolve, enabled
    rule.save()
    audit_record(
        actor=actor,
        action=Action.RULE_CREATE if creating else Action.RULE_UPDATE,
        target=f"{alert_name} -> {channel.name}",
        message={
            (True, True): _("on firing and resolving"),
            (False, True): _("on firing"),
            (True, False): _("on firing and resolving (disabled)"),
            (False, False): _("on firing (disabled)"),
        }[(notify_on_resolve, enabled)],
        detail={"rule": rule.pk, "channel": channel.pk},
    )
    return rule


def rule_delete(*, actor, rule: NotificationRule) -> None:
    target = f"{rule.alert_name} -> {rule.channel.name}"
    rule.delete()
    audit_record(actor=actor, action=Action.RULE_DELETE, target=target, message=_("Rule deleted."))


def channel_test(*, actor, channel: NotificationChannel) -> NotificationDelivery:
    """Send a test notification to ``channel`` now (one attempt, at most the timeout) and log it.

    The one send made in a web request: the operator asked for it and waits for its result.
    """
    payload = _payload(
        alert="TaskcenterTest",
        status=NotificationDelivery.Event.TEST,
        severity="info",
        messages=[_("A test notification from taskcenter; nothing is wrong.")],
    )
    delivery = NotificationDelivery.objects.create(
        channel=channel,
        alert_name="TaskcenterTest",
        event=NotificationDelivery.Event.TEST,
        summary=payload["messages"][0],
        payload=payload,
    )
    _attempt(delivery, final=True)
    audit_record(
        actor=actor,
        action=Action.CHANNEL_TEST,
        target=channel.name,
        outcome=Outcome.OK if delivery.status == NotificationDelivery.Status.SENT else Outcome.ERROR,
        message=_("Test sent.") if delivery.status == NotificationDelivery.Status.SENT else delivery.last_error,
        detail={"channel": channel.pk, "delivery": delivery.pk},
    )
    return delivery


# --- Evaluation -------------------------------------------------------------------------


def _payload(*, alert: str, status: str, severity: str, messages: list[str], value=None, threshold=None) -> dict:
    return {
        "source": "taskcenter",
        "alert": alert,
        "status": status,
        "severity": severity,
        "messages": messages,
        "value": value,
        "threshold": threshold,
        "at": timezone.now().isoformat(),
    }


def notifications_evaluate(*, alerts: list) -> int:
    """Record which alerts fire now and queue a delivery per transition and matching rule; return how many."""
    now = timezone.now()
    firing: dict[str, list] = {}
    for alert in alerts:
        firing.setdefault(alert.name, []).append(alert)
    queued = 0
    with transaction.atomic():
        states = {state.name: state for state in AlertState.objects.select_for_update()}
        rules = list(NotificationRule.objects.filter(enabled=True, channel__enabled=True).select_related("channel"))
        for name in sorted(set(firing) | {name for name, state in states.items() if state.firing}):
            state = states.get(name)
            now_firing = name in firing
            if state is not None and state.firing == now_firing:
                continue
            if state is None and not now_firing:
                continue
            group = firing.get(name, [])
            messages = [alert.message for alert in group] or [_("%(alert)s no longer fires.") % {"alert": name}]
            AlertState.objects.update_or_create(
                name=name, defaults={"firing": now_firing, "since": now, "message": "\n".join(messages)[:5000]}
            )
            event = NotificationDelivery.Event.FIRING if now_firing else NotificationDelivery.Event.RESOLVED
            logger.info("Alert %s %s", name, event)
            payload = _payload(
                alert=name,
                status=event,
                severity=group[0].severity if group else "",
                messages=messages,
                value=group[0].value if group else None,
                threshold=group[0].threshold if group else None,
            )
            for rule in rules:
                if rule.alert_name not in (name, EVERY_ALERT) or (not now_firing and not rule.notify_on_resolve):
                    continue
                NotificationDelivery.objects.create(
                    channel=rule.channel,
                    alert_name=name,
                    event=event,
                    summary="\n".join(messages)[:1000],
                    payload=payload,
                    next_attempt_at=now,
                )
                queued += 1
    return queued


def deliveries_send_due(*, limit: int = SEND_LIMIT) -> int:
    """Attempt the pending deliveries that are due; return how many were attempted."""
    due = NotificationDelivery.objects.filter(
        status=NotificationDelivery.Status.PENDING, next_attempt_at__lte=timezone.now()
    ).select_related("channel")
    count = 0
    for delivery in due.order_by("next_attempt_at", "id")[:limit]:
        _attempt(delivery)
        count += 1
    return count


def deliveries_prune(*, batch: int = 1000) -> int:
    """Delete at most ``batch`` finished deliveries older than ``TASKCENTER_NOTIFY_LOG_DAYS``; return how many."""
    cutoff = timezone.now() - timedelta(days=settings.TASKCENTER_NOTIFY_LOG_DAYS)
    old = NotificationDelivery.objects.filter(created_at__lt=cutoff).exclude(status=NotificationDelivery.Status.PENDING)
    ids = list(old.order_by("id").values_list("id", flat=True)[:batch])
    return NotificationDelivery.objects.filter(id__in=ids).delete()[0] if ids else 0


def notifications_pass() -> None:
    """One evaluation of the alerts and one round of sends; never raises."""
    from taskcenter.selectors.alerts import current_alerts

    close_old_connections()
    try:
        if NotificationRule.objects.filter(enabled=True).exists() or AlertState.objects.filter(firing=True).exists():
            notifications_evaluate(alerts=current_alerts())
        deliveries_send_due()
        deliveries_prune()
    except Exception:
        logger.exception("Notification pass failed")
    finally:
        connections.close_all()


_pass_thread: threading.Thread | None = None


def notifications_pass_start() -> bool:
    """Start a pass in a daemon thread unless one is still running; return whether one started."""
    global _pass_thread
    if _pass_thread is not None and _pass_thread.is_alive():
        return False
    _pass_thread = threading.Thread(target=notifications_pass, name="taskcenter-notify", daemon=True)
    _pass_thread.start()
    return True


# --- Sending ----------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Wait after the ``attempts``-th failed attempt: the base doubled each time, capped."""
    base = float(settings.TASKCENTER_NOTIFY_BACKOFF)
    return min(BACKOFF_MAX, base * 2 ** max(0, attempts - 1))


def _attempt(delivery: NotificationDelivery, *, final: bool = False) -> None:
    channel = delivery.channel
    if not channel.enabled and delivery.event != NotificationDelivery.Event.TEST:
        result = SendResult(False, _("The channel is disabled."))
        final = True
    elif channel.kind == NotificationChannel.Kind.WEBHOOK:
        result = webhook_send(channel=channel, payload=delivery.payload)
    else:
        result = email_send(channel=channel, payload=delivery.payload)
    delivery.attempts += 1
    now = timezone.now()
    if result.ok:
        delivery.status, delivery.finished_at, delivery.next_attempt_at = NotificationDelivery.Status.SENT, now, None
        delivery.last_error = ""
    else:
        delivery.last_error = result.error[:2000]
        if final or delivery.attempts >= settings.TASKCENTER_NOTIFY_MAX_ATTEMPTS:
            delivery.status, delivery.finished_at, delivery.next_attempt_at = (
                NotificationDelivery.Status.FAILED, now, None,
            )  # fmt: skip
        else:
            delivery.next_attempt_at = now + timedelta(seconds=backoff_seconds(delivery.attempts))
        logger.warning(
            "Notification %s to %s failed (attempt %d): %s", delivery.pk, channel.name, delivery.attempts, result.error
        )
    delivery.save(update_fields=["status", "attempts", "last_error", "next_attempt_at", "finished_at"])


def sign(*, secret: str, timestamp: str, body: bytes) -> str:
    """The signature header's value: ``sha256=`` and the HMAC-SHA256 of ``<timestamp>.<body>``."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # a redirect could lead to a private address
        return None


def webhook_send(*, channel: NotificationChannel, payload: dict) -> SendResult:
    """POST ``payload`` as signed JSON to the channel's URL; a 2xx answer within the timeout is success."""
    problem = webhook_url_problem(channel.url)
    if problem:
        return SendResult(False, problem)
    body = json.dumps(payload, sort_keys=True).encode()
    timestamp = str(int(time.time()))
    request = urllib.request.Request(
        channel.url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": "taskcenter-notifications",
            TIMESTAMP_HEADER: timestamp,
            SIGNATURE_HEADER: sign(secret=channel.secret, timestamp=timestamp, body=body),
        },
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=settings.TASKCENTER_NOTIFY_TIMEOUT) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        return SendResult(False, f"HTTP {exc.code} {exc.reason}")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return SendResult(False, f"{type(exc).__name__}: {getattr(exc, 'reason', exc)}")
    if not 200 <= status < 300:
        return SendResult(False, f"HTTP {status}")
    return SendResult(True)


def email_send(*, channel: NotificationChannel, payload: dict) -> SendResult:
    """Send ``payload`` as a plain-text e-mail through Django's mail backend."""
    subject = f"[taskcenter] {payload.get('alert')} {payload.get('status')}"
    lines = [
        *payload.get("messages", []),
        "",
        _("Severity: %(severity)s") % {"severity": payload.get("severity") or "-"},
        _("At: %(at)s") % {"at": payload["at"]},
    ]
    try:
        send_mail(subject, "\n".join(lines), None, channel.address_list, fail_silently=False)
    except Exception as exc:  # SMTP, DNS, a refused recipient: logged on the delivery, retried
        return SendResult(False, f"{type(exc).__name__}: {exc}")
    return SendResult(True)
