"""Insert model rows with cached INSERT statements: the launch paths' writes.

Django's ``save()``/``bulk_create()`` compile their SQL for every call; a launch
writes the same two shapes of row (a Run, an AuditEntry) every time, so the
statement is built once per model and database and reused, which also lets the
database driver reuse its prepared statement (sqlite3's statement cache,
psycopg's prepared statements). Like ``bulk_create``, no model signals are sent.
"""

from django.db import connections, router
from django.db.models import CharField, Model, TextField

#: (database alias, model) -> _Statement.
_statements: dict = {}


class _Statement:
    """``INSERT INTO table (columns) VALUES (row), (row)... RETURNING pk`` of one model on one database."""

    def __init__(self, model: type[Model], connection):
        opts = model._meta
        self.fields = [f for f in opts.concrete_fields if not f.generated and f is not opts.auto_field]
        # A str in a plain text column goes to the driver as it is (what get_db_prep_save would return).
        self.plain = [type(f) in (CharField, TextField) for f in self.fields]
        quote = connection.ops.quote_name
        self.head = f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(f.column) for f in self.fields)}) VALUES "
        self.row = f"({', '.join(['%s'] * len(self.fields))})"
        self.tail = f" RETURNING {quote(opts.pk.column)}"
        self.one = self.head + self.row + self.tail

    def sql(self, rows: int) -> str:
        return self.one if rows == 1 else self.head + ", ".join([self.row] * rows) + self.tail

    def params(self, objs: list[Model], connection) -> list:
        params = []
        for obj in objs:
            for f, plain in zip(self.fields, self.plain, strict=True):
                value = getattr(obj, f.attname) if plain else f.pre_save(obj, True)
                params.append(value if plain and type(value) is str else f.get_db_prep_save(value, connection))
        return params


def rows_insert(objs: list[Model]) -> None:
    """INSERT unsaved ``objs`` (one model) and set their primary keys: one statement for all of them.

    A single row uses the cached statement; many rows go in one multi-row INSERT,
    split only where the database's own limit on parameters requires (Django's
    ``bulk_create`` splits SQLite inserts every 999 parameters, i.e. every 38 runs,
    although SQLite ≥ 3.32 takes 32,766). Needs ``INSERT ... RETURNING`` (SQLite ≥
    3.35, PostgreSQL); elsewhere it falls back to ``bulk_create``.
    """
    if not objs:
        return
    model = type(objs[0])
    alias = router.db_for_write(model)
    connection = connections[alias]
    if not connection.features.can_return_rows_from_bulk_insert:
        model.objects.using(alias).bulk_create(objs)
        return
    statement = _statements.get((alias, model))
    if statement is None:
        statement = _statements[(alias, model)] = _Statement(model, connection)
    per_statement = max(1, _max_parameters(connection) // len(statement.fields))
    pk = model._meta.pk.attname
    with connection.cursor() as cursor:
        for start in range(0, len(objs), per_statement):
            chunk = objs[start : start + per_statement]
            cursor.execute(statement.sql(len(chunk)), statement.params(chunk, connection))
            for obj, (pk_value,) in zip(chunk, cursor.fetchall(), strict=True):
                setattr(obj, pk, pk_value)
                obj._state.adding = False
                obj._state.db = alias


def _max_parameters(connection) -> int:
    """How many parameters one statement may carry on ``connection``."""
    if connection.vendor == "sqlite":
        import sqlite3

        connection.ensure_connection()
        return connection.connection.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    return connection.features.max_query_params or 65_535
