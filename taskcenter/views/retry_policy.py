"""A catalogued task's retry policy page: the policy in code, the override, and the form to change it."""

from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from taskcenter import permissions
from taskcenter.forms.retry_policy import RetryPolicyForm
from taskcenter.models import AuditEntry
from taskcenter.retry_policy import RetryPolicy
from taskcenter.selectors.audit import AuditFilters, audit_page
from taskcenter.selectors.retry_policy import retry_policy_of
from taskcenter.services import retry_policy as service
from taskcenter.views.common import allowed, staff_required, submit

change_required = allowed(
    permissions.can_change_retry_policy,
    gettext_lazy("You need the 'change retry policy' permission to change retry policies."),
)


@staff_required
def retry_policy_detail(request, task_name):
    return _page(request, task_name, RetryPolicyForm())


@change_required
def retry_policy_edit(request, task_name):
    view = _policies(task_name)
    if request.method == "POST" and request.POST.get("action") == "reset":
        return _perform_reset(request, task_name)
    form = RetryPolicyForm(request.POST or None, initial=RetryPolicyForm.initial_from(view.current or RetryPolicy()))
    saved, status = submit(
        request,
        form,
        lambda data: service.retry_policy_save(task_name=task_name, policy=data["policy"], actor=request.user),
    )
    if saved is not None:
        messages.success(
            request, _("Retry policy of %(task)s saved; workers apply it from the next failure.") % {"task": task_name}
        )
        return redirect("taskcenter:retry_policy", task_name)
    return _page(request, task_name, form, status=status, editing=True)


def _perform_reset(request, task_name):
    from taskcenter.services.errors import ServiceError

    try:
        service.retry_policy_reset(task_name=task_name, actor=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
        return _page(request, task_name, RetryPolicyForm(), status=exc.status_code)
    messages.success(request, _("Retry policy of %(task)s reset to the one in its code.") % {"task": task_name})
    return redirect("taskcenter:retry_policy", task_name)


def _policies(task_name):
    view = retry_policy_of(task_name)
    if view is None:
        raise Http404(_("No catalogued task has this name."))
    return view


def _page(request, task_name, form, *, status: int = 200, editing: bool = False):
    view = _policies(task_name)
    if not editing:
        form = RetryPolicyForm(initial=RetryPolicyForm.initial_from(view.current or RetryPolicy()))
    changes = AuditFilters(action=AuditEntry.Action.RETRY_POLICY, target=task_name)
    context = {
        "task_name": task_name,
        "policies": view,
        "current": view.current.as_json() if view.current else None,
        "default": view.default.as_json() if view.default else None,
        "form": form,
        "can_change": permissions.can_change_retry_policy(request.user),
        "audit_entries": audit_page(changes, page_size=20)[0],
    }
    return render(request, "taskcenter/retry_policy.html", context, status=status)
