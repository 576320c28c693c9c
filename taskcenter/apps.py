"""App configuration: wires checks and signal receivers."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class TaskcenterConfig(AppConfig):
    name = "taskcenter"
    verbose_name = "Task center"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from taskcenter import checks, signals  # noqa: F401  (checks register on import)

        signals.connect()
        # Import every app's tasks module so the catalogue is complete in every
        # process (web, commands), not only in workers where Celery imports them.
        autodiscover_modules("tasks")
