"""App configuration: wires checks and signal receivers."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TaskcenterConfig(AppConfig):
    name = "taskcenter"
    verbose_name = "Task center"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.db.models.signals import post_migrate

        from taskcenter import checks, signals  # noqa: F401  (checks register on import)
        from taskcenter.permissions import ensure_task_permissions

        signals.connect()
        from django.db.backends.signals import connection_created

        from taskcenter.search_text import register_sqlite_function

        connection_created.connect(register_sqlite_function, dispatch_uid="taskcenter.search_spaced")
        post_migrate.connect(ensure_task_permissions, sender=self, dispatch_uid="taskcenter.task_permissions")
        # Import every app's tasks module so the catalogue is complete in every
        # process (web, commands), not only in workers where Celery imports them.
        autodiscover_modules("tasks")
