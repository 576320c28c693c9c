"""The Failures pages: failure groups, one group's runs and sample, and the actions on a whole group."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from taskcenter import catalogue, permissions
from taskcenter.forms.failures import FailureFilterForm, GroupRunsForm, GroupStatusForm
from taskcenter.models import FailureGroup, RunSource
from taskcenter.selectors.failures import (
    GROUP_LIST_LIMIT,
    FailureFilters,
    failure_group_by_fingerprint,
    failure_group_runs_page,
    failure_group_runs_to_retry,
    failure_group_runs_without_deadletter,
    failure_groups_list,
)
from taskcenter.services import failures
from taskcenter.strategies import Strategy
from taskcenter.views.common import allowed, staff_required, user_abilities
from taskcenter.views.deadletters import MANAGE_REFUSED
from taskcenter.views.recovery import RECOVER_REFUSED
from taskcenter.views.runs import CONTROL_REFUSED


@staff_required
def failure_list(request):
    form = FailureFilterForm(request.GET or None)
    context = {
        "form": form,
        "groups": None,
        "limit": GROUP_LIST_LIMIT,
        "task_names": [entry.name for entry in catalogue.all_entries()],
    }
    if form.is_bound and not form.is_valid():
        return render(request, "taskcenter/failure_list.html", context, status=400)
    data = form.cleaned_data if form.is_bound else {}
    filters = FailureFilters(
        task_name=data.get("task_name") or "",
        exception_type=data.get("exception_type") or "",
        status=data.get("status") or "",
        seen_from=data.get("seen_from"),
        seen_to=data.get("seen_to"),
    )
    context["groups"] = failure_groups_list(filters)
    return render(request, "taskcenter/failure_list.html", context)


def _group_or_404(fingerprint: str) -> FailureGroup:
    group = failure_group_by_fingerprint(fingerprint)
    if group is None:
        raise Http404(_("No failure group %(id)s.") % {"id": repr(fingerprint)})
    return group


@staff_required
def failure_detail(request, fingerprint):
    group = _group_or_404(fingerprint)
    cursors = GroupRunsForm(request.GET)
    if not cursors.is_valid():
        return render(
            request, "taskcenter/failure_detail.html", {"group": group, "page": None, "errors": cursors.errors},
            status=400,
        )  # fmt: skip
    page = failure_group_runs_page(group, before=cursors.cleaned_data["before"], after=cursors.cleaned_data["after"])
    context = {
        "group": group,
        "page": page,
        "statuses": FailureGroup.Status.choices,
        "can_retry": permissions.can_control(request.user) and permissions.can_launch(request.user, group.task_name),
        "can_recover": permissions.can_recover(request.user, group.task_name),
        "can_manage_deadletters": permissions.can_manage_deadletters(request.user),
        "strategies": Strategy.choices,
        **user_abilities(request.user),
    }
    return render(request, "taskcenter/failure_detail.html", context)


@allowed(permissions.can_control, CONTROL_REFUSED)
@require_POST
def failure_retry(request, fingerprint):
    """Re-run every failed run of the group not re-run yet: the first POST shows the count, ``confirm`` launches."""
    group = _group_or_404(fingerprint)
    if not permissions.can_launch(request.user, group.task_name):
        raise PermissionDenied(_("You may not launch %(task)s.") % {"task": group.task_name})
    limit = settings.TASKCENTER_BULK_RETRY_LIMIT
    runs = failure_group_runs_to_retry(group, limit=limit + 1)
    too_many = len(runs) > limit
    if request.POST.get("confirm") != "on" or too_many:
        return render(
            request,
            "taskcenter/failure_retry_confirm.html",
            {"group": group, "runs": runs[:limit], "count": len(runs[:limit]), "too_many": too_many, "limit": limit},
            status=400 if too_many else 200,
        )
    result = failures.failure_group_retry(group=group, runs=runs, actor=request.user, source=RunSource.WEB)
    report = messages.success if result.launched or not result.refused else messages.error
    report(
        request,
        _("Re-ran %(done)d run(s) of this group; %(refused)d refused.")
        % {"done": len(result.launched), "refused": len(result.refused)},
    )
    for run, reason in result.refused[:10]:
        messages.warning(request, f"{run.task_id}: {reason}")
    return redirect("taskcenter:failure_detail", fingerprint=group.fingerprint)


@allowed(permissions.can_control, CONTROL_REFUSED)
@require_POST
def failure_status(request, fingerprint):
    """Mark the group resolved, ignored or open again."""
    group = _group_or_404(fingerprint)
    form = GroupStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose open, resolved or ignored."))
        return redirect("taskcenter:failure_detail", fingerprint=group.fingerprint)
    failures.failure_group_set_status(group=group, status=form.cleaned_data["status"], actor=request.user)
    messages.success(request, _("Failure group marked %(status)s.") % {"status": group.get_status_display().lower()})
    return redirect("taskcenter:failure_detail", fingerprint=group.fingerprint)


def _confirm(request, group, *, runs, limit, action: str, strategy: str = ""):
    """The confirmation page of a group action (400 when more runs than ``limit`` would be touched)."""
    too_many = len(runs) > limit
    context = {
        "group": group,
        "runs": runs[:limit],
        "count": len(runs[:limit]),
        "too_many": too_many,
        "limit": limit,
        "action": action,
        "strategy": strategy,
    }
    return render(request, "taskcenter/failure_action_confirm.html", context, status=400 if too_many else 200)


@allowed(permissions.can_control, RECOVER_REFUSED)
@require_POST
def failure_recover(request, fingerprint):
    """Apply a recovery strategy to every failed run of the group not re-run yet; ``confirm`` applies it."""
    group = _group_or_404(fingerprint)
    if not permissions.can_recover(request.user, group.task_name):
        raise PermissionDenied(RECOVER_REFUSED)
    strategy = request.POST.get("strategy", "")
    if strategy not in Strategy.values:
        messages.error(request, _("Choose one of the strategies."))
        return redirect("taskcenter:failure_detail", fingerprint=group.fingerprint)
    limit = settings.TASKCENTER_BULK_RETRY_LIMIT
    runs = failure_group_runs_to_retry(group, limit=limit + 1)
    if request.POST.get("confirm") != "on" or len(runs) > limit:
        return _confirm(request, group, runs=runs, limit=limit, action="recover", strategy=strategy)
    result = failures.failure_group_recover(
        group=group, runs=runs, strategy=strategy, actor=request.user, source=RunSource.WEB
    )
    report = messages.success if result.done or not result.refused else messages.error
    report(
        request,
        _("%(strategy)s applied to %(done)d run(s) of this group; %(refused)d refused.")
        % {"strategy": strategy, "done": len(result.done), "refused": len(result.refused)},
    )
    for run, reason in result.refused[:10]:
        messages.warning(request, f"{run.task_id}: {reason}")
    return redirect("taskcenter:failure_detail", fingerprint=group.fingerprint)


@allowed(permissions.can_manage_deadletters, MANAGE_REFUSED)
@require_POST
def failure_deadletter(request, fingerprint):
    """Give every failed run of the group without a dead letter one; the first POST shows the count."""
    group = _group_or_404(fingerprint)
    limit = settings.TASKCENTER_BULK_RETRY_LIMIT
    runs = failure_group_runs_without_deadletter(group, limit=limit + 1)
    if request.POST.get("confirm") != "on" or len(runs) > limit:
        return _confirm(request, group, runs=runs, limit=limit, action="deadletter")
    recorded = failures.failure_group_deadletter(group=group, runs=runs, actor=request.user)
    messages.success(request, _("Dead-lettered %(count)d run(s) of this group.") % {"count": recorded})
    return redirect("taskcenter:failure_detail", fingerprint=group.fingerprint)
