"""Forms of the notifications pages; the service checks URLs, addresses and secrets."""

from django import forms
from django.utils.translation import gettext_lazy as _

from taskcenter.models import NotificationChannel, NotificationDelivery


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100, label=_("Name"))
    kind = forms.ChoiceField(choices=NotificationChannel.Kind.choices, label=_("Kind"))
    url = forms.CharField(
        max_length=500, required=False, label=_("URL"), help_text=_("Webhook: the http(s) URL the JSON is POSTed to.")
    )
    addresses = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        label=_("Addresses"),
        help_text=_("E-mail: one address per line."),
    )
    secret = forms.CharField(
        max_length=200,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        label=_("Secret"),
        help_text=_(
            "Webhook: the HMAC-SHA256 key (16 characters or more). It is never shown again; "
            "leave blank to keep the saved one."
        ),
    )
    enabled = forms.BooleanField(required=False, initial=True, label=_("Enabled"))

    def clean(self):
        data = super().clean()
        for key in ("name", "url", "addresses", "secret"):
            if "\x00" in (data.get(key) or ""):
                self.add_error(key, _("Null characters are not allowed."))
        return data


class RuleForm(forms.Form):
    alert_name = forms.CharField(
        max_length=100,
        label=_("Alert"),
        help_text=_("An alert name of the Alerts page (new alerts too), or * for every alert."),
        widget=forms.TextInput(attrs={"list": "alert-names"}),
    )
    channel = forms.ModelChoiceField(queryset=NotificationChannel.objects.all(), label=_("Channel"))
    notify_on_resolve = forms.BooleanField(required=False, initial=True, label=_("Also notify when it resolves"))
    enabled = forms.BooleanField(required=False, initial=True, label=_("Enabled"))


class DeliveryFilterForm(forms.Form):
    channel = forms.ModelChoiceField(queryset=NotificationChannel.objects.all(), required=False, label=_("Channel"))
    status = forms.ChoiceField(
        choices=[("", _("any")), *NotificationDelivery.Status.choices], required=False, label=_("Status")
    )
    alert = forms.CharField(max_length=100, required=False, label=_("Alert"))
