"""Admin for runs: read-only, and cheap on a table of millions of rows."""

from django.contrib import admin

from taskcenter.models import Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("task_id", "task_name", "queue", "priority", "source", "launched_by", "created_at")
    list_filter = ("source", "priority")  # small fixed choices; no DISTINCT over the table
    search_fields = ("=task_result__task_id",)  # exact id lookup uses the unique index
    list_select_related = ("launched_by",)
    show_full_result_count = False
    readonly_fields = [field.name for field in Run._meta.fields]

    def has_add_permission(self, request):
        return False  # runs are created by launching, never by hand

    def has_change_permission(self, request, obj=None):
        return False
