"""Forms of recovery: apply a strategy to one run or to selected runs; set a task type's strategy."""

from django import forms
from django.utils.translation import gettext_lazy as _

from taskcenter import catalogue
from taskcenter.strategies import Strategy

#: Most runs one bulk action may name.
BULK_LIMIT = 500


class RecoverForm(forms.Form):
    """The strategy to apply to one run."""

    strategy = forms.ChoiceField(choices=Strategy.choices, label=_("Strategy"))


class BulkRecoverForm(forms.Form):
    """A strategy and the selected runs (task ids, one per checkbox)."""

    strategy = forms.ChoiceField(choices=Strategy.choices, label=_("Strategy"))
    task_ids = forms.MultipleChoiceField(choices=[], required=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Any id is a valid choice here; unknown ones are reported by the view.
        values = self.data.getlist("task_ids") if hasattr(self.data, "getlist") else []
        self.fields["task_ids"].choices = [(v, v) for v in values if isinstance(v, str) and 0 < len(v) <= 255]

    def clean_task_ids(self):
        ids = self.cleaned_data["task_ids"]
        if len(ids) > BULK_LIMIT:
            raise forms.ValidationError(_("Select at most %(limit)d runs.") % {"limit": BULK_LIMIT})
        return ids


class RecoveryPolicyForm(forms.Form):
    """A task type's strategy; empty: the default declared in code."""

    task_name = forms.ChoiceField(choices=[], label=_("Task name"))
    strategy = forms.ChoiceField(
        choices=[("", _("Default in code")), *Strategy.choices], required=False, label=_("Strategy")
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task_name"].choices = [(e.name, e.name) for e in catalogue.all_entries()]
