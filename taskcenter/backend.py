"""taskcenter's result backend: django-celery-results' database backend that keeps finished runs true.

Five changes:

- Each state a task takes is one statement, an upsert (``INSERT ... ON CONFLICT
  (task_id) DO UPDATE``) on SQLite and PostgreSQL, where django-celery-results reads
  the row first and then inserts it in a transaction of its own or saves every column
  (a SELECT and an INSERT at STARTED, a SELECT and an UPDATE at SUCCESS). The row ends
  the same: every column of the new state replaces the old, the creation time stays,
  and the start time stays when a later state has none.
- STARTED is held back for ``TASKCENTER_STARTED_WRITE_DELAY`` seconds
  (``taskcenter.started_writes``): a task that ends within it writes only its final
  row, with the start time in it.
- A state that is not final (RETRY, STARTED, PROGRESS...) never replaces a final one
  (a retry's RETRY can be stored after its next attempt succeeded).
- A revoke never rewrites a finished result. Celery 5.6 stores REVOKED for
  every id a ``revoke`` control command names, with no request, so a late
  revoke (Flower's button, ``celery control revoke``, a terminate that races
  completion) would replace a SUCCESS and its result, arguments and worker.
  Only the revoke path pays one extra read: a stored SUCCESS or FAILURE is
  kept, and a waiting or started row keeps its name, arguments and worker.
- Before ``cleanup`` (the ``celery.backend_cleanup`` task) deletes expired
  results, their state, times, worker and a short outcome are copied into the
  ``Run`` rows in one UPDATE, so a run does not turn PENDING again when its
  result expires.

Set with ``CELERY_RESULT_BACKEND = "taskcenter.backend:TaskcenterBackend"``.
"""

import logging

from celery import states
from django.conf import settings
from django.db import connections, router
from django.db.models import CharField, Exists, F, OuterRef, Q, Subquery, TextField
from django.db.models.functions import Coalesce, Now, Substr
from django.utils import timezone
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

from taskcenter.models import OUTCOME_LENGTH, OUTCOME_STATES, Run
from taskcenter.started_writes import held_started_writes

logger = logging.getLogger(__name__)

#: Databases whose ``INSERT ... ON CONFLICT ... DO UPDATE`` the backend uses; others take django-celery-results' path.
UPSERT_VENDORS = frozenset({"sqlite", "postgresql"})
#: Columns a later state leaves as the first write set them.
KEPT_ON_UPDATE = frozenset({"id", "task_id", "date_created"})
#: States a held STARTED never replaces.
FINAL_STATES = sorted(states.READY_STATES)


class _UpsertStatement:
    """``INSERT ... ON CONFLICT (task_id) DO UPDATE`` of the results table for one set of columns."""

    def __init__(self, model, connection, values: dict, keep_final: bool):
        self.fields = [f for f in model._meta.concrete_fields if f.name in values]
        # A str in a text column goes to the driver as it is (what get_db_prep_save would return).
        self.plain = [type(f) in (CharField, TextField) for f in self.fields]
        quote = connection.ops.quote_name
        table = quote(model._meta.db_table)
        columns = [quote(f.column) for f in self.fields]
        updates = []
        for field, column in zip(self.fields, columns, strict=True):
            if field.name in KEPT_ON_UPDATE:
                continue
            new = f"EXCLUDED.{column}"
            if field.name == "date_started":
                new = f"COALESCE({new}, {table}.{column})"
            updates.append(f"{column} = {new}")
        self.sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(['%s'] * len(self.fields))}) "
            f"ON CONFLICT ({quote('task_id')}) DO UPDATE SET {', '.join(updates)}"
        )
        self.keep_final = keep_final
        if keep_final:
            self.sql += f" WHERE {table}.{quote('status')} NOT IN ({', '.join(['%s'] * len(FINAL_STATES))})"
        self.qmark_sql = self.sql.replace("%s", "?")

    def params(self, values: dict, connection) -> list:
        params = [
            value if value is None or (plain and type(value) is str) else field.get_db_prep_save(value, connection)
            for field, plain, value in zip(self.fields, self.plain, (values[f.name] for f in self.fields), strict=True)
        ]
        if self.keep_final:
            params += FINAL_STATES
        return params


#: Built statements by (database alias, columns, keep_final).
_upsert_statements: dict[tuple, _UpsertStatement] = {}


class TaskcenterBackend(DatabaseBackend):
    """The django-db result backend, with sticky final states and runs kept through cleanup."""

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status == states.REVOKED and self._revoke_kept_out(task_id, result, request):
            return result
        connection = connections[using or router.db_for_write(self.TaskModel)]
        if connection.vendor not in UPSERT_VENDORS:
            return super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)
        content_type, content_encoding, encoded = self.encode_content(result)
        meta = {**self._get_meta_from_request(request), "children": self.current_task_children(request)}
        now = timezone.now()
        values = {
            "task_id": task_id,
            "status": status,
            "content_type": content_type,
            "content_encoding": content_encoding,
            "result": encoded,
            "traceback": traceback,
            "meta": self.encode_content(meta)[2],
            "date_created": now,
            "date_started": now if status == states.STARTED else None,
            "date_done": now,
            **self._get_extended_properties(request, traceback),
        }
        delay = settings.TASKCENTER_STARTED_WRITE_DELAY
        if status == states.STARTED and delay > 0 and not getattr(request, "is_eager", False):
            alias = connection.alias
            held_started_writes.hold(task_id, values, lambda held: self._write_held(alias, held), delay=delay)
            return result
        if (started := held_started_writes.take(task_id)) is not None and values["date_started"] is None:
            # The row is created now, as if STARTED had been written when the task began.
            values["date_created"] = values["date_started"] = started["date_started"]
        # A state that is not final (RETRY, STARTED, a task's own PROGRESS...) never replaces a final
        # one: a retry's message goes out before its RETRY is stored, so the next attempt, in another
        # pool process, can succeed first; a late RETRY would turn that SUCCESS back for good.
        self._upsert(connection, values, keep_final=status not in states.READY_STATES)
        return result

    def _write_held(self, alias: str, values: dict) -> None:
        """Write a held STARTED (in the writer thread, on its own connection) unless the run has ended."""
        connection = connections[alias]
        try:
            self._upsert(connection, values, keep_final=True)
        finally:
            connection.close_if_unusable_or_obsolete()

    def _upsert(self, connection, values: dict, *, keep_final: bool = False) -> None:
        """Write ``values`` as the task's row in one statement, whether the row exists or not.

        With ``keep_final``, a row already in a final state is left as it is. The statement
        is built once per set of columns; on SQLite in autocommit mode, with no query logging
        or execute wrapper in force, it goes straight to the driver (Django's cursor wrappers
        and placeholder rewriting cost a pool process about a fifth of the write).
        """
        key = (connection.alias, tuple(values), keep_final)
        statement = _upsert_statements.get(key)
        if statement is None:
            statement = _upsert_statements[key] = _UpsertStatement(self.TaskModel, connection, values, keep_final)
        params = statement.params(values, connection)
        if (
            connection.vendor == "sqlite"
            and not connection.queries_logged
            and not connection.execute_wrappers
            and not connection.in_atomic_block
        ):
            connection.validate_thread_sharing()
            connection.ensure_connection()
            if connection.get_autocommit():
                with connection.wrap_database_errors:
                    connection.connection.execute(statement.qmark_sql, params)
                return
        with connection.cursor() as cursor:
            cursor.execute(statement.sql, params)

    def _revoke_kept_out(self, task_id, result, request) -> bool:
        """Handle a REVOKED write for a row that exists; return False to let the normal write happen."""
        manager = self.TaskModel._default_manager
        stored = manager.filter(task_id=task_id).values_list("status", flat=True).first()
        if stored is None:
            return False
        if stored in OUTCOME_STATES:
            logger.info("Revoke of %s ignored: it already ended in %s", task_id, stored)
            return True
        if request is not None:
            return False  # the worker revoked it while it held it: its request tells everything
        # A control command names only the id: keep the row's task, arguments, worker and start.
        content_type, content_encoding, encoded = self.encode_content(result)
        manager.filter(task_id=task_id).exclude(status__in=OUTCOME_STATES).update(
            status=states.REVOKED,
            result=encoded,
            content_type=content_type,
            content_encoding=content_encoding,
            date_done=Now(),
        )
        return True

    def cleanup(self):
        """Copy what expired results tell into their runs, then delete them, in bounded batches."""
        if not self.expires:
            return
        # Bounded batches, each copying into its runs first (taskcenter.services.retention).
        from taskcenter.services.retention import results_delete_expired

        deleted = results_delete_expired()
        if deleted:
            logger.info("Deleted %d expired result(s), their final states recorded on their runs", deleted)


def runs_record_results(results) -> int:
    """Copy state, times, worker and outcome of ``results`` (a TaskResult queryset) into their runs.

    One UPDATE with correlated subqueries. A run whose SUCCESS or FAILURE the monitor
    recorded already (with its end time) is left as it is; one whose state only the
    results table's triggers set (see ``Run.state``) gets its times and outcome here.
    A result that never finished (its worker died and nothing reported since) leaves
    its last known state, without an end time.
    Returns the number of runs updated.
    """
    result = TaskResult.objects.filter(task_id=OuterRef("task_result_id"))

    def column(name, source=result):
        return Subquery(source.values(name)[:1])

    return (
        Run.objects.filter(task_result_id__in=results.values("task_id"))
        .exclude(
            Q(recorded_state__in=OUTCOME_STATES)
            & (Q(recorded_finished_at__isnull=False) | ~Exists(result.filter(status=OuterRef("recorded_state"))))
        )
        .update(
            recorded_state=column("status"),
            recorded_started_at=Coalesce(column("date_started"), F("recorded_started_at")),
            recorded_finished_at=column("date_done", result.filter(status__in=states.READY_STATES)),
            worker=Coalesce(column("worker"), F("worker")),
            outcome=Coalesce(Substr(column("result"), 1, OUTCOME_LENGTH), F("outcome")),
        )
    )
