"""History search (issue 13): a full-text index over each run's arguments and outcome.

- SQLite: a contentless FTS5 table ``taskcenter_run_search`` (rowid = the run's id, one
  column ``body``) kept by triggers on ``taskcenter_run``: a run written, its arguments or
  outcome changed, a run deleted (retention). ``body`` holds the *values* of the JSON
  arguments (and keys of keyword arguments), unescaped with ``json_tree`` so that text in
  any script is indexed as written, then the outcome. Contentless: the text is not stored
  twice, only its tokens.
- PostgreSQL: a GIN index on ``to_tsvector('simple', args || kwargs || outcome)``.
- Both: the triggers of 0020 on django-celery-results' table, which copy a stored
  result's status and worker into its run, copy its shortened result (or exception) into
  ``taskcenter_run.outcome`` too, in the same UPDATE: a SUCCESS or FAILURE always, a
  RETRY while the run has not finished (the monitor's rules). The run's outcome is then
  searchable as soon as the worker stores it, not only once the monitor or the result's
  expiry writes it.

Also: ``SavedFilter``, a user's named History filters (a query string each).

Arguments on a run are already masked (secret values are ``********``; the real ones
are sealed in ``secrets``, which is not indexed). Only RunSQL: on SQLite, altering a
field of taskcenter_run would rebuild the table and lose the state triggers of 0020.
"""

from importlib import import_module

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

RESULTS = "django_celery_results_taskresult"
RUNS = "taskcenter_run"
SEARCH = "taskcenter_run_search"
OUTCOME_LENGTH = 500  # taskcenter.models.OUTCOME_LENGTH, as it is at this migration


def sqlite_json_text(column: str) -> str:
    """SQL: the keys and scalar values of a JSON column as plain text (the column itself when not JSON)."""
    return (
        f"CASE WHEN json_valid({column}) THEN (SELECT group_concat("
        f"CASE WHEN typeof(key) = 'text' THEN key || ' ' ELSE '' END || COALESCE(atom, ''), ' ')"
        f" FROM json_tree({column})) ELSE COALESCE({column}, '') END"
    )


def sqlite_body(row: str) -> str:
    """SQL: the indexed text of the run ``row`` (NEW or OLD)."""
    return (
        f"COALESCE({sqlite_json_text(f'{row}.args')}, '') || ' ' || COALESCE({sqlite_json_text(f'{row}.kwargs')}, '')"
        f" || ' ' || COALESCE({sqlite_json_text(f'{row}.outcome')}, '')"
    )


#: The SQL expression History searches on PostgreSQL; the index is on exactly this expression.
POSTGRESQL_DOCUMENT = "to_tsvector('simple'::regconfig, args::text || ' ' || kwargs::text || ' ' || outcome)"

#: The result-table triggers of 0020 (state and worker), whose UPDATE of the run now writes
#: its outcome too: one row update per stored result, not two (on PostgreSQL an update of
#: an indexed expression's column writes every index of the row). The outcome is written
#: as the monitor does: a SUCCESS or FAILURE always, a RETRY while the run is not finished.
STATE = import_module("taskcenter.migrations.0020_history_scale")
SET_FROM_RESULT = f"""
    UPDATE {RUNS} SET
        state = CASE WHEN {STATE.takes("NEW.status", "state")} THEN NEW.status ELSE state END,
        worker = CASE WHEN COALESCE(NEW.worker, '') <> '' THEN SUBSTR(NEW.worker, 1, 255) ELSE worker END,
        outcome = CASE WHEN NEW.result IS NOT NULL AND (NEW.status IN ('SUCCESS', 'FAILURE')
                OR (NEW.status = 'RETRY' AND state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED')))
            THEN SUBSTR(NEW.result, 1, {OUTCOME_LENGTH}) ELSE outcome END
    WHERE task_id = NEW.task_id;
"""

SQLITE = [
    f"CREATE VIRTUAL TABLE {SEARCH} USING fts5(body, content='', tokenize='unicode61 remove_diacritics 2')",
    f"""CREATE TRIGGER taskcenter_run_search_insert AFTER INSERT ON {RUNS} BEGIN
        INSERT INTO {SEARCH}(rowid, body) VALUES (NEW.id, {sqlite_body("NEW")});
    END""",
    f"""CREATE TRIGGER taskcenter_run_search_delete AFTER DELETE ON {RUNS} BEGIN
        INSERT INTO {SEARCH}({SEARCH}, rowid, body) VALUES ('delete', OLD.id, {sqlite_body("OLD")});
    END""",
    f"""CREATE TRIGGER taskcenter_run_search_update AFTER UPDATE OF args, kwargs, outcome ON {RUNS}
        WHEN OLD.args IS NOT NEW.args OR OLD.kwargs IS NOT NEW.kwargs OR OLD.outcome IS NOT NEW.outcome BEGIN
        INSERT INTO {SEARCH}({SEARCH}, rowid, body) VALUES ('delete', OLD.id, {sqlite_body("OLD")});
        INSERT INTO {SEARCH}(rowid, body) VALUES (NEW.id, {sqlite_body("NEW")});
    END""",
    f"INSERT INTO {SEARCH}(rowid, body) SELECT id, {sqlite_body(RUNS)} FROM {RUNS}",
    "DROP TRIGGER taskcenter_result_insert_run_state",
    "DROP TRIGGER taskcenter_result_update_run_state",
    f"""CREATE TRIGGER taskcenter_result_insert_run_state AFTER INSERT ON {RESULTS}
        FOR EACH ROW WHEN NEW.status <> 'PENDING' BEGIN {SET_FROM_RESULT} END""",
    f"""CREATE TRIGGER taskcenter_result_update_run_state AFTER UPDATE OF status, worker, result ON {RESULTS}
        FOR EACH ROW WHEN NEW.status <> 'PENDING' BEGIN {SET_FROM_RESULT} END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS taskcenter_result_insert_run_state",
    "DROP TRIGGER IF EXISTS taskcenter_result_update_run_state",
    *STATE.SQLITE_TRIGGERS[:2],  # 0020's own
    "DROP TRIGGER IF EXISTS taskcenter_run_search_update",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_delete",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_insert",
    f"DROP TABLE IF EXISTS {SEARCH}",
]

POSTGRESQL = [
    f"CREATE INDEX run_search ON {RUNS} USING GIN ({POSTGRESQL_DOCUMENT})",
    f"DROP TRIGGER taskcenter_result_run_state ON {RESULTS}",
    f"""CREATE OR REPLACE FUNCTION taskcenter_result_run_state() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.status <> 'PENDING' THEN {SET_FROM_RESULT} END IF;
            RETURN NULL;
        END $$""",
    f"""CREATE TRIGGER taskcenter_result_run_state AFTER INSERT OR UPDATE OF status, worker, result ON {RESULTS}
        FOR EACH ROW EXECUTE FUNCTION taskcenter_result_run_state()""",
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS taskcenter_result_run_state ON {RESULTS}",
    *STATE.POSTGRESQL_TRIGGERS[:2],  # 0020's own
    "DROP INDEX IF EXISTS run_search",
]


def _statements(schema_editor, sqlite, postgresql):
    vendor = schema_editor.connection.vendor
    if vendor == "sqlite":
        return sqlite
    if vendor == "postgresql":
        return postgresql
    raise NotImplementedError(f"taskcenter indexes History's text search on SQLite and PostgreSQL, not {vendor}")


def create_search(apps, schema_editor):
    for sql in _statements(schema_editor, SQLITE, POSTGRESQL):
        schema_editor.execute(sql, params=None)


def drop_search(apps, schema_editor):
    for sql in _statements(schema_editor, SQLITE_DROP, POSTGRESQL_DROP):
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("taskcenter", "0022_launch_cost"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(create_search, drop_search),
        migrations.CreateModel(
            name="SavedFilter",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("name", models.CharField(max_length=100)),
                ("query", models.CharField(max_length=2000)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE, related_name="+", to=settings.AUTH_USER_MODEL
                    ),
                ),
            ],
            options={
                "ordering": ["name"],
                "default_permissions": (),
                "constraints": [models.UniqueConstraint(fields=("user", "name"), name="savedfilter_user_name")],
            },
        ),
    ]
