"""Broker page (Redis's own figures) and the queue browser (a queue's messages; delete or dead-letter one)."""

from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from taskcenter import permissions
from taskcenter.selectors.broker import MAX_OFFSET, broker_overview, queue_messages_page
from taskcenter.services import queues
from taskcenter.services.errors import ServiceError
from taskcenter.views.common import allowed, perform_action, staff_required, user_abilities

manage_queues_required = allowed(
    permissions.can_manage_queues,
    gettext_lazy("You need the 'manage queues' permission to delete a message or move it to dead letters."),
)


@staff_required
def broker_page(request):
    context, status = {"overview": None, "error": ""}, 200
    try:
        context["overview"] = broker_overview()
    except ServiceError as exc:
        context["error"], status = str(exc), exc.status_code
    return render(request, "taskcenter/broker.html", context, status=status)


@staff_required
def queue_messages(request, name):
    return _messages_page(request, name=name)


@manage_queues_required
@require_POST
def queue_message_delete(request, name):
    message_id = request.POST.get("message", "")
    return _perform(
        request, name, lambda: queues.queue_message_delete(name=name, message_id=message_id, actor=request.user)
    )


@manage_queues_required
@require_POST
def queue_message_deadletter(request, name):
    message_id = request.POST.get("message", "")
    return _perform(
        request, name, lambda: queues.queue_message_deadletter(name=name, message_id=message_id, actor=request.user)
    )


def _perform(request, name, action):
    offset = _offset(request.POST.get("offset")) or 0
    url = reverse("taskcenter:queue_messages", args=[name]) + (f"?offset={offset}" if offset else "")
    return perform_action(
        request, action, page=lambda request, status: _messages_page(request, name=name, status=status), page_url=url
    )


def _offset(value) -> int | None:
    """The page's offset: a whole number from 0 to ``MAX_OFFSET``; None when it is not one."""
    if value in (None, ""):
        return 0
    try:
        offset = int(value)
    except (TypeError, ValueError):
        return None
    return offset if 0 <= offset <= MAX_OFFSET else None


def _messages_page(request, *, name: str, status: int = 200):
    context = {"queue": name, "page": None, "error": "", **user_abilities(request.user)}
    offset = _offset(request.GET.get("offset"))
    if offset is None:
        context["error"], status = _("The offset must be a whole number from 0 to %(max)s.") % {"max": MAX_OFFSET}, 400
        offset = 0
    try:
        context["page"] = queue_messages_page(name=name, offset=offset)
    except ServiceError as exc:
        context["error"], status = str(exc), exc.status_code
    return render(request, "taskcenter/queue_messages.html", context, status=status)
