"""Queues page: depth per priority, oldest message, consumers; pause, resume and purge."""

from collections.abc import Callable

from django.shortcuts import render
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from taskcenter import permissions
from taskcenter.services import queues
from taskcenter.services.workers import ActionReport
from taskcenter.views.common import allowed, perform_action, staff_required, user_abilities

manage_queues_required = allowed(
    permissions.can_manage_queues,
    gettext_lazy("You need the 'manage queues' permission to pause, resume or purge queues."),
)


@staff_required
def queue_list(request):
    return _queues_page(request)


@manage_queues_required
@require_POST
def queue_pause(request, name):
    return _perform(request, lambda: queues.queue_pause(name=name, actor=request.user))


@manage_queues_required
@require_POST
def queue_resume(request, name):
    return _perform(request, lambda: queues.queue_resume(name=name, actor=request.user))


@manage_queues_required
@require_POST
def queue_purge(request, name):
    confirmation = request.POST.get("confirm", "")
    return _perform(request, lambda: queues.queue_purge(name=name, confirmation=confirmation, actor=request.user))


def _perform(request, action: Callable[[], ActionReport]):
    return perform_action(request, action, page=_queues_page, page_url="taskcenter:queue_list")


def _queues_page(request, *, status: int = 200):
    context = {"overview": queues.queues_overview(), **user_abilities(request.user)}
    return render(request, "taskcenter/queues.html", context, status=status)
