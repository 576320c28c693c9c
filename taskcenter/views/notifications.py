"""Notifications pages: channels, rules, "send a test" and the delivery log."""

from django.contrib import messages
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from taskcenter import permissions
from taskcenter.forms.notifications import ChannelForm, DeliveryFilterForm, RuleForm
from taskcenter.models import NotificationChannel, NotificationDelivery, NotificationRule
from taskcenter.selectors import notifications as selectors
from taskcenter.services import notifications as services
from taskcenter.views.common import allowed, staff_required, submit

manage_required = allowed(
    permissions.can_manage_notifications,
    gettext_lazy("You need the 'manage notifications' permission to change or test notification channels and rules."),
)


@staff_required
def notification_list(request):
    filters = DeliveryFilterForm(request.GET)
    data = filters.cleaned_data if filters.is_valid() else {}
    channel = data.get("channel")
    deliveries = selectors.deliveries_list(
        channel_id=channel.pk if channel else None, status=data.get("status") or "", alert_name=data.get("alert") or ""
    )
    context = {
        "channels": selectors.channels_list(),
        "rules": selectors.rules_list(),
        "states": selectors.alert_states(),
        "deliveries": deliveries,
        "filters": filters,
        "can_manage_notifications": permissions.can_manage_notifications(request.user),
    }
    return render(request, "taskcenter/notifications.html", context, status=200 if filters.is_valid() else 400)


@manage_required
def channel_new(request):
    return _channel_form(request, None)


@manage_required
def channel_edit(request, pk):
    return _channel_form(request, get_object_or_404(NotificationChannel, pk=pk))


def _channel_form(request, channel):
    initial = {"enabled": True}
    if channel is not None:
        initial = {key: getattr(channel, key) for key in ("name", "kind", "url", "addresses", "enabled")}
    form = ChannelForm(request.POST or None, initial=initial)
    saved, status = submit(
        request, form, lambda data: services.channel_save(actor=request.user, channel=channel, **data)
    )
    if saved is not None:
        messages.success(request, _("Channel %(name)s saved.") % {"name": saved.name})
        return redirect("taskcenter:notification_list")
    context = {"form": form, "channel": channel, "has_secret": bool(channel and channel.secret)}
    return render(request, "taskcenter/notification_channel_form.html", context, status=status)


@manage_required
@require_POST
def channel_delete(request, pk):
    channel = get_object_or_404(NotificationChannel, pk=pk)
    services.channel_delete(actor=request.user, channel=channel)
    messages.success(request, _("Channel %(name)s deleted.") % {"name": channel.name})
    return redirect("taskcenter:notification_list")


@manage_required
@require_POST
def channel_test(request, pk):
    channel = get_object_or_404(NotificationChannel, pk=pk)
    delivery = services.channel_test(actor=request.user, channel=channel)
    if delivery.status == NotificationDelivery.Status.SENT:
        messages.success(request, _("Test sent to %(name)s.") % {"name": delivery.channel.name})
    else:
        messages.error(
            request,
            _("Test to %(name)s failed: %(error)s") % {"name": delivery.channel.name, "error": delivery.last_error},
        )
    return redirect("taskcenter:notification_list")


@manage_required
def rule_new(request):
    return _rule_form(request, None)


@manage_required
def rule_edit(request, pk):
    return _rule_form(request, get_object_or_404(NotificationRule, pk=pk))


def _rule_form(request, rule):
    initial = {"enabled": True, "notify_on_resolve": True, "alert_name": request.GET.get("alert", "")[:100]}
    if rule is not None:
        initial = {key: getattr(rule, key) for key in ("alert_name", "channel", "notify_on_resolve", "enabled")}
    form = RuleForm(request.POST or None, initial=initial)
    saved, status = submit(request, form, lambda data: services.rule_save(actor=request.user, rule=rule, **data))
    if saved is not None:
        messages.success(
            request,
            _("Rule %(alert)s -> %(channel)s saved.") % {"alert": saved.alert_name, "channel": saved.channel.name},
        )
        return redirect("taskcenter:notification_list")
    context = {"form": form, "rule": rule, "alert_names": selectors.known_alert_names()}
    return render(request, "taskcenter/notification_rule_form.html", context, status=status)


@manage_required
@require_POST
def rule_delete(request, pk):
    rule = get_object_or_404(NotificationRule.objects.select_related("channel"), pk=pk)
    services.rule_delete(actor=request.user, rule=rule)
    messages.success(request, _("Rule deleted."))
    return redirect("taskcenter:notification_list")
