"""The form of the API tokens page."""

from django import forms
from django.utils.translation import gettext_lazy as _

from taskcenter.safe_input import SafeDateTimeField


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, label=_("Name"), help_text=_("What uses it, e.g. 'deploy script'."))
    expires_at = SafeDateTimeField(
        required=False,
        label=_("Expires"),
        help_text=_("Optional; empty: never."),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
