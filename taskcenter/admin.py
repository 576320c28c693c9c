"""Admin for runs: read-only, and cheap on a table of millions of rows."""

from django.contrib import admin

from taskcenter.models import Run


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ("task_id", "task_name", "queue", "priority", "source", "launched_by", "created_at")
    list_filter = ("source", "priority")  # small fixed choices; no DISTINCT over the table
    search_fields = ("task_id",)  # see get_search_results
    search_help_text = "Exact task id."
    list_select_related = ("launched_by",)
    show_full_result_count = False
    readonly_fields = [field.name for field in Run._meta.fields]

    def get_search_results(self, request, queryset, search_term):
        # An exact match on the unique task id column: no LIKE scan, no join.
        term = search_term.strip()
        return (queryset.filter(task_result_id=term) if term else queryset), False

    def has_add_permission(self, request):
        return False  # runs are created by launching, never by hand

    def has_change_permission(self, request, obj=None):
        return False
