"""History at millions of runs (issue 12): the run's state is its own indexed column, kept true by the database.

Before, a run's state was the result row's status when there was one (PENDING was
"no result row"), so filtering by state joined and scanned both tables. Now:

- Triggers on django-celery-results' table copy each status a result row takes (and its
  worker) into ``taskcenter_run.state`` / ``worker``, in the same statement, whoever
  writes it (the worker's backend, a revoke, the admin, a bulk write). The rules are the
  monitor's (``taskcenter.monitor.runs``): SUCCESS or FAILURE replaces anything, REVOKED
  anything but those, other states only a state that is not final. A run written after
  its result (a task sent by another client, recorded by the monitor) takes the result's
  status on insert.
- Existing runs get the state ``Run.state`` used to compute, in batches of ids.
- The History indexes become (filter, created_at, id): each filter walks one index in
  page order.
"""

from django.conf import settings
from django.db import migrations, models, transaction

BACKFILL_BATCH = 20_000
RESULTS = "django_celery_results_taskresult"
RUNS = "taskcenter_run"


def takes(new: str, current: str) -> str:
    """SQL: the status ``new`` replaces the state ``current`` (the monitor's rules)."""
    return (
        f"({new} IN ('SUCCESS', 'FAILURE') OR ({new} = 'REVOKED' AND {current} NOT IN ('SUCCESS', 'FAILURE'))"
        f" OR {current} NOT IN ('SUCCESS', 'FAILURE', 'REVOKED'))"
    )


SET_FROM_RESULT = f"""
    UPDATE {RUNS} SET
        state = CASE WHEN {takes("NEW.status", "state")} THEN NEW.status ELSE state END,
        worker = CASE WHEN COALESCE(NEW.worker, '') <> '' THEN SUBSTR(NEW.worker, 1, 255) ELSE worker END
    WHERE task_id = NEW.task_id;
"""

SQLITE_TRIGGERS = [
    f"""CREATE TRIGGER taskcenter_result_insert_run_state AFTER INSERT ON {RESULTS}
        FOR EACH ROW WHEN NEW.status <> 'PENDING' BEGIN {SET_FROM_RESULT} END""",
    f"""CREATE TRIGGER taskcenter_result_update_run_state AFTER UPDATE OF status, worker ON {RESULTS}
        FOR EACH ROW WHEN NEW.status <> 'PENDING' BEGIN {SET_FROM_RESULT} END""",
    f"""CREATE TRIGGER taskcenter_run_insert_state AFTER INSERT ON {RUNS}
        FOR EACH ROW WHEN NEW.state NOT IN ('SUCCESS', 'FAILURE') BEGIN
            UPDATE {RUNS} SET
                state = (SELECT r.status FROM {RESULTS} r WHERE r.task_id = NEW.task_id),
                worker = COALESCE(NULLIF(SUBSTR(
                    (SELECT r.worker FROM {RESULTS} r WHERE r.task_id = NEW.task_id), 1, 255), ''), worker)
            WHERE id = NEW.id AND EXISTS (
                SELECT 1 FROM {RESULTS} r
                WHERE r.task_id = NEW.task_id AND r.status <> 'PENDING' AND {takes("r.status", "NEW.state")});
        END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS taskcenter_result_insert_run_state",
    "DROP TRIGGER IF EXISTS taskcenter_result_update_run_state",
    "DROP TRIGGER IF EXISTS taskcenter_run_insert_state",
]

POSTGRESQL_TRIGGERS = [
    f"""CREATE OR REPLACE FUNCTION taskcenter_result_run_state() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status <> 'PENDING' THEN {SET_FROM_RESULT} END IF;
            RETURN NULL;
        END $$""",
    f"""CREATE TRIGGER taskcenter_result_run_state AFTER INSERT OR UPDATE OF status, worker ON {RESULTS}
        FOR EACH ROW EXECUTE FUNCTION taskcenter_result_run_state()""",
    f"""CREATE OR REPLACE FUNCTION taskcenter_run_insert_state() RETURNS trigger LANGUAGE plpgsql AS $$
        DECLARE found_status varchar; found_worker varchar;
        BEGIN
            IF NEW.state NOT IN ('SUCCESS', 'FAILURE') THEN
                SELECT r.status, r.worker INTO found_status, found_worker FROM {RESULTS} r
                WHERE r.task_id = NEW.task_id;
                IF found_status IS NOT NULL AND found_status <> 'PENDING'
                        AND {takes("found_status", "NEW.state")} THEN
                    NEW.state := found_status;
                    NEW.worker := COALESCE(NULLIF(SUBSTR(found_worker, 1, 255), ''), NEW.worker);
                END IF;
            END IF;
            RETURN NEW;
        END $$""",
    f"""CREATE TRIGGER taskcenter_run_insert_state BEFORE INSERT ON {RUNS}
        FOR EACH ROW EXECUTE FUNCTION taskcenter_run_insert_state()""",
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS taskcenter_result_run_state ON {RESULTS}",
    "DROP FUNCTION IF EXISTS taskcenter_result_run_state()",
    f"DROP TRIGGER IF EXISTS taskcenter_run_insert_state ON {RUNS}",
    "DROP FUNCTION IF EXISTS taskcenter_run_insert_state()",
]

#: The state ``Run.state`` computed before this migration, and the worker its result named.
BACKFILL = f"""
    UPDATE {RUNS} SET
        state = CASE
            WHEN state IN ('SUCCESS', 'FAILURE') THEN state
            WHEN EXISTS (SELECT 1 FROM {RESULTS} r WHERE r.task_id = {RUNS}.task_id)
                THEN (SELECT r.status FROM {RESULTS} r WHERE r.task_id = {RUNS}.task_id)
            WHEN state = 'PENDING' AND cancelled_at IS NOT NULL THEN 'REVOKED'
            ELSE state
        END,
        worker = COALESCE(NULLIF(SUBSTR(
            (SELECT r.worker FROM {RESULTS} r WHERE r.task_id = {RUNS}.task_id), 1, 255), ''), worker)
    WHERE id >= %s AND id < %s
"""


def _statements(schema_editor, sqlite, postgresql):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        return sqlite
    if vendor == "postgresql":
        return postgresql
    raise NotImplementedError(f"taskcenter keeps the run state with triggers on SQLite and PostgreSQL, not {vendor}")


def create_triggers(apps, schema_editor):
    for sql in _statements(schema_editor, SQLITE_TRIGGERS, POSTGRESQL_TRIGGERS):
        schema_editor.execute(sql, params=None)


def drop_triggers(apps, schema_editor):
    for sql in _statements(schema_editor, SQLITE_DROP, POSTGRESQL_DROP):
        schema_editor.execute(sql, params=None)


def backfill_states(apps, schema_editor):
    """Write every run's state as ``Run.state`` computed it, one committed batch of ids at a time."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT MIN(id), MAX(id) FROM {RUNS}")
        low, high = cursor.fetchone()
    if low is None:
        return
    for start in range(low, high + 1, BACKFILL_BATCH):
        with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
            cursor.execute(BACKFILL, [start, start + BACKFILL_BATCH])


class Migration(migrations.Migration):
    atomic = False  # the backfill commits batch by batch (millions of rows)


    dependencies = [
        ('django_celery_results', '0014_alter_taskresult_status'),
        ('taskcenter', '0019_orphan_recovery'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RemoveIndex(
            model_name='run',
            name='run_task_name_id',
        ),
        migrations.RemoveIndex(
            model_name='run',
            name='run_queue_id',
        ),
        migrations.RemoveIndex(
            model_name='run',
            name='run_created_at',
        ),
        migrations.RemoveIndex(
            model_name='run',
            name='run_schedule_created',
        ),
        migrations.RemoveIndex(
            model_name='run',
            name='run_state_id',
        ),
        migrations.RunPython(create_triggers, drop_triggers),
        migrations.RunPython(backfill_states, migrations.RunPython.noop),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['-created_at', '-id'], name='run_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['recorded_state', '-created_at', '-id'], name='run_state_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['task_name', '-created_at', '-id'], name='run_task_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['task_name', 'recorded_state', '-created_at', '-id'], name='run_task_state_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['queue', '-created_at', '-id'], name='run_queue_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['worker', '-created_at', '-id'], name='run_worker_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['launched_by', '-created_at', '-id'], name='run_launcher_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['periodic_task_name', '-created_at', '-id'], name='run_schedule_time'),
        ),
    ]
