"""SQLite: History's text index is brought up to date behind the writes, in batches.

Until now every write of a run's arguments or outcome updated the FTS5 index in the same
statement: at a launch one index insert, at a task's end (its outcome written by the result
triggers) a 'delete' of the old text and an insert of the new one, each computing the text
from the JSON (``json_tree``) and through ``taskcenter_search_text``, and each transaction
leaving a small segment for FTS5 to merge. That was a quarter of a pool process's write per
task and a tenth of a launch.

Now the triggers only note the run in ``taskcenter_run_search_pending``, with the text the
index holds for it when it holds any (``indexed`` = 1 and the old args, kwargs and outcome:
a contentless FTS5 table can only forget a row given the exact text it indexed). The first
note of a run wins, a later one is not written (``WHERE NOT EXISTS``, not ``INSERT OR
IGNORE``: the conflict policy of the statement firing the trigger, such as the result
backend's upsert, overrides a trigger's own). Until the run is indexed again, the index
holds the text of that note. ``taskcenter.search_index.search_index_catch_up`` indexes
the noted runs in one transaction per batch; the monitor calls it every second and a text
search calls it before it reads the index, so a search never misses a run. A run deleted
while noted is forgotten with the noted text.

PostgreSQL is unchanged (its GIN index is on an expression of the run's row).
"""

from importlib import import_module

from django.db import migrations

SEARCH_0023 = import_module("taskcenter.migrations.0023_history_search")
SEARCH_0025 = import_module("taskcenter.migrations.0025_search_cjk")
RUNS, SEARCH = SEARCH_0023.RUNS, SEARCH_0023.SEARCH
PENDING = "taskcenter_run_search_pending"
body = SEARCH_0025.spaced_body

FORWARD = [
    "DROP TRIGGER IF EXISTS taskcenter_run_search_insert",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_delete",
    "DROP TRIGGER IF EXISTS taskcenter_run_search_update",
    f"""CREATE TABLE IF NOT EXISTS {PENDING} (
        run_id INTEGER PRIMARY KEY,
        indexed INTEGER NOT NULL,
        args TEXT,
        kwargs TEXT,
        outcome TEXT
    )""",
    f"""CREATE TRIGGER taskcenter_run_search_insert AFTER INSERT ON {RUNS} BEGIN
        INSERT INTO {PENDING}(run_id, indexed)
            SELECT NEW.id, 0 WHERE NOT EXISTS (SELECT 1 FROM {PENDING} WHERE run_id = NEW.id);
    END""",
    f"""CREATE TRIGGER taskcenter_run_search_update AFTER UPDATE OF args, kwargs, outcome ON {RUNS}
        WHEN OLD.args IS NOT NEW.args OR OLD.kwargs IS NOT NEW.kwargs OR OLD.outcome IS NOT NEW.outcome BEGIN
        INSERT INTO {PENDING}(run_id, indexed, args, kwargs, outcome)
            SELECT OLD.id, 1, OLD.args, OLD.kwargs, OLD.outcome
            WHERE NOT EXISTS (SELECT 1 FROM {PENDING} WHERE run_id = OLD.id);
    END""",
    f"""CREATE TRIGGER taskcenter_run_search_delete AFTER DELETE ON {RUNS} BEGIN
        INSERT INTO {SEARCH}({SEARCH}, rowid, body)
            SELECT 'delete', OLD.id, {body("p")} FROM {PENDING} p WHERE p.run_id = OLD.id AND p.indexed = 1;
        INSERT INTO {SEARCH}({SEARCH}, rowid, body)
            SELECT 'delete', OLD.id, {body("OLD")} WHERE NOT EXISTS (SELECT 1 FROM {PENDING} p WHERE p.run_id = OLD.id);
        DELETE FROM {PENDING} WHERE run_id = OLD.id;
    END""",
]


def forward(apps, schema_editor):
    if schema_editor.connection.vendor != "sqlite":
        return
    for sql in FORWARD:
        schema_editor.execute(sql, params=None)


def backward(apps, schema_editor):
    """Index what is noted, then put back the triggers of 0025 (without rebuilding the index)."""
    if schema_editor.connection.vendor != "sqlite":
        return
    statements = [
        f"""INSERT INTO {SEARCH}({SEARCH}, rowid, body)
            SELECT 'delete', p.run_id, {body("p")} FROM {PENDING} p WHERE p.indexed = 1""",
        f"""INSERT INTO {SEARCH}(rowid, body)
            SELECT r.id, {body("r")} FROM {RUNS} r JOIN {PENDING} p ON p.run_id = r.id""",
        f"DROP TABLE {PENDING}",
        *[sql for sql in SEARCH_0025.sqlite_triggers(body) if "delete-all" not in sql and "SELECT id" not in sql],
    ]
    for sql in statements:
        schema_editor.execute(sql, params=None)


class Migration(migrations.Migration):
    dependencies = [("taskcenter", "0027_audit_worker_actions")]

    operations = [migrations.RunPython(forward, backward)]
