"""The form of the API tokens page."""

from django import forms

from taskcenter.safe_input import SafeDateTimeField


class TokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What uses it, e.g. 'deploy script'.")
    expires_at = SafeDateTimeField(
        required=False,
        label="Expires",
        help_text="Optional; empty: never.",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
