"""Forms of the notifications pages; the service checks URLs, addresses and secrets."""

from django import forms

from taskcenter.models import NotificationChannel, NotificationDelivery


class ChannelForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(choices=NotificationChannel.Kind.choices)
    url = forms.CharField(
        max_length=500, required=False, label="URL", help_text="Webhook: the http(s) URL the JSON is POSTed to."
    )
    addresses = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="E-mail: one address per line.",
    )
    secret = forms.CharField(
        max_length=200,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhook: the HMAC-SHA256 key (16 characters or more). It is never shown again; "
        "leave blank to keep the saved one.",
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def clean(self):
        data = super().clean()
        for key in ("name", "url", "addresses", "secret"):
            if "\x00" in (data.get(key) or ""):
                self.add_error(key, "Null characters are not allowed.")
        return data


class RuleForm(forms.Form):
    alert_name = forms.CharField(
        max_length=100,
        label="Alert",
        help_text="An alert name of the Alerts page (new alerts too), or * for every alert.",
        widget=forms.TextInput(attrs={"list": "alert-names"}),
    )
    channel = forms.ModelChoiceField(queryset=NotificationChannel.objects.all())
    notify_on_resolve = forms.BooleanField(required=False, initial=True, label="Also notify when it resolves")
    enabled = forms.BooleanField(required=False, initial=True)


class DeliveryFilterForm(forms.Form):
    channel = forms.ModelChoiceField(queryset=NotificationChannel.objects.all(), required=False)
    status = forms.ChoiceField(choices=[("", "any"), *NotificationDelivery.Status.choices], required=False)
    alert = forms.CharField(max_length=100, required=False)
