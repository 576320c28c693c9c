"""Template context for every page: the alerts firing now (navigation badge and banner)."""

from django.utils.functional import SimpleLazyObject

from taskcenter import permissions


def alerts(request) -> dict:
    """``alert_summary``: computed only when a template reads it, and only for users who may see alerts."""

    def summary():
        from taskcenter.selectors.alerts import AlertSummary, alert_summary

        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated or not permissions.can_view(user):
            return AlertSummary(known=False)
        if getattr(request, "taskcenter_unavailable", False):
            return AlertSummary(known=False)  # the page reports the broker's failure already
        return alert_summary()

    return {"alert_summary": SimpleLazyObject(summary)}
