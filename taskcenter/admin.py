"""Admin: read-only runs and audit entries, and periodic tasks listed with their health.

django-celery-beat's own admin lets anyone who may view periodic tasks run them,
with any registered task name and any message options (headers could rename the
task sent). Here the admin never writes a periodic task itself: adding and changing
(any method) go to taskcenter's schedule pages, and delete and every action go
through ``taskcenter.services.schedules``: permission-checked per task, audited, and
"run now" through the launch service.
"""

from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Count, IntegerField, OuterRef, Subquery, TextField
from django.db.models.functions import Cast
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import mark_safe
from django.utils.text import smart_split
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext
from django_celery_beat.admin import PeriodicTaskAdmin as BeatPeriodicTaskAdmin
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from django_celery_results.models import GroupResult, TaskResult

from taskcenter import catalogue, permissions
from taskcenter.models import (
    SENT_BY_SCHEDULE,
    ApiToken,
    AuditEntry,
    NotificationChannel,
    NotificationDelivery,
    Run,
    RunSource,
)
from taskcenter.selectors.runs import state_expression, state_is
from taskcenter.selectors.schedules import (
    COUNT_WINDOW,
    schedule_describe,
    schedule_error,
    schedule_next_runs,
    schedule_timezone,
)
from taskcenter.services.api_tokens import token_revoke
from taskcenter.services.schedules import ScheduleForbidden, schedule_delete, schedules_act
from taskcenter.zones import local_text


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
    search_help_text = gettext_lazy("Exact task id.")
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


admin.site.unregister(PeriodicTask)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(BeatPeriodicTaskAdmin):
    actions = ("run_tasks", "enable_tasks", "disable_tasks", "duplicate_tasks")
    list_display = (
        "name",
        "enabled",
        "schedule_in_words",
        "time_zone",
        "last_run",
        "last_state",
        "health",
        "next_run",
        "runs_7d",
        "failures_7d",
        "open",
    )

    def get_queryset(self, request):
        latest = Run.objects.filter(SENT_BY_SCHEDULE, periodic_task_name=OuterRef("name")).order_by("-id")
        recent = (
            Run.objects.filter(
                SENT_BY_SCHEDULE, periodic_task_name=OuterRef("name"), created_at__gte=timezone.now() - COUNT_WINDOW
            )
            .order_by()
            .values("periodic_task_name")
        )
        return (
            super()
            .get_queryset(request)
            .select_related("taskcenter_policy")
            # A crontab's zone as text: the field raises on an unknown name (see selectors.periodic_tasks).
            .defer("crontab__timezone")
            .annotate(
                crontab_zone=Cast("crontab__timezone", TextField()),
                last_state_value=Subquery(latest.annotate(state_now=state_expression()).values("state_now")[:1]),
                last_task_id=Subquery(latest.values("task_result_id")[:1]),
                last_sent_at=Subquery(latest.values("created_at")[:1]),
                recent_runs=Subquery(recent.annotate(n=Count("pk")).values("n")[:1], output_field=IntegerField()),
                recent_failures=Subquery(
                    recent.filter(state_is("FAILURE")).annotate(n=Count("pk")).values("n")[:1],
                    output_field=IntegerField(),
                ),
            )
        )

    @admin.display(description=mark_safe('<input type="checkbox" id="action-toggle">'))
    def action_checkbox(self, obj):
        # As Django's, labelled with the name: str(obj) renders the schedule row, which
        # raises for a crontab whose stored time zone is unknown.
        attrs = {
            "class": "action-select",
            "aria-label": _("Select this object for an action - %(name)s") % {"name": obj.name},
        }
        return forms.CheckboxInput(attrs, lambda value: False).render(helpers.ACTION_CHECKBOX_NAME, str(obj.pk))

    @admin.display(description=gettext_lazy("Last run"))
    def last_run(self, obj):
        # From taskcenter's runs: beat's last_run_at is cleared when a schedule is disabled.
        if not obj.last_sent_at:
            return _("never")
        return timezone.localtime(obj.last_sent_at).strftime("%Y-%m-%d %H:%M:%S")

    @admin.display(description=gettext_lazy("Health"))
    def health(self, obj):
        error = schedule_error(obj)
        return format_html('<span class="errornote" title="{}">{}</span>', error, _("in error")) if error else _("ok")

    @admin.display(description=gettext_lazy("Runs 7 d"))
    def runs_7d(self, obj):
        return obj.recent_runs or 0

    @admin.display(description=gettext_lazy("Failures 7 d"))
    def failures_7d(self, obj):
        return obj.recent_failures or 0

    # Writes: only through the schedule service, never the stock form's save.
    def save_model(self, request, obj, form, change):
        raise PermissionDenied(_("Periodic tasks are saved through the schedule pages."))

    def delete_model(self, request, obj):
        self.delete_queryset(request, [obj])

    def delete_queryset(self, request, queryset):
        tasks = list(queryset)
        refused = [t.name for t in tasks if not permissions.can_act_on_schedule(request.user, "delete", t.task)]
        if refused:
            raise PermissionDenied(_("You may not delete %(names)s.") % {"names": ", ".join(refused)})
        try:
            for task in tasks:
                schedule_delete(periodic_task=task, actor=request.user)
        except ScheduleForbidden as exc:
            raise PermissionDenied(str(exc)) from None

    @admin.display(description=gettext_lazy("Schedule"))
    def schedule_in_words(self, obj):
        return schedule_describe(obj)

    @admin.display(description=gettext_lazy("Time zone"))
    def time_zone(self, obj):
        return str(schedule_timezone(obj))

    @admin.display(description=gettext_lazy("Last state"))
    def last_state(self, obj):
        if not obj.last_task_id:
            return "–"
        url = reverse("taskcenter:run_detail", args=[obj.last_task_id])
        return format_html('<a href="{}">{}</a>', url, obj.last_state_value or "PENDING")

    @admin.display(description=gettext_lazy("Next run"))
    def next_run(self, obj):
        fire = next(iter(schedule_next_runs(obj, count=1)), None)
        # In the schedule's own time zone, as on the schedules pages.
        return local_text(fire.at, tz=schedule_timezone(obj)) if fire else "–"

    @admin.display(description="")
    def open(self, obj):
        return format_html(
            '<a href="{}">{}</a>', reverse("taskcenter:schedule_detail", args=[obj.pk]), _("history and next runs")
        )

    def has_launch_permission(self, request) -> bool:
        return permissions.can_launch_something(request.user)

    # One form for schedules, whatever the method: the schedules pages take the schedule
    # inline, accept only catalogued tasks, check the user's rights per task and audit.
    # The stock form (any registered task, message headers) is never shown or saved.
    def add_view(self, request, form_url="", extra_context=None):
        task = request.GET.get("task", "")
        if catalogue.get_entry(task) is not None:
            return redirect(f"{reverse('taskcenter:schedule_new')}?{urlencode({'task': task})}")
        return redirect(f"{reverse('taskcenter:schedule_list')}#new-schedule")

    def get_object(self, request, object_id, from_field=None):
        if from_field is None and not _is_id(object_id):
            return None  # e.g. 30 digits: beyond the database's integers, so no such row
        return super().get_object(request, object_id, from_field)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        task = PeriodicTask.objects.filter(pk=object_id).only("pk", "task").first() if _is_id(object_id) else None
        if task is None:
            return redirect("admin:django_celery_beat_periodictask_changelist")
        if catalogue.get_entry(task.task) is not None and permissions.can_change_schedule(request.user, task.task):
            return redirect("taskcenter:schedule_edit", pk=task.pk)
        return redirect("taskcenter:schedule_detail", pk=task.pk)  # an uncatalogued one: view or delete it there

    # The parent's actions neither check permissions per task nor write the audit trail:
    # these call the same service as the schedules pages.
    def _act(self, request, queryset, action: str):
        tasks = list(queryset)
        refused = [t.name for t in tasks if not permissions.can_act_on_schedule(request.user, action, t.task)]
        if refused:
            refusal = _REFUSALS.get(action, gettext_lazy("You may not change %(names)s; nothing done."))
            self.message_user(request, refusal % {"names": ", ".join(refused)}, messages.ERROR)
            return
        done, failed = schedules_act(action=action, periodic_tasks=tasks, actor=request.user, source=RunSource.ADMIN)
        for line in done:
            self.message_user(request, line, messages.SUCCESS)
        for line in failed:
            self.message_user(request, line, messages.ERROR)

    @admin.action(description=gettext_lazy("Enable selected schedules"), permissions=["change"])
    def enable_tasks(self, request, queryset):
        self._act(request, queryset, "enable")

    @admin.action(description=gettext_lazy("Disable selected schedules"), permissions=["change"])
    def disable_tasks(self, request, queryset):
        self._act(request, queryset, "disable")

    @admin.action(description=gettext_lazy("Duplicate selected schedules (disabled copies)"), permissions=["add"])
    def duplicate_tasks(self, request, queryset):
        self._act(request, queryset, "duplicate")

    @admin.action(description=gettext_lazy("Run selected schedules now"), permissions=["launch"])
    def run_tasks(self, request, queryset):
        self._act(request, queryset, "run_now")


#: The refusal of a schedule action, per action (the names of the refused schedules as ``names``).
_REFUSALS = {
    "enable": gettext_lazy("You may not enable %(names)s; nothing done."),
    "disable": gettext_lazy("You may not disable %(names)s; nothing done."),
    "duplicate": gettext_lazy("You may not duplicate %(names)s; nothing done."),
    "run_now": gettext_lazy("You may not run now %(names)s; nothing done."),
}


def _is_id(value) -> bool:
    """A primary key the database can hold (a 64-bit integer)."""
    return isinstance(value, str) and value.isdigit() and 0 < int(value) < 2**63


class ViewOnlyAdmin:
    """Mixin: rows shown in the admin but changed only through taskcenter's services.

    A timing row (interval, crontab, solar, clocked) is shared by schedules, and deleting
    one deletes every schedule that uses it (a cascade): edited here it would change or
    remove schedules with no permission check per task and no audit entry. Results are
    written by workers; a hand edit would make the history lie.
    """

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def _view_only(model) -> None:
    """Register ``model`` again with its stock admin made view-only."""
    stock = type(admin.site._registry[model])
    admin.site.unregister(model)
    admin.site.register(model, type(f"ViewOnly{stock.__name__}", (ViewOnlyAdmin, stock), {}))


for _model in (IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule, TaskResult, GroupResult):
    _view_only(_model)


class ResultsToHistoryAdmin(type(admin.site._registry[TaskResult])):
    """The stock results list sends operators to History instead.

    At a million results its date hierarchy (``SELECT DISTINCT`` over the dates), its
    filters, its full count and its ``LIKE`` search each scan the table for seconds.
    History lists the same runs through indexes; a search here becomes History's exact
    task id filter. A single result (its change page, view only) is still shown here.
    """

    def changelist_view(self, request, extra_context=None):
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        term = request.GET.get("q", "").strip()[: TaskResult._meta.get_field("task_id").max_length]  # no id is longer
        url = reverse("taskcenter:run_list")
        return redirect(f"{url}?{urlencode({'task_id': term})}" if term else url)


admin.site.unregister(TaskResult)
admin.site.register(TaskResult, ResultsToHistoryAdmin)


@admin.register(NotificationChannel)
class NotificationChannelAdmin(ReadOnlyAdmin):
    """Read-only: channels change on the Notifications page (audited); the secret is never shown."""

    list_display = ("name", "kind", "target", "enabled")
    fields = ("name", "kind", "url", "addresses", "enabled", "created_at")
    exclude = ("secret",)


@admin.register(NotificationDelivery)
class NotificationDeliveryAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "channel", "alert_name", "event", "status", "attempts")
    list_filter = ("status", "event")
    exclude = ("payload",)


@admin.register(ApiToken)
class ApiTokenAdmin(ReadOnlyAdmin):
    """API tokens: created by their own user (the secret is shown once); an admin may revoke a leaked one.

    Never deleted here: a revoked token stays listed, and the revoke goes through
    ``token_revoke`` so it is audited.
    """

    list_display = ("name", "user", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    list_select_related = ("user",)
    search_fields = ("name", "user__username", "prefix")
    fields = readonly_fields = ("name", "user", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at")
    actions = ["revoke"]

    def has_delete_permission(self, request, obj=None):
        return False

    def has_revoke_permission(self, request) -> bool:
        return request.user.has_perm("taskcenter.change_apitoken")

    @admin.action(description=gettext_lazy("Revoke selected API tokens"), permissions=["revoke"])
    def revoke(self, request, queryset):
        revoked = 0
        for token in queryset.filter(revoked_at__isnull=True).select_related("user"):
            token_revoke(token=token, actor=request.user)
            revoked += 1
        self.message_user(
            request,
            ngettext("Revoked %(count)d API token(s).", "Revoked %(count)d API token(s).", revoked)
            % {"count": revoked},
            messages.SUCCESS,
        )


class BoundedSearchMixin:
    """Search only the first words of an admin search box.

    The admin ANDs one LIKE per word and per search field: a box pasted full of text
    (thousands of words) makes SQLite refuse the query ("Expression tree is too large",
    a 500) and costs seconds on PostgreSQL. The first ``max_search_words`` words of the
    first ``max_search_length`` characters are searched, and the page says so.
    """

    max_search_length = 200
    max_search_words = 10

    def get_search_results(self, request, queryset, search_term):
        words = list(smart_split(search_term[: self.max_search_length]))
        bounded = " ".join(words[: self.max_search_words])
        if len(search_term) > self.max_search_length or len(words) > self.max_search_words:
            self.message_user(
                request,
                _("Only the first %(words)d words (at most %(length)d characters) of the search were used.")
                % {"words": self.max_search_words, "length": self.max_search_length},
                messages.WARNING,
            )
        return super().get_search_results(request, queryset, bounded)


def _bound_every_admin_search(site: admin.AdminSite) -> None:
    """Give every registered admin with a search box (Django's own and the packages' too) a bounded search."""
    for model, model_admin in list(site._registry.items()):
        if model_admin.search_fields and not isinstance(model_admin, BoundedSearchMixin):
            bounded = type(f"Bounded{type(model_admin).__name__}", (BoundedSearchMixin, type(model_admin)), {})
            site.unregister(model)
            site.register(model, bounded)


_bound_every_admin_search(admin.site)
