"""The audit trail page."""

from django import forms
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _

from taskcenter.models import AuditEntry
from taskcenter.safe_input import INT_MAX, SafeDateTimeField
from taskcenter.selectors.audit import AuditFilters, audit_page
from taskcenter.views.common import staff_required


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        choices=[("", _("Any action")), *AuditEntry.Action.choices], required=False, label=_("Action")
    )
    outcome = forms.ChoiceField(
        choices=[("", _("Any outcome")), *AuditEntry.Outcome.choices], required=False, label=_("Outcome")
    )
    actor = forms.CharField(required=False, max_length=150, label=_("Actor"))
    target = forms.CharField(required=False, max_length=255, label=_("Target"))
    task_id = forms.CharField(required=False, max_length=255, label=_("Task id"))
    # Dates without a UTC equivalent (year 1 east of UTC) are refused, not an OverflowError.
    at_from = SafeDateTimeField(
        required=False, label=_("At from"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    at_to = SafeDateTimeField(
        required=False, label=_("At to"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    before = forms.IntegerField(required=False, min_value=1, max_value=INT_MAX, widget=forms.HiddenInput)


@staff_required
def audit_list(request):
    form = AuditFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "taskcenter/audit_list.html", {"form": form, "entries": []}, status=400)
    data = form.cleaned_data if form.is_bound else {}
    filters = AuditFilters(
        action=data.get("action") or "",
        outcome=data.get("outcome") or "",
        actor=data.get("actor") or "",
        target=data.get("target") or "",
        task_id=data.get("task_id") or "",
        at_from=data.get("at_from"),
        at_to=data.get("at_to"),
    )
    entries, older = audit_page(filters, before=data.get("before"))
    params = form.data.copy() if form.is_bound else None
    if params is not None:
        params.pop("before", None)
    return render(
        request,
        "taskcenter/audit_list.html",
        {"form": form, "entries": entries, "older": older, "filter_query": params.urlencode() if params else ""},
    )
