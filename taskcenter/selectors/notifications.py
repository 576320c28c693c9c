"""Reads of the notifications page: channels, rules, alert states and the delivery log."""

from taskcenter.models import AlertState, NotificationChannel, NotificationDelivery, NotificationRule

#: Most deliveries the log shows at once (newest first).
LOG_LIMIT = 200


def channels_list() -> list[NotificationChannel]:
    return list(NotificationChannel.objects.all())


def rules_list() -> list[NotificationRule]:
    return list(NotificationRule.objects.select_related("channel"))


def alert_states() -> list[AlertState]:
    return list(AlertState.objects.order_by("name"))


def known_alert_names() -> list[str]:
    """Alert names an operator may route: those of the alerts page and any seen firing."""
    from taskcenter.selectors.alerts import thresholds

    names = {threshold.alert for threshold in thresholds()}
    names.update(AlertState.objects.values_list("name", flat=True))
    return sorted(names)


def deliveries_list(*, channel_id: int | None = None, status: str = "", alert_name: str = "", limit: int = LOG_LIMIT):
    """The newest deliveries matching the filters (each optional)."""
    deliveries = NotificationDelivery.objects.select_related("channel")
    if channel_id is not None:
        deliveries = deliveries.filter(channel_id=channel_id)
    if status:
        deliveries = deliveries.filter(status=status)
    if alert_name:
        deliveries = deliveries.filter(alert_name=alert_name)
    return list(deliveries.order_by("-id")[:limit])
