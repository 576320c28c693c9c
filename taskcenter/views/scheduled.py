"""Scheduled page: runs waiting in the scheduled set for their countdown, ETA or retry; run one now."""

from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from taskcenter import permissions
from taskcenter.models import Run
from taskcenter.selectors.scheduled import scheduled_page
from taskcenter.services import scheduled
from taskcenter.services.errors import ServiceError
from taskcenter.views.common import allowed, perform_action, staff_required

CONTROL_REFUSED = gettext_lazy("You need the 'control runs' permission to run a delayed run now.")


def _cursor(value: str | None) -> float | None:
    try:
        after = float(value) if value else None
    except ValueError:
        return None
    return after if after is not None and abs(after) < 1e11 else None


@staff_required
def scheduled_list(request, status: int = 200):
    context = {"can_control": permissions.can_control(request.user), "page": None, "error": ""}
    try:
        context["page"] = scheduled_page(after=_cursor(request.GET.get("after")))
    except ServiceError as exc:
        context["error"], status = str(exc), exc.status_code
    return render(request, "taskcenter/scheduled_list.html", context, status=status)


@allowed(permissions.can_control, CONTROL_REFUSED)
@require_POST
def scheduled_run_now(request, task_id):
    run = Run.objects.filter(task_result_id=task_id).first()
    if run is None:
        raise Http404(_("No such run."))
    return perform_action(
        request,
        lambda: scheduled.scheduled_run_now(run=run, actor=request.user),
        page=lambda request, status: scheduled_list(request, status=status),
        page_url=reverse("taskcenter:scheduled_list"),
    )
