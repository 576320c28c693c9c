"""A pool process keeps its database connection from one task to the next.

Celery's Django fixup closes every database connection before and after each task
(unless ``CELERY_DB_REUSE_MAX`` says otherwise), so each task of a pool process opened
a new connection: on SQLite four PRAGMAs before its first statement. The settings turn
that off (``CELERY_DB_REUSE_MAX``) and these receivers do what Django does around a web
request instead: after each task, a connection that is unusable (an error occurred and
it fails its check), left with autocommit off, or older than its maximum age is closed,
and the next task opens a new one. A pool process gives its connection a maximum age of
``TASKCENTER_WORKER_DB_CONN_MAX_AGE`` seconds when the database settings keep none
(``CONN_MAX_AGE`` 0, the SQLite default here); a longer one configured (``DATABASE_URL``'s 60 s)
is kept.
"""

from django.conf import settings
from django.db import connections


def keep_connections_in_pool_process(**_) -> None:
    """``worker_process_init``: let this pool process's connections live across tasks."""
    max_age = settings.TASKCENTER_WORKER_DB_CONN_MAX_AGE
    for connection in connections.all():
        if connection.settings_dict.get("CONN_MAX_AGE") == 0:
            connection.settings_dict["CONN_MAX_AGE"] = max_age


def close_unusable_connections(sender=None, **_) -> None:
    """``task_postrun``: close a connection the task left unusable, in a transaction, or too old."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # an eager task runs inside its caller's request or transaction
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
