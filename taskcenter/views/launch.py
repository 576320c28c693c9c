"""Catalogue, launch, batch launch and workflow launch pages."""

import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from taskcenter import catalogue, permissions
from taskcenter.forms import BatchLaunchForm, LaunchForm, WorkflowForm
from taskcenter.models import RunSource
from taskcenter.services.batches import batch_launch as batch_launch_service
from taskcenter.services.launch import InvalidLaunch, run_launch
from taskcenter.services.workflows import steps_from_json
from taskcenter.services.workflows import workflow_launch as workflow_launch_service
from taskcenter.views.common import allowed, staff_required, submit

LAUNCH_REFUSED = gettext_lazy("You may not launch this task.")


@staff_required
def catalogue_list(request):
    entries = [
        {"entry": entry, "can_launch": permissions.can_launch(request.user, entry.name)}
        for entry in catalogue.all_entries()
    ]
    return render(
        request,
        "taskcenter/catalogue.html",
        {"entries": entries, "can_launch_something": any(e["can_launch"] for e in entries)},
    )


def _entry_or_404(task_name):
    entry = catalogue.get_entry(task_name)
    if entry is None:
        raise Http404(_("No launchable task is named %(name)s.") % {"name": repr(task_name)})
    return entry


def _require_launch(user, task_name) -> None:
    if not permissions.can_launch(user, task_name):
        raise PermissionDenied(_("You may not launch %(task)s.") % {"task": task_name})


@staff_required
@require_http_methods(["GET", "POST"])
def launch(request, task_name):
    entry = _entry_or_404(task_name)
    _require_launch(request.user, entry.name)
    form = LaunchForm(request.POST or None, entry=entry, initial={"mode": request.GET.get("mode")})

    def launch_it(data):
        args, kwargs = form.arguments()
        try:
            return run_launch(
                task_name=entry.name,
                args=args,
                kwargs=kwargs,
                queue=data["queue"],
                priority=data["priority"],
                countdown=data["countdown"],
                eta=data["eta"],
                expires=data["expires"],
                dedup_key=data["dedup_key"],
                launched_by=request.user,
                source=RunSource.WEB,
            )
        except InvalidLaunch as exc:
            raise form.argument_refusal(exc) from None

    run, status = submit(request, form, launch_it)
    if run is not None:
        messages.success(request, _("Launched %(task)s; it waits for a worker as PENDING.") % {"task": entry.name})
        return redirect("taskcenter:run_detail", task_id=run.task_id)
    return render(request, "taskcenter/launch.html", {"entry": entry, "form": form}, status=status)


@staff_required
@require_http_methods(["GET", "POST"])
def batch_launch(request, task_name):
    entry = _entry_or_404(task_name)
    _require_launch(request.user, entry.name)
    if not entry.batch_argument:
        raise Http404(_("%(task)s does not take batches.") % {"task": entry.name})
    form = BatchLaunchForm(request.POST or None, entry=entry)
    batch, status = submit(
        request,
        form,
        lambda data: batch_launch_service(
            task_name=entry.name,
            items=data["items"],
            batch_size=data["batch_size"],
            kwargs=data["kwargs"],
            queue=data["queue"],
            priority=data["priority"],
            launched_by=request.user,
            source=RunSource.WEB,
        ),
    )
    if batch is not None:
        messages.success(request, _("Launched batch %(id)s of %(task)s.") % {"id": batch.pk, "task": entry.name})
        return redirect("taskcenter:batch_detail", batch_id=batch.pk)
    return render(request, "taskcenter/batch_launch.html", {"entry": entry, "form": form}, status=status)


@allowed(permissions.can_launch_something, LAUNCH_REFUSED)
@require_http_methods(["GET", "POST"])
def workflow_launch(request):
    form = WorkflowForm(request.POST or None)

    def launch_workflow(data):
        kind, steps, callback = steps_from_json(data["spec"])
        for name in {s.task for s in steps} | ({callback.task} if callback else set()):
            if catalogue.get_entry(name) is not None and not permissions.can_launch(request.user, name):
                raise PermissionDenied(_("You may not launch %(task)s.") % {"task": name})
        return workflow_launch_service(
            kind=kind, steps=steps, callback=callback, launched_by=request.user, source=RunSource.WEB
        )

    workflow, status = submit(request, form, launch_workflow)
    if workflow is not None:
        messages.success(
            request,
            _("Launched %(kind)s workflow %(id)s.") % {"kind": workflow.get_kind_display().lower(), "id": workflow.pk},
        )
        return redirect("taskcenter:run_detail", task_id=workflow.stages[0][0])
    example = json.dumps(
        {
            "kind": "chord",
            "steps": [{"task": "examples.add", "args": [1, 2]}, {"task": "examples.add", "args": [3, 4]}],
            "callback": {"task": "examples.sum_batch"},
        },
        indent=2,
    )
    return render(request, "taskcenter/workflow_launch.html", {"form": form, "example": example}, status=status)
