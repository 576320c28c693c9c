"""Forms of the Failures pages: the group list's filters and a group's run pages."""

from django import forms
from django.utils.translation import gettext_lazy as _

from taskcenter.models import FailureGroup
from taskcenter.safe_input import INT_MAX, SafeDateTimeField


class FailureFilterForm(forms.Form):
    """Filters of the failure group list; invalid values are reported, not ignored."""

    task_name = forms.CharField(required=False, max_length=255, label=_("Task"))
    exception_type = forms.CharField(required=False, max_length=255, label=_("Exception type"))
    status = forms.ChoiceField(
        choices=[("", _("Any status"))] + list(FailureGroup.Status.choices), required=False, label=_("Status")
    )
    seen_from = SafeDateTimeField(
        required=False, label=_("Last seen from"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    seen_to = SafeDateTimeField(
        required=False, label=_("Last seen to"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )

    def clean(self):
        cleaned = super().clean()
        start, end = cleaned.get("seen_from"), cleaned.get("seen_to")
        if start and end and start >= end:
            self.add_error("seen_to", _("Must be after the start of the range."))
        return cleaned


class GroupRunsForm(forms.Form):
    """Keyset cursors of a group's runs."""

    before = forms.IntegerField(required=False, min_value=1, max_value=INT_MAX)
    after = forms.IntegerField(required=False, min_value=0, max_value=INT_MAX)


class GroupStatusForm(forms.Form):
    status = forms.ChoiceField(choices=FailureGroup.Status.choices, label=_("Status"))
