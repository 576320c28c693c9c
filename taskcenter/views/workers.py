"""Workers page: workers online with their pools, queues and tasks; pool size and rate limits."""

from collections.abc import Callable

from django.conf import settings
from django.contrib import messages
from django.shortcuts import render
from django.views.decorators.http import require_POST

from taskcenter import catalogue, permissions
from taskcenter.services import workers
from taskcenter.services.workers import ActionReport
from taskcenter.views.common import allowed, perform_action, staff_required, user_abilities

manage_workers_required = allowed(
    permissions.can_manage_workers, "You need the 'manage workers' permission to resize pools or set rate limits."
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
        messages.error(request, "Choose grow or shrink and a whole number of processes.")
        return _workers_page(request, status=400)
    return _perform(request, lambda: resize(hostname=hostname, n=n, actor=request.user))


@manage_workers_required
@require_POST
def rate_limit(request):
    task_name = request.POST.get("task_name", "").strip()
    rate = request.POST.get("rate", "")
    return _perform(request, lambda: workers.rate_limit_set(task_name=task_name, rate=rate, actor=request.user))


def _whole_number(text: str) -> int | None:
    try:
        return int(text.strip())
    except ValueError:
        return None


def _perform(request, action: Callable[[], ActionReport]):
    return perform_action(request, action, page=_workers_page, page_url="taskcenter:worker_list")


def _workers_page(request, *, status: int = 200):
    context = {
        "overview": workers.workers_overview(),
        "task_names": [entry.name for entry in catalogue.all_entries()],
        "max_pool_processes": settings.TASKCENTER_MAX_POOL_PROCESSES,
        **user_abilities(request.user),
    }
    return render(request, "taskcenter/workers.html", context, status=status)
