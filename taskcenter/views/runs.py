"""Run history, run detail, and the actions on runs: cancel, terminate, retry."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from taskcenter import catalogue, permissions
from taskcenter.broker import BROKER_ERRORS
from taskcenter.forms import BulkRetryForm, RetryForm, RunFilterForm
from taskcenter.models import Batch, Run, RunSource
from taskcenter.progress import progress_of
from taskcenter.secret_arguments import MASK
from taskcenter.selectors.audit import audit_for_task
from taskcenter.selectors.monitoring import stuck_runs
from taskcenter.selectors.retry_policy import run_retry_status
from taskcenter.selectors.run_story import run_story
from taskcenter.selectors.runs import (
    RunFilters,
    batch_progress,
    run_by_task_id,
    runs_by_task_ids,
    runs_for_retry,
    runs_page,
    workflow_graph,
)
from taskcenter.selectors.saved_filters import saved_filters_for
from taskcenter.selectors.scheduled import run_waiting_place
from taskcenter.services import control
from taskcenter.services.errors import InvalidInput
from taskcenter.services.saved_filters import saved_filter_delete, saved_filter_save
from taskcenter.views.common import allowed, perform_action, staff_required, submit, user_abilities
from taskcenter.views.recovery import recovery_context

CONTROL_REFUSED = gettext_lazy("You need the 'cancel, terminate and retry runs' permission.")


@staff_required
def run_list(request):
    form = RunFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "taskcenter/run_list.html", _history_context(request, form, page=None), status=400)
    filters = _filters(form)
    data = form.cleaned_data if form.is_bound else {}
    page = runs_page(filters, before=data.get("before"), after=data.get("after"))
    return render(request, "taskcenter/run_list.html", _history_context(request, form, page=page))


def _filters(form) -> RunFilters:
    data = form.cleaned_data if form.is_bound else {}
    return RunFilters(
        state=data.get("state") or "",
        task_name=data.get("task_name") or "",
        queue=data.get("queue") or "",
        worker=data.get("worker") or "",
        periodic_task_name=data.get("schedule") or "",
        launched_by=data.get("launched_by") or "",
        source=data.get("source") or "",
        task_id=(data.get("task_id") or "").strip(),
        text=data.get("text") or "",
        sort=data.get("sort") or "",
        created_from=data.get("created_from"),
        created_to=data.get("created_to"),
    )


def _history_context(request, form, *, page):
    params = form.data.copy() if form.is_bound else {}
    for key in ("before", "after"):
        params.pop(key, None)
    return {
        "form": form,
        "page": page,
        "filter_query": params.urlencode() if params else "",
        "task_names": [entry.name for entry in catalogue.all_entries()],
        "queue_names": settings.TASKCENTER_QUEUES,
        "saved_filters": saved_filters_for(user=request.user),
        **user_abilities(request.user),
    }


@staff_required
@require_POST
def saved_filter_create(request):
    """Save History's current filter under a name, for this user."""
    try:
        saved = saved_filter_save(
            user=request.user, name=request.POST.get("name", ""), query=request.POST.get("query", "")
        )
    except InvalidInput as error:
        messages.error(request, str(error))
        return redirect(reverse("taskcenter:run_list") + "?" + (request.POST.get("query", "")[:2000]))
    messages.success(request, _("Saved the filter %(name)s.") % {"name": saved.name})
    return redirect(reverse("taskcenter:run_list") + "?" + saved.query)


@staff_required
@require_POST
def saved_filter_remove(request, pk: int):
    """Delete one of this user's saved filters."""
    if not saved_filter_delete(user=request.user, pk=pk):
        raise Http404(_("You have no saved filter with this id."))
    messages.success(request, _("Deleted the saved filter."))
    return redirect("taskcenter:run_list")


@staff_required
def run_detail(request, task_id):
    run = run_by_task_id(task_id)
    if run is None:
        raise Http404(_("No run with task id %(id)s.") % {"id": repr(task_id)})
    # Where a waiting run is: the scheduled set, or its place in the queue (bounded reads, fast when down).
    place = run_waiting_place(task_id=run.task_id, queue=run.queue) if run.state in ("PENDING", "RETRY") else None
    return render(
        request,
        "taskcenter/run_detail.html",
        {
            "run": run,
            "result": run.result_row,
            "reruns": run.reruns.select_related("task_result").order_by("-id")[:50],
            "audit_entries": audit_for_task(run.task_id),
            "graph": workflow_graph(run.workflow) if run.workflow_id else None,
            "batch": batch_progress(run.batch) if run.batch_id else None,
            "retry_status": run_retry_status(run),
            "stuck": run.state == "STARTED" and any(r.task_id == run.task_id for r in stuck_runs(limit=1000)),
            "waiting_until": place.due if place else None,
            "place": place,
            "story": run_story(run=run),
            **recovery_context(request, run),
            **user_abilities(request.user),
        },
    )


def _run_or_404(task_id) -> Run:
    run = run_by_task_id(task_id)
    if run is None:
        raise Http404(_("No run with task id %(id)s.") % {"id": repr(task_id)})
    return run


@allowed(permissions.can_control, CONTROL_REFUSED)
@require_http_methods(["GET", "POST"])
def run_cancel(request, task_id):
    """Confirm, then cancel a waiting run or terminate a started one."""
    run = _run_or_404(task_id)
    terminate = run.state == "STARTED"
    if request.method == "POST":
        action = control.run_terminate if terminate else control.run_cancel
        done = _("Terminated %(task)s [%(id)s].") if terminate else _("Cancelled %(task)s [%(id)s].")
        return perform_action(
            request,
            lambda: action(run=run, actor=request.user),
            page=lambda request, status: render(
                request, "taskcenter/run_cancel.html", {"run": run, "terminate": terminate}, status=status
            ),
            page_url=reverse("taskcenter:run_detail", args=[run.task_id]),
            success=done % {"task": run.task_name, "id": run.task_id},
        )
    return render(
        request,
        "taskcenter/run_cancel.html",
        {"run": run, "terminate": terminate, "signal": settings.TASKCENTER_TERMINATE_SIGNAL},
    )


@allowed(permissions.can_control, CONTROL_REFUSED)
@require_http_methods(["GET", "POST"])
def run_retry(request, task_id):
    """Re-run a finished run with its arguments, edited or not."""
    run = _run_or_404(task_id)
    if not permissions.can_launch(request.user, run.task_name):
        raise PermissionDenied(_("You may not launch %(task)s.") % {"task": run.task_name})
    form = RetryForm(request.POST or None, initial={"args": run.args, "kwargs": run.kwargs})
    new_run, status = submit(
        request,
        form,
        lambda data: control.run_retry(
            run=run, actor=request.user, args=data["args"], kwargs=data["kwargs"], source=RunSource.WEB
        ),
    )
    if new_run is not None:
        messages.success(
            request, _("Re-ran %(task)s; the new run is linked to the original.") % {"task": run.task_name}
        )
        return redirect("taskcenter:run_detail", task_id=new_run.task_id)
    entry = catalogue.get_entry(run.task_name)
    context = {"run": run, "form": form, "secret": entry.secret if entry else (), "mask": MASK}
    return render(request, "taskcenter/run_retry.html", context, status=status)


@allowed(permissions.can_control, CONTROL_REFUSED)
@require_POST
def bulk_retry(request):
    """Re-run the selected runs, or every finished run matching the history filter.

    The first POST shows a confirmation with the count; the second, with
    ``confirm``, launches them.
    """
    form = BulkRetryForm(request.POST)
    if not form.is_valid():
        problems = "; ".join(e for errs in form.errors.values() for e in errs)
        messages.error(request, _("Nothing to retry: %(problems)s") % {"problems": problems})
        return redirect("taskcenter:run_list")
    filter_form = RunFilterForm(form.filter_data())
    if not filter_form.is_valid():
        messages.error(request, _("The history filter is not valid."))
        return redirect("taskcenter:run_list")
    limit = settings.TASKCENTER_BULK_RETRY_LIMIT
    runs = runs_for_retry(task_ids=form.cleaned_data["task_ids"], filters=_filters(filter_form), limit=limit + 1)
    too_many = len(runs) > limit
    if not form.cleaned_data["confirm"] or too_many:
        return render(
            request,
            "taskcenter/bulk_retry_confirm.html",
            {"runs": runs[:limit], "count": len(runs[:limit]), "too_many": too_many, "limit": limit, "form": form},
            status=400 if too_many else 200,
        )
    allowed_runs = [r for r in runs if permissions.can_launch(request.user, r.task_name)]
    result = control.runs_retry_bulk(runs=allowed_runs, actor=request.user, source=RunSource.WEB)
    refused = len(result.refused) + len(runs) - len(allowed_runs)
    report = messages.success if result.launched or not refused else messages.error
    report(
        request, _("Re-ran %(done)d run(s); %(refused)d refused.") % {"done": len(result.launched), "refused": refused}
    )
    for run, reason in result.refused[:10]:
        messages.warning(request, f"{run.task_id}: {reason}")
    return redirect(reverse("taskcenter:run_list") + "?" + filter_query_string(form.filter_data()))


def filter_query_string(data: dict) -> str:
    return urlencode({k: v for k, v in data.items() if v})


@staff_required
def batch_detail(request, batch_id):
    batch = get_object_or_404(Batch, pk=batch_id)
    return render(request, "taskcenter/batch_detail.html", {"batch": batch, "progress": batch_progress(batch)})


@staff_required
def run_progress(request):
    """State and progress of up to 100 runs, as JSON, for pages that update themselves."""
    ids = [i for i in request.GET.get("ids", "").split(",") if i][:100]
    runs = {run.task_id: run for run in runs_by_task_ids(ids)}
    try:
        progress = progress_of(list(runs))
    except BROKER_ERRORS:
        progress = {}
    return JsonResponse(
        {
            task_id: {
                "state": run.state,
                "finished": run.is_finished,
                "progress": progress[task_id].as_dict() if task_id in progress else None,
            }
            for task_id, run in runs.items()
        }
    )
