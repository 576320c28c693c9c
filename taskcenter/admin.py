"""Admin: read-only runs and audit entries, and periodic tasks limited to the catalogue.

django-celery-beat's own admin lets anyone who may view periodic tasks run them,
with any registered task name. Here the form accepts only catalogued tasks,
and every action is permission-checked; "run now" goes through the launch service.
"""

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as BeatPeriodicTaskForm
from django_celery_beat.models import PeriodicTask

from taskcenter import catalogue, permissions
from taskcenter.models import AuditEntry, Run
from taskcenter.services.launch import InvalidLaunch, LaunchError, launch_prepare
from taskcenter.services.schedules import schedule_describe, schedule_next_runs, schedule_run_now, schedule_timezone


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written by taskcenter itself: listed and searched, never edited by hand."""

    show_full_result_count = False  # no COUNT(*) over millions of rows

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Run)
class RunAdmin(ReadOnlyAdmin):
    list_display = ("task_id", "task_name", "queue", "priority", "source", "launched_by", "created_at")
    list_filter = ("source", "priority")  # small fixed choices; no DISTINCT over the table
    search_fields = ("task_id",)  # see get_search_results
    search_help_text = "Exact task id."
    list_select_related = ("launched_by",)
    readonly_fields = [field.name for field in Run._meta.fields]

    def get_search_results(self, request, queryset, search_term):
        # An exact match on the unique task id column: no LIKE scan, no join.
        term = search_term.strip()
        return (queryset.filter(task_result_id=term) if term else queryset), False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ("at", "actor", "action", "target", "outcome", "message")
    list_filter = ("action", "outcome")
    readonly_fields = [field.name for field in AuditEntry._meta.fields]

    def has_delete_permission(self, request, obj=None):
        return False  # the trail is append-only


class CataloguedPeriodicTaskForm(BeatPeriodicTaskForm):
    """A periodic task of a catalogued task, with arguments that fit its signature."""

    regtask = forms.ChoiceField(label="Task", required=False)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["regtask"].choices = [("", "---------")] + [
            (entry.name, f"{entry.name}: {entry.summary}") for entry in catalogue.all_entries()
        ]
        self.fields["task"].help_text = "Filled from the choice above; only catalogued tasks are accepted."
        if self.instance.pk and catalogue.get_entry(self.instance.task):
            self.initial.setdefault("regtask", self.instance.task)

    def clean(self):
        data = super().clean()
        name = data.get("task")
        if name and catalogue.get_entry(name) is None:
            self.add_error("task", f"{name!r} is not a catalogued task; only catalogued tasks can be scheduled.")
            return data
        if name and "args" in data and "kwargs" in data:
            try:
                launch_prepare(
                    task_name=name,
                    args=json.loads(data["args"] or "[]"),
                    kwargs=json.loads(data["kwargs"] or "{}"),
                    queue=data.get("queue") or None,
                )
            except InvalidLaunch as exc:
                for field, errors in exc.errors.items():
                    for error in errors:
                        self.add_error(field if field in self.fields else None, error)
            except (ValueError, LaunchError) as exc:
                self.add_error(None, str(exc))
        return data


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    form = CataloguedPeriodicTaskForm
    actions = ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")
    list_display = (
        "name",
        "enabled",
        "schedule_in_words",
        "time_zone",
        "last_run_at",
        "last_state",
        "next_run",
        "open",
    )

    def get_queryset(self, request):
        latest = Run.objects.filter(periodic_task_name=OuterRef("name")).order_by("-id")
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_state_value=Subquery(latest.values("task_result__status")[:1]),
                last_task_id=Subquery(latest.values("task_result_id")[:1]),
            )
        )

    @admin.display(description="Schedule")
    def schedule_in_words(self, obj):
        return schedule_describe(obj)

    @admin.display(description="Time zone")
    def time_zone(self, obj):
        return str(schedule_timezone(obj))

    @admin.display(description="Last state")
    def last_state(self, obj):
        if not obj.last_task_id:
            return "–"
        url = reverse("taskcenter:run_detail", args=[obj.last_task_id])
        return format_html('<a href="{}">{}</a>', url, obj.last_state_value or "PENDING")

    @admin.display(description="Next run")
    def next_run(self, obj):
        fire = next(iter(schedule_next_runs(obj, count=1)), None)
        return timezone.localtime(fire.at).strftime("%Y-%m-%d %H:%M:%S") if fire else "–"

    @admin.display(description="")
    def open(self, obj):
        return format_html(
            '<a href="{}">history and next runs</a>', reverse("taskcenter:schedule_detail", args=[obj.pk])
        )

    def has_launch_permission(self, request) -> bool:
        return permissions.can_launch_something(request.user)

    # The parent's actions carry no permission check: anyone who can view could use them.
    @admin.action(description="Enable selected tasks", permissions=["change"])
    def enable_tasks(self, request, queryset):
        return super().enable_tasks(request, queryset)

    @admin.action(description="Disable selected tasks", permissions=["change"])
    def disable_tasks(self, request, queryset):
        return super().disable_tasks(request, queryset)

    @admin.action(description="Toggle activity of selected tasks", permissions=["change"])
    def toggle_tasks(self, request, queryset):
        return super().toggle_tasks(request, queryset)

    @admin.action(description="Run selected tasks now", permissions=["launch"])
    def run_tasks(self, request, queryset):
        launched = 0
        for periodic_task in queryset:
            if not permissions.can_launch(request.user, periodic_task.task):
                self.message_user(
                    request, f"{periodic_task.name}: you may not launch {periodic_task.task}.", messages.ERROR
                )
                continue
            try:
                schedule_run_now(periodic_task=periodic_task, actor=request.user)
                launched += 1
            except LaunchError as exc:
                self.message_user(request, f"{periodic_task.name}: {exc}", messages.ERROR)
        if launched:
            self.message_user(request, f"Launched {launched} task(s) now.", messages.SUCCESS)
