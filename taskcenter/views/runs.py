"""Run history and run detail pages."""

from django.conf import settings
from django.http import Http404
from django.shortcuts import render

from taskcenter import catalogue
from taskcenter.forms import RunFilterForm
from taskcenter.selectors.runs import RunFilters, run_by_task_id, runs_page
from taskcenter.views.common import staff_required


@staff_required
def run_list(request):
    form = RunFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "taskcenter/run_list.html", _history_context(form, page=None), status=400)
    data = form.cleaned_data if form.is_bound else {}
    filters = RunFilters(
        state=data.get("state") or "",
        task_name=data.get("task_name") or "",
        queue=data.get("queue") or "",
        created_from=data.get("created_from"),
        created_to=data.get("created_to"),
    )
    page = runs_page(filters, before=data.get("before"), after=data.get("after"))
    return render(request, "taskcenter/run_list.html", _history_context(form, page=page))


def _history_context(form, *, page):
    params = form.data.copy() if form.is_bound else {}
    for key in ("before", "after"):
        params.pop(key, None)
    query = params.urlencode() if params else ""
    return {
        "form": form,
        "page": page,
        "filter_query": query,
        "task_names": [entry.name for entry in catalogue.all_entries()],
        "queue_names": settings.TASKCENTER_QUEUES,
    }


@staff_required
def run_detail(request, task_id):
    run = run_by_task_id(task_id)
    if run is None:
        raise Http404(f"No run with task id {task_id!r}.")
    return render(request, "taskcenter/run_detail.html", {"run": run, "result": run.result_row})


from django.http import HttpResponse  # noqa: E402


@staff_required
def _later(request, *args, **kwargs):
    return HttpResponse("Not yet available.", status=501)


run_cancel = run_retry = bulk_retry = batch_detail = _later
