"""HTML pages: catalogue, launch form, run history and run detail.

Views only parse input and call services or selectors.
"""

from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from taskcenter import catalogue
from taskcenter.forms import LaunchForm, RunFilterForm
from taskcenter.models import RunSource
from taskcenter.selectors.runs import RunFilters, run_by_task_id, runs_page
from taskcenter.services.launch import BrokerUnavailable, InvalidLaunch, NotLaunchable, run_launch


def staff_required(view):
    """Require a logged-in staff user; others are sent to log in or refused (403)."""

    @login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_staff:
            raise PermissionDenied("Only staff users can use the task center.")
        return view(request, *args, **kwargs)

    return wrapper


@staff_required
def catalogue_list(request):
    return render(request, "taskcenter/catalogue.html", {"entries": catalogue.all_entries()})


@staff_required
@require_http_methods(["GET", "POST"])
def launch(request, task_name):
    entry = catalogue.get_entry(task_name)
    if entry is None:
        raise Http404(f"No launchable task is named {task_name!r}.")

    form = LaunchForm(request.POST or None, entry=entry)
    status = 200
    if request.method == "POST":
        status = 400
        if form.is_valid():
            try:
                run = run_launch(
                    task_name=entry.name,
                    args=form.cleaned_data["args"],
                    kwargs=form.cleaned_data["kwargs"],
                    queue=form.cleaned_data["queue"],
                    priority=form.cleaned_data["priority"],
                    countdown=form.cleaned_data["countdown"],
                    launched_by=request.user,
                    source=RunSource.WEB,
                )
            except InvalidLaunch as exc:
                for field, errors in exc.errors.items():
                    for error in errors:
                        form.add_error(field if field in form.fields else None, error)
            except (NotLaunchable, BrokerUnavailable) as exc:
                form.add_error(None, str(exc))
                status = exc.status_code
            else:
                messages.success(request, f"Launched {entry.name}; it waits for a worker as PENDING.")
                return redirect("taskcenter:run_detail", task_id=run.task_id)
    return render(request, "taskcenter/launch.html", {"entry": entry, "form": form}, status=status)


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
