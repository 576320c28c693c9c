"""Forms for periodic tasks: the schedule inline (no schedule rows to create first)."""

from zoneinfo import available_timezones

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _
from django_celery_beat.models import SOLAR_SCHEDULES

from taskcenter.forms import TaskArgumentsMixin
from taskcenter.models import SchedulePolicy
from taskcenter.priorities import Priority
from taskcenter.services.schedules import MAX_INT, PERIODS, ScheduleSpec
from taskcenter.zones import zone_label


class ScheduleForm(TaskArgumentsMixin, forms.Form):
    """A periodic task of one catalogued task: when it runs, with which arguments and policy."""

    name = forms.CharField(max_length=200, label=_("Name"))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}), label=_("Description"))
    enabled = forms.BooleanField(required=False, initial=True, label=_("Enabled"))
    kind = forms.ChoiceField(
        choices=[
            ("crontab", _("Crontab")),
            ("interval", _("Every N units")),
            ("clocked", _("Once, at a time")),
            ("solar", _("Solar event")),
        ],
        label=_("Kind"),
        widget=forms.RadioSelect,
        initial="crontab",
    )
    cron = forms.CharField(
        required=False,
        label=_("Crontab"),
        help_text=_('minute hour day-of-month month day-of-week, e.g. "0 2 * * *" (day of week 0 = Sunday).'),
        widget=forms.TextInput(attrs={"class": "mono", "placeholder": "0 2 * * *"}),
    )
    timezone = forms.ChoiceField(required=False, label=_("Timezone"), help_text=_("Time zone of the crontab."))
    every = forms.IntegerField(required=False, min_value=1, max_value=MAX_INT, label=_("Every"))
    period = forms.ChoiceField(choices=[(p, p) for p in PERIODS], initial="minutes", required=False, label=_("Period"))
    clocked_time = forms.DateTimeField(
        required=False,
        label=_("At"),
        help_text=_("In your time zone. The schedule disables itself after this run."),  # named in __init__
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    solar_event = forms.ChoiceField(choices=[("", "---------"), *SOLAR_SCHEDULES], required=False, label=_("Event"))
    latitude = forms.FloatField(required=False, min_value=-90, max_value=90, label=_("Latitude"))
    longitude = forms.FloatField(required=False, min_value=-180, max_value=180, label=_("Longitude"))
    queue = forms.ChoiceField(choices=(), required=False, label=_("Queue"))
    priority = forms.ChoiceField(
        choices=[("", _("The task's own")), *Priority.choices()], required=False, label=_("Priority")
    )
    expire_seconds = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_INT,
        label=_("Expires after (seconds)"),
        help_text=_("A run not started by then is dropped."),
    )
    misfire = forms.ChoiceField(
        choices=SchedulePolicy.Misfire.choices,
        initial=SchedulePolicy.Misfire.RUN_ONCE,
        label=_("Missed runs"),
        help_text=_("When beat was down or the schedule disabled across due times."),
    )
    grace_seconds = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_INT,
        label=_("Grace time (seconds)"),
        help_text=_("A run later than this is skipped."),
    )
    jitter_seconds = forms.IntegerField(
        min_value=0,
        max_value=MAX_INT,
        initial=0,
        label=_("Jitter (seconds)"),
        help_text=_("Delay each run by a random 0..N seconds."),
    )
    max_instances = forms.IntegerField(
        min_value=0,
        max_value=MAX_INT,
        initial=0,
        label=_("Max instances"),
        help_text=_("Skip a due run while this many runs of the schedule wait or run; 0: no limit."),
    )
    schedule_names = ("kind", "cron", "timezone", "every", "period", "clocked_time", "solar_event", "latitude",
                      "longitude")  # fmt: skip
    option_names = ("queue", "priority", "expire_seconds", "misfire", "grace_seconds", "jitter_seconds",
                    "max_instances")  # fmt: skip

    def __init__(self, data=None, *, entry, spec: ScheduleSpec | None = None, **kwargs):
        initial = kwargs.pop("initial", {}) or {}
        if spec is not None:
            initial = {**_initial_from_spec(spec), **initial}
        super().__init__(data, initial=initial, **kwargs)
        self.fields["timezone"].choices = [(tz, tz) for tz in sorted(available_timezones())]
        self.fields["timezone"].initial = settings.TIME_ZONE
        self.fields["clocked_time"].help_text = _(
            "In %(zone)s (your time zone, set in Preferences). The schedule disables itself after this run."
        ) % {"zone": zone_label()}
        self.fields["queue"].choices = [("", _("The task's own (%(queue)s)") % {"queue": entry.default_queue})] + [
            (name, name) for name in settings.TASKCENTER_QUEUES
        ]
        self.add_argument_fields(entry, data, args=spec.args if spec else None, kwargs=spec.kwargs if spec else None)

    @property
    def arguments_mode(self) -> str:
        """``typed`` or ``json``: the mode's value (in a template ``form.mode`` is the radio field)."""
        return self.mode

    def schedule_fields(self):
        return [self[name] for name in self.schedule_names]

    def option_fields(self):
        return [self[name] for name in self.option_names]

    def to_spec(self) -> ScheduleSpec:
        data = self.cleaned_data
        args, kwargs = self.arguments()
        return ScheduleSpec(
            name=data["name"].strip(),
            task=self.entry.name,
            kind=data["kind"],
            every=data["every"],
            period=data["period"] or "minutes",
            cron=" ".join((data["cron"] or "").split()),
            timezone=data["timezone"] or "",
            clocked_time=data["clocked_time"],
            solar_event=data["solar_event"] or "",
            latitude=data["latitude"],
            longitude=data["longitude"],
            args=args,
            kwargs=kwargs,
            queue=data["queue"] or "",
            priority=data["priority"] or "",
            expire_seconds=data["expire_seconds"],
            enabled=data["enabled"],
            description=data["description"],
            misfire=data["misfire"],
            grace_seconds=data["grace_seconds"],
            jitter_seconds=data["jitter_seconds"] or 0,
            max_instances=data["max_instances"] or 0,
        )


def _initial_from_spec(spec: ScheduleSpec) -> dict:
    return {
        "name": spec.name,
        "description": spec.description,
        "enabled": spec.enabled,
        "kind": spec.kind,
        "cron": spec.cron,
        "timezone": spec.timezone,
        "every": spec.every,
        "period": spec.period,
        "clocked_time": spec.clocked_time,
        "solar_event": spec.solar_event,
        "latitude": spec.latitude,
        "longitude": spec.longitude,
        "queue": spec.queue,
        "priority": spec.priority,
        "expire_seconds": spec.expire_seconds,
        "misfire": spec.misfire,
        "grace_seconds": spec.grace_seconds,
        "jitter_seconds": spec.jitter_seconds,
        "max_instances": spec.max_instances,
    }
