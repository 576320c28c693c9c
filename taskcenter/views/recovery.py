"""The recovery page (strategies per task type, runs needing attention) and the strategy actions on runs."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from taskcenter import permissions
from taskcenter.forms.recovery import BulkRecoverForm, RecoverForm, RecoveryPolicyForm
from taskcenter.models import RunSource
from taskcenter.selectors.recovery import runs_for_recovery, runs_needing_attention, task_strategies
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services import recovery
from taskcenter.services.errors import ServiceError
from taskcenter.views.common import allowed, staff_required

RECOVER_REFUSED = gettext_lazy(
    "You need the 'cancel, terminate and retry runs' permission and the task's launch permission."
)
POLICY_REFUSED = gettext_lazy("You need the 'set the recovery strategy of task types' permission.")


def _page(request, *, policy_form=None, bulk_form=None, status=200):
    return render(
        request,
        "taskcenter/recovery.html",
        {
            "strategies": task_strategies(),
            "attention": runs_needing_attention(),
            "policy_form": policy_form or RecoveryPolicyForm(),
            "bulk_form": bulk_form or BulkRecoverForm(),
            "can_manage_recovery": permissions.can_manage_recovery(request.user),
            "can_control": permissions.can_control(request.user),
        },
        status=status,
    )


@staff_required
def recovery_page(request):
    return _page(request)


@allowed(permissions.can_manage_recovery, POLICY_REFUSED)
@require_POST
def recovery_policy(request):
    form = RecoveryPolicyForm(request.POST)
    if not form.is_valid():
        return _page(request, policy_form=form, status=400)
    data = form.cleaned_data
    try:
        recovery.recovery_policy_set(task_name=data["task_name"], strategy=data["strategy"], actor=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return _page(request, policy_form=form, status=exc.status_code)
    messages.success(
        request,
        _("Recovery strategy of %(task)s: %(strategy)s.")
        % {"task": data["task_name"], "strategy": data["strategy"] or _("default in code")},
    )
    return redirect("taskcenter:recovery")


@allowed(permissions.can_control, RECOVER_REFUSED)
@require_POST
def run_recover(request, task_id):
    run = run_by_task_id(task_id)
    if run is None:
        raise Http404(_("No run with task id %(id)s.") % {"id": repr(task_id)})
    if not permissions.can_recover(request.user, run.task_name):
        raise PermissionDenied(RECOVER_REFUSED)
    url = reverse("taskcenter:run_detail", args=[run.task_id])
    form = RecoverForm(request.POST)
    if not form.is_valid():
        messages.error(request, _("Choose one of the strategies."))
        return redirect(url)
    strategy = form.cleaned_data["strategy"]
    try:
        action = recovery.run_recover(run=run, strategy=strategy, actor=request.user, source=RunSource.WEB)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return redirect(url)
    messages.success(
        request, _("%(strategy)s applied. %(message)s") % {"strategy": strategy, "message": action.message}
    )
    if action.new_task_id:
        return redirect("taskcenter:run_detail", action.new_task_id)
    return redirect(url)


@allowed(permissions.can_control, RECOVER_REFUSED)
@require_POST
def recovery_bulk(request):
    form = BulkRecoverForm(request.POST)
    if not form.is_valid():
        return _page(request, bulk_form=form, status=400)
    runs = runs_for_recovery(form.cleaned_data["task_ids"])
    forbidden = [run for run in runs if not permissions.can_recover(request.user, run.task_name)]
    if forbidden:
        raise PermissionDenied(f"{RECOVER_REFUSED} ({forbidden[0].task_name})")
    result = recovery.runs_recover_bulk(
        runs=runs, strategy=form.cleaned_data["strategy"], actor=request.user, source=RunSource.WEB
    )
    if result.done:
        messages.success(
            request,
            _("%(strategy)s applied to %(count)d run(s).")
            % {"strategy": form.cleaned_data["strategy"], "count": len(result.done)},
        )
    for run, reason in result.refused:
        messages.error(request, f"{run.task_id}: {reason}")
    unknown = len(set(form.cleaned_data["task_ids"])) - len(runs)
    if unknown:
        messages.error(request, _("%(count)d selected run(s) not found.") % {"count": unknown})
    return redirect("taskcenter:recovery")


def recovery_context(request, run) -> dict:
    """What the run page shows about recovery: checkpoints, strategies applied, the form."""
    from taskcenter.selectors.recovery import checkpoints_for_run, recovered_from, recovery_actions_for_run
    from taskcenter.strategies import Strategy

    return {
        "checkpoints": checkpoints_for_run(run.task_id),
        "recovery_actions": recovery_actions_for_run(run.task_id),
        "recovered_from": recovered_from(run.task_id),
        "can_recover": permissions.can_recover(request.user, run.task_name) and recovery.run_is_recoverable(run),
        "strategy_choices": Strategy.choices,
    }
