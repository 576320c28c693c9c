"""Admin: read-only runs and audit entries, and periodic tasks limited to the catalogue.

django-celery-beat's own admin lets anyone who may view periodic tasks run them,
with any registered task name, and its form needs a schedule row chosen first. Here
adding (and changing a catalogued schedule) opens taskcenter's schedule form, which
takes the schedule inline; the admin form that remains accepts only catalogued tasks.
Every action goes through ``taskcenter.services.schedules``: permission-checked per
task, audited, and "run now" through the launch service.
"""

import json
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.admin import PeriodicTaskForm as BeatPeriodicTaskForm
from django_celery_beat.models import PeriodicTask

from taskcenter import catalogue, permissions
from taskcenter.models import AuditEntry, Run
from taskcenter.selectors.schedules import COUNT_WINDOW
from taskcenter.services.launch import InvalidLaunch, LaunchError, launch_prepare
from taskcenter.services.schedules import (
    schedule_delete,
    schedule_describe,
    schedule_next_runs,
    schedule_timezone,
    schedules_act,
)


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
    readonly_fields = [field.name for field in Run._meta.fields if field.name != "secrets"]  # sealed, never shown

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
    actions = ("run_tasks", "enable_tasks", "disable_tasks", "duplicate_tasks")
    list_display = (
        "name",
        "enabled",
        "schedule_in_words",
        "time_zone",
        "last_run_at",
        "last_state",
        "next_run",
        "runs_7d",
        "failures_7d",
        "open",
    )

    def get_queryset(self, request):
        latest = Run.objects.filter(periodic_task_name=OuterRef("name")).order_by("-id")
        recent = (
            Run.objects.filter(periodic_task_name=OuterRef("name"), created_at__gte=timezone.now() - COUNT_WINDOW)
            .order_by()
            .values("periodic_task_name")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                last_state_value=Subquery(latest.values("task_result__status")[:1]),
                last_task_id=Subquery(latest.values("task_result_id")[:1]),
                recent_runs=Subquery(recent.annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()),
                recent_failures=Subquery(
                    recent.filter(task_result__status="FAILURE").annotate(n=Count("pk")).values("n")[:1],
                    output_field=IntegerField(),
                ),
            )
        )

    @admin.display(description="Runs 7 d")
    def runs_7d(self, obj):
        return obj.recent_runs or 0

    @admin.display(description="Failures 7 d")
    def failures_7d(self, obj):
        return obj.recent_failures or 0

    def delete_model(self, request, obj):
        schedule_delete(periodic_task=obj, actor=request.user)

    def delete_queryset(self, request, queryset):
        for task in queryset:
            schedule_delete(periodic_task=task, actor=request.user)

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
        # In the schedule's own time zone, as on the schedules pages.
        return fire.at.astimezone(schedule_timezone(obj)).strftime("%Y-%m-%d %H:%M %Z") if fire else "–"

    @admin.display(description="")
    def open(self, obj):
        return format_html(
            '<a href="{}">history and next runs</a>', reverse("taskcenter:schedule_detail", args=[obj.pk])
        )

    def has_launch_permission(self, request) -> bool:
        return permissions.can_launch_something(request.user)

    # One form for schedules: the schedules pages take the schedule inline (a crontab
    # expression, "every N minutes", a time) and typed arguments. The admin's own form,
    # which needs a schedule row chosen first, stays for tasks outside the catalogue.
    def add_view(self, request, form_url="", extra_context=None):
        task = request.GET.get("task", "")
        if catalogue.get_entry(task) is not None:
            return redirect(f"{reverse('taskcenter:schedule_new')}?{urlencode({'task': task})}")
        return redirect(f"{reverse('taskcenter:schedule_list')}#new-schedule")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        task = PeriodicTask.objects.filter(pk=object_id).only("pk", "task").first() if object_id.isdigit() else None
        if task is not None and catalogue.get_entry(task.task) is not None and request.method == "GET":
            if permissions.can_change_schedule(request.user, task.task):
                return redirect("taskcenter:schedule_edit", pk=task.pk)
            return redirect("taskcenter:schedule_detail", pk=task.pk)
        return super().change_view(request, object_id, form_url, extra_context)

    # The parent's actions neither check permissions per task nor write the audit trail:
    # these call the same service as the schedules pages.
    def _act(self, request, queryset, action: str):
        tasks = list(queryset)
        refused = [t.name for t in tasks if not permissions.can_act_on_schedule(request.user, action, t.task)]
        if refused:
            self.message_user(
                request, f"You may not {action.replace('_', ' ')} {', '.join(refused)}; nothing done.", messages.ERROR
            )
            return
        done, failed = schedules_act(action=action, periodic_tasks=tasks, actor=request.user)
        for line in done:
            self.message_user(request, line, messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description="Enable selected schedules", permissions=["change"])
    def enable_tasks(self, request, queryset):
        self._act(request, queryset, "enable")

    @admin.action(description="Disable selected schedules", permissions=["change"])
    def disable_tasks(self, request, queryset):
        self._act(request, queryset, "disable")

    @admin.action(description="Duplicate selected schedules (disabled copies)", permissions=["add"])
    def duplicate_tasks(self, request, queryset):
        self._act(request, queryset, "duplicate")

    @admin.action(description="Run selected schedules now", permissions=["launch"])
    def run_tasks(self, request, queryset):
        self._act(request, queryset, "run_now")
