"""taskcenter's own Celery tasks, sent by beat (not in the catalogue: operators do not launch them)."""

from celery import shared_task


@shared_task(name="taskcenter.retention_cleanup", ignore_result=False)
def retention_cleanup() -> dict[str, int]:
    """Delete records older than their retention, in bounded batches; return the counts per kind."""
    from taskcenter.services.retention import retention_cleanup as cleanup

    return cleanup().counts
