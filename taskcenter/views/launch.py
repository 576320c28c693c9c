"""Catalogue and launch pages."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from taskcenter import catalogue
from taskcenter.forms import LaunchForm
from taskcenter.models import RunSource
from taskcenter.services.launch import BrokerUnavailable, InvalidLaunch, NotLaunchable, run_launch
from taskcenter.views.common import staff_required


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


from django.http import HttpResponse  # noqa: E402


@staff_required
def _later(request, *args, **kwargs):
    return HttpResponse("Not yet available.", status=501)


batch_launch = workflow_launch = _later
