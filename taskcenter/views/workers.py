"""Workers pages: the workers online, and one worker in detail; pool, queue, rate and time limit actions."""

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from taskcenter import catalogue, permissions
from taskcenter.services import workers
from taskcenter.services.workers import ActionReport
from taskcenter.views.common import allowed, perform_action, staff_required, user_abilities

manage_workers_required = allowed(
    permissions.can_manage_workers,
    gettext_lazy("You need the 'manage workers' permission to resize pools or set rate limits."),
)
POOL_ACTIONS = {"grow": workers.worker_pool_grow, "shrink": workers.worker_pool_shrink}


@staff_required
def worker_list(request):
    return _workers_page(request)


@manage_workers_required
@require_POST
def worker_pool(request, hostname):
    resize = POOL_ACTIONS.get(request.POST.get("action", ""))
    n = _whole_number(request.POST.get("n", ""))
    if resize is None or n is None:
        messages.error(request, _("Choose grow or shrink and a whole number of processes."))
        return _workers_page(request, status=400)

    def act():
        return resize(hostname=hostname, n=n, actor=request.user)

    if request.POST.get("from") == "worker":  # sent from the worker's own page: back to it
        return _perform_on(request, hostname, act)
    return _perform(request, act)


@manage_workers_required
@require_POST
def rate_limit(request):
    task_name = request.POST.get("task_name", "").strip()
    rate = request.POST.get("rate", "")
    return _perform(request, lambda: workers.rate_limit_set(task_name=task_name, rate=rate, actor=request.user))


@manage_workers_required
@require_POST
def worker_pool_restart(request, hostname):
    return _perform_on(request, hostname, lambda: workers.worker_pool_restart(hostname=hostname, actor=request.user))


@manage_workers_required
@require_POST
def worker_autoscale(request, hostname):
    minimum = _whole_number(request.POST.get("min", ""))
    maximum = _whole_number(request.POST.get("max", ""))
    if minimum is None or maximum is None:
        messages.error(request, _("Give the minimum and maximum as whole numbers of processes."))
        return _worker_page(request, hostname, status=400)
    return _perform_on(
        request,
        hostname,
        lambda: workers.worker_autoscale(hostname=hostname, minimum=minimum, maximum=maximum, actor=request.user),
    )


QUEUE_ACTIONS = {"add": workers.worker_queue_add, "cancel": workers.worker_queue_cancel}


@manage_workers_required
@require_POST
def worker_queue(request, hostname):
    change = QUEUE_ACTIONS.get(request.POST.get("action", ""))
    queue = request.POST.get("queue", "").strip()
    if change is None or not queue:
        messages.error(request, _("Choose a queue, and whether the worker should consume it or stop."))
        return _worker_page(request, hostname, status=400)
    return _perform_on(request, hostname, lambda: change(hostname=hostname, queue=queue, actor=request.user))


@manage_workers_required
@require_POST
def worker_time_limit(request, hostname):
    task_name = request.POST.get("task_name", "").strip()
    soft, hard = _seconds(request.POST.get("soft", "")), _seconds(request.POST.get("hard", ""))
    if not task_name or soft is False or hard is False:
        messages.error(request, _("Give a task name, and time limits as numbers of seconds (empty: the default)."))
        return _worker_page(request, hostname, status=400)
    return _perform_on(
        request,
        hostname,
        lambda: workers.worker_time_limit_set(
            hostname=hostname, task_name=task_name, soft=soft, hard=hard, actor=request.user
        ),
    )


@staff_required
def worker_detail(request, hostname):
    return _worker_page(request, hostname)


def _seconds(text: str) -> float | None | bool:
    """A number of seconds, None for an empty field, False when it is not a number."""
    text = text.strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return False


def _whole_number(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _perform(request, action: Callable[[], ActionReport]):
    return perform_action(request, action, page=_workers_page, page_url="taskcenter:worker_list")


def _perform_on(request, hostname: str, action: Callable[[], ActionReport]):
    return perform_action(
        request,
        action,
        page=lambda request, status: _worker_page(request, hostname, status=status),
        page_url=reverse("taskcenter:worker_detail", args=[hostname]),
    )


def _worker_page(request, hostname: str, *, status: int = 200):
    detail = workers.worker_detail(hostname=hostname)
    if not detail.online and not detail.broker_down and status == 200:
        status = 404
    context = {
        "detail": detail,
        "worker": detail.info,
        "task_names": [entry.name for entry in catalogue.all_entries()],
        "queue_names": settings.TASKCENTER_QUEUES,
        "max_pool_processes": settings.TASKCENTER_MAX_POOL_PROCESSES,
        "pool_restarts": workers.pool_restarts_enabled(),
        "time_limit_ceiling": workers.time_limit_ceiling(),
        "default_time_limits": (settings.CELERY_TASK_SOFT_TIME_LIMIT, settings.CELERY_TASK_TIME_LIMIT),
        **user_abilities(request.user),
    }
    return render(request, "taskcenter/worker.html", context, status=status)


def _workers_page(request, *, status: int = 200):
    context = {
        "overview": workers.workers_overview(),
        "task_names": [entry.name for entry in catalogue.all_entries()],
        "max_pool_processes": settings.TASKCENTER_MAX_POOL_PROCESSES,
        **user_abilities(request.user),
    }
    return render(request, "taskcenter/workers.html", context, status=status)
