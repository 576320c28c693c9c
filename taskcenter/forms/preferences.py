"""The user's own display preferences."""

from django import forms
from django.utils.translation import gettext_lazy as _

from taskcenter.zones import zone_names, zone_or_none


class TimeZoneForm(forms.Form):
    """Choose the zone in which pages show times and read the times typed into forms."""

    timezone = forms.CharField(
        max_length=64,
        label=_("Time zone"),
        help_text=_("A name from the tz database, e.g. Asia/Shanghai or America/Chicago."),
        widget=forms.TextInput(attrs={"list": "zone-names", "autocomplete": "off", "class": "mono"}),
    )

    def clean_timezone(self) -> str:
        name = self.cleaned_data["timezone"].strip()
        if zone_or_none(name) is None:
            raise forms.ValidationError(_("Unknown time zone: choose one from the list."), code="unknown_zone")
        return name

    @staticmethod
    def names() -> tuple[str, ...]:
        return zone_names()
