"""History search finds Chinese, Japanese and Korean text anywhere, not only at a word's start.

The indexed text has its JSON escapes decoded and is *spaced* (each CJK character a word of
its own, see ``taskcenter.search_text``); searches ask for a phrase of those characters.

- SQLite: the three FTS5 triggers of 0023 are recreated around ``taskcenter_search_text``
  (a Python function each Django connection registers) and the index is rebuilt from the
  runs (contentless: emptied with 'delete-all').
- PostgreSQL: an immutable SQL function ``taskcenter_search_text`` does the same, and the
  GIN index ``run_search`` is recreated on it. On a large
  table this rebuild takes a while and blocks writes to taskcenter_run (on SQLite too):
  run the migration in a quiet moment.
"""

from importlib import import_module

from django.db import migrations

SEARCH_0023 = import_module("taskcenter.migrations.0023_history_search")
RUNS, SEARCH = SEARCH_0023.RUNS, SEARCH_0023.SEARCH
FUNCTION = "taskcenter_search_text"  # taskcenter.search_text.SQL_FUNCTION
#: taskcenter.search_text.CJK_CLASS, as it is at this migration.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
POSTGRESQL_DOCUMENT = f"to_tsvector('simple'::regconfig, {FUNCTION}(args::text || ' ' || kwargs::text || ' ' || outcome))"
#: taskcenter.search_text.searchable in SQL: decode \\uXXXX escapes (not NUL or surrogates), space CJK characters.
POSTGRESQL_FUNCTION = rf"""
CREATE OR REPLACE FUNCTION {FUNCTION}(body text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    code text;
BEGIN
    IF body IS NULL THEN
        RETURN NULL;
    END IF;
    IF strpos(body, '\u') > 0 THEN
        FOR code IN SELECT DISTINCT m[1] FROM regexp_matches(body, '\\u([0-9a-fA-F]{{4}})', 'g') AS m LOOP
            IF lower(code) <> '0000' AND lower(code) NOT BETWEEN 'd800' AND 'dfff' THEN
                body := replace(body, '\u' || code, chr(('x' || lpad(code, 8, '0'))::bit(32)::int));
            END IF;
        END LOOP;
    END IF;
    RETURN regexp_replace(body, '([{CJK_CLASS}])', ' \1 ', 'g');
END $$
"""


def sqlite_triggers(body) -> list[str]:
    return [
        "DROP TRIGGER IF EXISTS taskcenter_run_search_insert",
        "DROP TRIGGER IF EXISTS taskcenter_run_search_delete",
        "DROP TRIGGER IF EXISTS taskcenter_run_search_update",
        f"""CREATE TRIGGER taskcenter_run_search_insert AFTER INSERT ON {RUNS} BEGIN
            INSERT INTO {SEARCH}(rowid, body) VALUES (NEW.id, {body("NEW")});
        END""",
        f"""CREATE TRIGGER taskcenter_run_search_delete AFTER DELETE ON {RUNS} BEGIN
            INSERT INTO {SEARCH}({SEARCH}, rowid, body) VALUES ('delete', OLD.id, {body("OLD")});
        END""",
        f"""CREATE TRIGGER taskcenter_run_search_update AFTER UPDATE OF args, kwargs, outcome ON {RUNS}
            WHEN OLD.args IS NOT NEW.args OR OLD.kwargs IS NOT NEW.kwargs OR OLD.outcome IS NOT NEW.outcome BEGIN
            INSERT INTO {SEARCH}({SEARCH}, rowid, body) VALUES ('delete', OLD.id, {body("OLD")});
            INSERT INTO {SEARCH}(rowid, body) VALUES (NEW.id, {body("NEW")});
        END""",
        f"INSERT INTO {SEARCH}({SEARCH}) VALUES ('delete-all')",
        f"INSERT INTO {SEARCH}(rowid, body) SELECT id, {body(RUNS)} FROM {RUNS}",
    ]


def spaced_body(row: str) -> str:
    return f"{FUNCTION}({SEARCH_0023.sqlite_body(row)})"


def apply(forward: bool):
    def run(apps, schema_editor):
        vendor = schema_editor.connection.vendor
        if vendor == "sqlite":
            statements = sqlite_triggers(spaced_body if forward else SEARCH_0023.sqlite_body)
        elif vendor == "postgresql":
            document = POSTGRESQL_DOCUMENT if forward else SEARCH_0023.POSTGRESQL_DOCUMENT
            statements = [
                "DROP INDEX IF EXISTS run_search",
                POSTGRESQL_FUNCTION if forward else f"DROP FUNCTION IF EXISTS {FUNCTION}(text)",
                f"CREATE INDEX run_search ON {RUNS} USING GIN ({document})",
            ]
        else:
            raise NotImplementedError(f"taskcenter indexes History's text search on SQLite and PostgreSQL, not {vendor}")
        for sql in statements:
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [("taskcenter", "0024_run_page")]

    operations = [migrations.RunPython(apply(True), apply(False))]
