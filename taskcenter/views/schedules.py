"""Schedules: periodic tasks with their health, next runs and history; create, edit, act."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseBadRequest
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST
from django_celery_beat.models import PeriodicTask

from taskcenter import catalogue, permissions
from taskcenter.forms.schedules import ScheduleForm
from taskcenter.models import AuditEntry
from taskcenter.schedules.timing import AMBIGUOUS, DST_DAY, SHIFTED
from taskcenter.selectors.runs import RunFilters, runs_page
from taskcenter.selectors.schedules import (
    PAGE_SIZE,
    periodic_tasks,
    schedule_describe,
    schedule_error,
    schedule_last_run,
    schedule_next_runs,
    schedule_run_count,
    schedule_timezone,
    schedules_overview,
)
from taskcenter.services import schedules as service
from taskcenter.views.common import staff_required, submit

DST_NOTES = {
    SHIFTED: gettext_lazy("clocks jump forward: runs right after the jump"),
    AMBIGUOUS: gettext_lazy("clocks fall back: runs at the first of the two"),
    DST_DAY: gettext_lazy("on a day the clocks change"),
}


def _beat_status():
    try:
        from taskcenter.selectors.beat import beat_status
    except ImportError:  # the scheduler module is optional until installed
        return None
    return beat_status()


@staff_required
def schedule_list(request):
    search = request.GET.get("q", "").strip()
    show = request.GET.get("show", "")
    enabled = {"enabled": True, "disabled": False}.get(show)
    after = request.GET.get("after", "")
    rows = schedules_overview(search=search, enabled=enabled, after=after, limit=PAGE_SIZE + 1)
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return render(
        request,
        "taskcenter/schedule_list.html",
        {
            "rows": rows,
            "search": search,
            "show": show if enabled is not None else "",
            "after": after,
            "next_after": rows[-1].task.name if more else "",
            "beat": _beat_status(),
            "can_add": permissions.can_add_schedule(request.user),
            "can_change": permissions.can_change_schedule(request.user),
            "entries": [e for e in catalogue.all_entries() if permissions.can_add_schedule(request.user, e.name)],
        },
    )


def _task_or_404(pk) -> PeriodicTask:
    if _int(pk) is None:
        raise Http404(_("No such schedule."))
    return get_object_or_404(periodic_tasks(), pk=pk)


@staff_required
def schedule_detail(request, pk):
    task = _task_or_404(pk)
    page = runs_page(RunFilters(periodic_task_name=task.name), before=_int(request.GET.get("before")))
    next_runs = [(fire, DST_NOTES.get(fire.note, "")) for fire in schedule_next_runs(task, count=10)]
    skips = AuditEntry.objects.filter(action=AuditEntry.Action.SCHEDULE_SKIP, target=task.name).order_by("-id")[:20]
    return render(
        request,
        "taskcenter/schedule_detail.html",
        {
            "task": task,
            "spec": service.ScheduleSpec.from_periodic_task(task).masked(),
            "description": schedule_describe(task),
            "timezone": schedule_timezone(task),
            "next_runs": next_runs,
            "last_run": schedule_last_run(task),
            "runs_7d": schedule_run_count(task),
            "error": schedule_error(task),
            "page": page,
            "skips": skips,
            "catalogued": catalogue.get_entry(task.task) is not None,
            "can_change": permissions.can_change_schedule(request.user, task.task),
            "can_add": permissions.can_add_schedule(request.user, task.task),
            "can_delete": permissions.can_delete_schedule(request.user),
            "can_run": permissions.can_launch(request.user, task.task),
        },
    )


#: Largest primary key or cursor the database holds (64-bit); larger numbers are refused with a 400.
MAX_ID = 2**63 - 1


def _int(value):
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if 0 < number <= MAX_ID else None


@staff_required
@require_http_methods(["GET", "POST"])
def schedule_new(request):
    task_name = request.GET.get("task") or request.POST.get("task") or ""
    entry = catalogue.get_entry(task_name)
    if entry is None:
        if task_name:
            raise Http404(
                _("No launchable task is named %(name)s; only catalogued tasks can be scheduled.")
                % {"name": repr(task_name)}
            )
        return redirect("taskcenter:schedule_list")
    if not permissions.can_add_schedule(request.user, entry.name):
        raise PermissionDenied(_("You may not schedule %(task)s.") % {"task": entry.name})
    return _schedule_form(request, entry=entry, existing=None)


@staff_required
@require_http_methods(["GET", "POST"])
def schedule_edit(request, pk):
    task = _task_or_404(pk)
    entry = catalogue.get_entry(task.task)
    if entry is None:
        raise Http404(
            _("%(task)s is not a catalogued task: this schedule cannot be edited, only deleted.") % {"task": task.task}
        )
    if not permissions.can_change_schedule(request.user, task.task):
        raise PermissionDenied(_("You may not change this schedule."))
    return _schedule_form(request, entry=entry, existing=task)


def _schedule_form(request, *, entry, existing):
    spec = service.ScheduleSpec.from_periodic_task(existing).masked() if existing else None
    form = ScheduleForm(request.POST or None, entry=entry, spec=spec, initial={"mode": request.GET.get("mode")})
    task, status = submit(
        request, form, lambda data: service.schedule_save(spec=form.to_spec(), actor=request.user, existing=existing)
    )
    if task is not None:
        messages.success(
            request, _("Saved schedule %(name)s: %(when)s.") % {"name": task.name, "when": schedule_describe(task)}
        )
        return redirect("taskcenter:schedule_detail", pk=task.pk)
    context = {"form": form, "entry": entry, "existing": existing}
    return render(request, "taskcenter/schedule_form.html", context, status=status)


@staff_required
@require_POST
def schedule_action(request):
    """Run now, enable, disable, duplicate or delete one or several schedules."""
    action = request.POST.get("action", "")
    raw_ids = request.POST.getlist("ids")
    ids = [_int(pk) for pk in raw_ids]
    if None in ids:
        bad = next(pk for pk, number in zip(raw_ids, ids, strict=True) if number is None)
        return HttpResponseBadRequest(
            _("Not a schedule id: %(id)s (ids are whole numbers from 1 to %(max)s).")
            % {"id": repr(bad[:40]), "max": MAX_ID}
        )
    tasks = list(PeriodicTask.objects.filter(pk__in=ids))
    if action not in service.SCHEDULE_ACTIONS or not tasks:
        messages.error(request, _("Choose an action and at least one schedule."))
        return redirect("taskcenter:schedule_list")
    refused = [t.name for t in tasks if not permissions.can_act_on_schedule(request.user, action, t.task)]
    if refused:
        raise PermissionDenied(_refusal(action) % {"names": ", ".join(refused)})
    if action == "delete" and request.POST.get("confirm") != "on":
        # A page, not a script's dialog, asks first: deleting must not need JavaScript to be safe.
        return render(request, "taskcenter/schedule_delete_confirm.html", {"tasks": tasks})
    done, failed = service.schedules_act(action=action, periodic_tasks=tasks, actor=request.user)
    for line in done:
        messages.success(request, line)
    for line in failed:
        messages.error(request, line)
    if len(tasks) == 1 and action != "delete":
        return redirect("taskcenter:schedule_detail", pk=tasks[0].pk)
    return redirect("taskcenter:schedule_list")


def _refusal(action: str) -> str:
    """The refusal of ``action`` on schedules, with the refused schedules' names as ``names``."""
    return {
        "run_now": _("You may not run now %(names)s."),
        "enable": _("You may not enable %(names)s."),
        "disable": _("You may not disable %(names)s."),
        "duplicate": _("You may not duplicate %(names)s."),
        "delete": _("You may not delete %(names)s."),
    }.get(action, _("You may not change %(names)s."))
