"""History search (issue 13): a full-text index over each run's arguments and outcome.

- SQLite: a contentless FTS5 table ``taskcenter_run_search`` (rowid = the run's id, one
  column ``body``) kept by triggers on ``taskcenter_run``: a run written, its arguments or
  outcome changed, a run deleted (retention). ``body`` holds the *values* of the JSON
  arguments (and keys of keyword arguments), unescaped with ``json_tree`` so that text in
  any script is indexed as written, then the outcome. Contentless: the text is not stored
  twice, only its tokens.
- PostgreSQL: a GIN index on ``to_tsvector('simple', args || kwargs || outcome)``.
- Both: a trigger on django-celery-results' table copies the shortened result (or
  exception) of a SUCCESS or FAILURE result (and of a RETRY of a run not yet finished)
  into ``taskcenter_run.outcome`` when the worker stores it, so the run's outcome is
  searchable at once and not only after the monitor or the result's expiry writes it.

Arguments on a run are already masked (secret values are ``********``; the real ones
are sealed in ``secrets``, which is not indexed). Only RunSQL: on SQLite, altering a
field of taskcenter_run would rebuild the table and lose the state triggers of 0020.
"""

from django.db import migrations

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

#: Which new result status writes the outcome of its run (the monitor's rules: a final
#: SUCCESS or FAILURE always, a RETRY only while the run has not finished).
OUTCOME_FROM_RESULT = f"""
    UPDATE {RUNS} SET outcome = SUBSTR(NEW.result, 1, {OUTCOME_LENGTH})
    WHERE task_id = NEW.task_id
      AND outcome IS DISTINCT FROM SUBSTR(NEW.result, 1, {OUTCOME_LENGTH})
      AND (NEW.status IN ('SUCCESS', 'FAILURE') OR state NOT IN ('SUCCESS', 'FAILURE', 'REVOKED'));
"""
OUTCOME_STATUSES = "NEW.status IN ('SUCCESS', 'FAILURE', 'RETRY') AND NEW.result IS NOT NULL"

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
    f"""CREATE TRIGGER taskcenter_result_insert_run_outcome AFTER INSERT ON {RESULTS}
        FOR EACH ROW WHEN {OUTCOME_STATUSES} BEGIN {OUTCOME_FROM_RESULT.replace("IS DISTINCT FROM", "IS NOT")} END""",
    f"""CREATE TRIGGER taskcenter_result_update_run_outcome AFTER UPDATE OF status, result ON {RESULTS}
        FOR EACH ROW WHEN {OUTCOME_STATUSES} BEGIN {OUTCOME_FROM_RESULT.replace("IS DISTINCT FROM", "IS NOT")} END""",
]
SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS taskcenter_result_update_run_outcome",
    "DROP TRIGGER IF EXISTS taskcenter_result_insert_run_outcome",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_update",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_delete",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_insert",
    f"DROP TABLE IF EXISTS {SEARCH}",
]

POSTGRESQL = [
    f"CREATE INDEX run_search ON {RUNS} USING GIN ({POSTGRESQL_DOCUMENT})",
    f"""CREATE OR REPLACE FUNCTION taskcenter_result_run_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF {OUTCOME_STATUSES} THEN {OUTCOME_FROM_RESULT} END IF;
            RETURN NULL;
        END $$""",
    f"""CREATE TRIGGER taskcenter_result_run_outcome AFTER INSERT OR UPDATE OF status, result ON {RESULTS}
        FOR EACH ROW EXECUTE FUNCTION taskcenter_result_run_outcome()""",
]
POSTGRESQL_DROP = [
    f"DROP TRIGGER IF EXISTS taskcenter_result_run_outcome ON {RESULTS}",
    "DROP FUNCTION IF EXISTS taskcenter_result_run_outcome()",
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
    ]

    operations = [
        migrations.RunPython(create_search, drop_search),
    ]
