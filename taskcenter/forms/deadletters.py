"""Forms of the dead letters page: the filter, and the letters an action applies to."""

from django import forms
from django.utils.translation import gettext_lazy as _

from taskcenter.forms import JSONTextField, TimeRangePageForm
from taskcenter.models import DeadLetter
from taskcenter.selectors.deadletters import DeadLetterFilters

STATUS_CHOICES = [("open", _("Unresolved")), ("replayed", _("Replayed")), ("discarded", _("Discarded")), ("", _("All"))]


class DeadLetterFilterForm(TimeRangePageForm):
    """Filters of the dead letters page; invalid values are reported, not ignored."""

    field_order = ("task_name", "reason", "exception_type", "status", "created_from", "created_to")

    task_name = forms.CharField(required=False, max_length=255, label=_("Task"))
    reason = forms.ChoiceField(
        choices=[("", _("Any reason")), *DeadLetter.Reason.choices], required=False, label=_("Reason")
    )
    exception_type = forms.CharField(required=False, max_length=255, label=_("Exception type"))
    status = forms.ChoiceField(choices=STATUS_CHOICES, required=False, initial="open", label=_("Status"))

    def filters(self) -> DeadLetterFilters:
        data = self.cleaned_data if self.is_bound else {}
        return DeadLetterFilters(
            task_name=data.get("task_name") or "",
            reason=data.get("reason") or "",
            exception_type=data.get("exception_type") or "",
            status=data.get("status", "open") if self.is_bound and "status" in self.data else "open",
            created_from=data.get("created_from"),
            created_to=data.get("created_to"),
        )


class DeadLetterActionForm(forms.Form):
    """Replay or discard: the selected letters, or every unresolved one matching the filter."""

    action = forms.ChoiceField(choices=[("replay", _("Replay")), ("discard", _("Discard"))], label=_("Action"))
    scope = forms.ChoiceField(
        choices=[("selected", _("Selected")), ("filter", _("Every one matching the filter"))], label=_("Scope")
    )
    ids = forms.TypedMultipleChoiceField(required=False, coerce=int)
    confirm = forms.BooleanField(required=False)

    def __init__(self, data=None, **kwargs):
        super().__init__(data, **kwargs)
        ids = data.getlist("ids") if data is not None and hasattr(data, "getlist") else []
        self.fields["ids"].choices = [(i, i) for i in ids if i.isdigit() and len(i) < 19]

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("scope") == "selected" and not cleaned.get("ids"):
            raise forms.ValidationError(_("Select at least one dead letter."))
        return cleaned


class ReplayForm(forms.Form):
    """The arguments of a replay, prefilled with the dead letter's."""

    args = JSONTextField(
        expected_type=list, example="[1, 2]", required=False, label=_("Positional arguments (JSON list)")
    )
    kwargs = JSONTextField(
        expected_type=dict, example='{"x": 1}', required=False, label=_("Keyword arguments (JSON object)")
    )
