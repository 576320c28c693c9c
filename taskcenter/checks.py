"""Django system checks for the Celery settings and, on deploy checks, connectivity."""

from django.core import checks

from taskcenter import catalogue
from taskcenter.selectors import health


@checks.register("taskcenter")
def check_celery_configuration(app_configs=None, **kwargs):
    """Every Celery setting taskcenter relies on holds."""
    return [
        checks.Error(result.message, id=f"taskcenter.E_{result.name.upper()}")
        for result in health.check_celery_settings()
        if not result.ok
    ]


@checks.register("taskcenter")
def check_catalogue_queues(app_configs=None, **kwargs):
    """Every catalogued task declares a configured queue."""
    from django.conf import settings

    return [
        checks.Error(
            f"Task {entry.name} declares queue {entry.queue!r}, which is not in TASKCENTER_QUEUES.",
            hint=f"Add it to TASKCENTER_QUEUES ({','.join(settings.TASKCENTER_QUEUES)}) or change the task.",
            id="taskcenter.E_TASK_QUEUE",
        )
        for entry in catalogue.all_entries()
        if entry.queue and entry.queue not in settings.TASKCENTER_QUEUES
    ]


@checks.register("taskcenter", deploy=True)
def check_connectivity(app_configs=None, **kwargs):
    """The broker and the database answer (run by ``check --deploy``)."""
    return [
        checks.Error(result.message, id=f"taskcenter.E_{result.name.upper()}")
        for result in (health.check_database(), health.check_broker())
        if not result.ok
    ]
