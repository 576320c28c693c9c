"""The project's Celery app, with a counter of SQL statements and connections in each pool process.

For tests only (``celery -A tests.worker_sql_probe worker``): after each task, a pool
process writes its running totals (tasks, statements, new connections) to
``<TASKCENTER_SQL_PROBE_DIR>/<pid>.json``. Statements are what Django executes
(``execute_wrappers``); a new connection's PRAGMAs are counted as the connection.
"""

import json
import os
from pathlib import Path

from celery import signals

from config.celery import app  # noqa: F401 (the app celery -A loads)

COUNTS = {"tasks": 0, "statements": 0, "connections": 0}


def _count_statement(execute, sql, params, many, context):
    COUNTS["statements"] += 1
    return execute(sql, params, many, context)


def _count_connection(sender=None, connection=None, **_):
    COUNTS["connections"] += 1


@signals.worker_process_init.connect(weak=False)
def _install(**_):
    from django.db import connection
    from django.db.backends.signals import connection_created

    connection.execute_wrappers.append(_count_statement)
    connection_created.connect(_count_connection, weak=False)


@signals.task_postrun.connect(weak=False)
def _write_counts(**_):
    COUNTS["tasks"] += 1
    Path(os.environ["TASKCENTER_SQL_PROBE_DIR"], f"{os.getpid()}.json").write_text(json.dumps(COUNTS))
