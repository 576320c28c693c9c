"""taskcenter: launch, monitor and control Celery tasks from Django."""
