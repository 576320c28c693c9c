"""Build and insert model rows with cached INSERT statements: the launch paths' writes.

Django's ``save()``/``bulk_create()`` compile their SQL for every call; a launch
writes the same two shapes of row (a Run, an AuditEntry) every time, so the
statement is built once per model and database and reused, which also lets the
database driver reuse its prepared statement (sqlite3's statement cache,
psycopg's prepared statements). Like ``bulk_create``, no model signals are sent.
"""

import json
from datetime import UTC, datetime

from django.conf import settings
from django.db import connections, router, transaction
from django.db.models import CharField, DateTimeField, Field, IntegerField, JSONField, Model, TextField
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

#: (database alias, model) -> _Statement.
_statements: dict = {}
#: model -> its _Blueprint, or None where ``rows_new`` goes Django's way.
_blueprints: dict = {}


def rows_new(model: type[Model], **values) -> Model:
    """An unsaved ``model(**values)``: the same instance, built in a few steps.

    Django's ``Model.__init__`` handles every kind of field, positional values,
    properties and signals; a launch builds its Run (30 fields) and audit entry
    with keywords only, and that general path cost about a tenth of a launch's
    own work. Here each field gets its value or its default straight into the
    instance (what ``setattr`` does for a plain field); a related object passed by
    its field name still goes through Django's descriptor (type check, cache).
    Models with fields that need more (file fields, generic relations...) or with
    ``pre_init``/``post_init`` receivers, and unknown keywords, go Django's way.
    """
    blueprint = _blueprints.get(model, _UNKNOWN)
    if blueprint is _UNKNOWN:
        blueprint = _blueprints[model] = _Blueprint.of(model)
    if (
        blueprint is None
        or not values.keys() <= blueprint.known
        or pre_init.has_listeners(model)
        or post_init.has_listeners(model)
    ):
        return model(**values)
    obj = model.__new__(model)
    state = obj._state = ModelState()
    attributes = obj.__dict__
    related = []
    for name, attname, default in blueprint.fields:
        if name is not None and name in values:  # a relation given as an object (or None)
            value = values[name]
            if value is None:
                attributes[attname] = None
                state.fields_cache[name] = None  # as the descriptor caches "no related object"
            else:
                related.append((name, value))
        elif attname in values:
            attributes[attname] = values[attname]
        else:
            attributes[attname] = default()
    for name, value in related:
        setattr(obj, name, value)
    return obj


_UNKNOWN = object()


class _Blueprint:
    """How ``rows_new`` fills an instance of one model: (relation name or None, attribute, default) per field."""

    def __init__(self, fields: list, known: frozenset):
        self.fields = fields
        self.known = known

    @classmethod
    def of(cls, model: type[Model]) -> "_Blueprint | None":
        opts = model._meta
        if opts.abstract or list(opts.fields) != list(opts.concrete_fields):
            return None
        fields, known = [], set()
        for field in opts.concrete_fields:
            # A plain field's attribute (DeferredAttribute) has no __set__; a foreign key's id
            # attribute only drops a cached related object on __set__, and a new instance has none.
            # Any other attribute class (files, custom descriptors) needs Django's setattr.
            plain = field.descriptor_class is DeferredAttribute and not field.is_relation
            link = field.descriptor_class is ForeignKeyDeferredAttribute and (field.many_to_one or field.one_to_one)
            if field.generated or not (plain or link):
                return None
            if link and field.cache_name != field.name:
                return None
            relation = field.name if link else None
            fields.append((relation, field.attname, field.get_default))
            known.update({field.name, field.attname})
        return cls(fields, frozenset(known))


class _Statement:
    """``INSERT INTO table (columns) VALUES (row), (row)... RETURNING pk`` of one model on one database."""

    def __init__(self, model: type[Model], connection):
        opts = model._meta
        self.fields = [f for f in opts.concrete_fields if not f.generated and f is not opts.auto_field]
        # What get_db_prep_save would return, without calling it: a str (or str enum member) in a
        # plain text column and an int in an integer column (or a link to one) go to the driver as they are.
        self.plain = [type(f) in (CharField, TextField) for f in self.fields]
        self.integer = [isinstance(f.target_field if f.is_relation else f, IntegerField) for f in self.fields]
        quote = connection.ops.quote_name
        self.head = f"INSERT INTO {quote(opts.db_table)} ({', '.join(quote(f.column) for f in self.fields)}) VALUES "
        self.row = f"({', '.join(['%s'] * len(self.fields))})"
        self.tail = f" RETURNING {quote(opts.pk.column)}"
        self.one = self.head + self.row + self.tail
        # How each value is read: by attribute, unless the field computes it on save (auto_now...).
        self.read = [type(f).pre_save is Field.pre_save for f in self.fields]
        # None stays None for every field but JSON (which stores "null" when the column is not nullable).
        self.none_is_null = [not isinstance(f, JSONField) for f in self.fields]
        # A quicker way to the value Django would send, where there is one (SQLite's JSON and times).
        self.quick = [_quick_adapter(f, connection) for f in self.fields]
        self.columns = list(
            zip(self.fields, self.plain, self.integer, self.read, self.none_is_null, self.quick, strict=True)
        )
        self.one_qmark = self.one.replace("%s", "?")

    def sql(self, rows: int, *, qmark: bool = False) -> str:
        """The statement for ``rows`` rows; ``qmark``: with sqlite3's own ``?`` placeholders."""
        if rows == 1:
            return self.one_qmark if qmark else self.one
        sql = self.head + ", ".join([self.row] * rows) + self.tail
        return sql.replace("%s", "?") if qmark else sql

    def params(self, objs: list[Model], connection) -> list:
        params = []
        append = params.append
        for obj in objs:
            for f, plain, integer, read, none_is_null, quick in self.columns:
                value = getattr(obj, f.attname) if read else f.pre_save(obj, True)
                if (
                    (plain and isinstance(value, str))
                    or (integer and type(value) is int)
                    or (value is None and none_is_null)
                ):
                    append(value)
                elif quick is not None and (adapted := quick(value)) is not _NO_QUICK_WAY:
                    append(adapted)
                else:
                    append(f.get_db_prep_save(value, connection))
        return params


_NO_QUICK_WAY = object()
_JSON_TYPES = (dict, list, str, int, float, bool)  # not None: Django sends it as SQL NULL


def _quick_adapter(field: Field, connection):
    """What ``field.get_db_prep_save`` returns on SQLite, for the common values, in a few steps instead of many.

    A JSON list, dict or scalar (not None) is ``json.dumps`` of it (Django's ``adapt_json_value``); an
    aware datetime in UTC, with UTC as the database's time zone, is its naive text (Django's
    ``adapt_datetimefield_value``). Anything else returns ``_NO_QUICK_WAY`` and goes Django's way.
    Other databases (psycopg adapts JSON and times itself) always go Django's way.
    """
    if connection.vendor != "sqlite":
        return None
    if type(field) is JSONField and field.encoder is None:
        return lambda value: json.dumps(value) if type(value) in _JSON_TYPES else _NO_QUICK_WAY
    if type(field) is DateTimeField and settings.USE_TZ and connection.timezone is UTC:
        return lambda value: (
            str(value.replace(tzinfo=None)) if type(value) is datetime and value.tzinfo is UTC else _NO_QUICK_WAY
        )
    return None


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
    with connection.cursor() as cursor:
        _insert(cursor, statement, objs, connection, alias, qmark=False)


def rows_insert_committed(*groups: list[Model]) -> None:
    """INSERT each list of unsaved rows (as ``rows_insert``) in one transaction, committed on return.

    The single launch's write (its Run and its audit entry). Inside a transaction it
    only inserts (the caller's transaction commits). On SQLite, outside one, with no
    query logging or execute wrappers in force (``DEBUG``, ``CaptureQueriesContext``
    use Django's cursor and ``atomic`` instead, with the same statements), it sends
    ``BEGIN``, the INSERTs and ``COMMIT`` straight to the driver: Django's ``atomic``
    and cursor wrappers cost about as much as SQLite's own work on these two rows.
    """
    groups = [objs for objs in groups if objs]
    if not groups:
        return
    alias = router.db_for_write(type(groups[0][0]))
    connection = connections[alias]
    if connection.in_atomic_block:
        for objs in groups:
            rows_insert(objs)
        return
    if (
        connection.vendor != "sqlite"
        or connection.queries_logged
        or connection.execute_wrappers
        or not connection.features.can_return_rows_from_bulk_insert
        or any(router.db_for_write(type(objs[0])) != alias for objs in groups)
    ):
        try:
            with transaction.atomic(using=alias):
                for objs in groups:
                    rows_insert(objs)
        except BaseException:
            _forget(groups)
            raise
        return
    connection.validate_thread_sharing()
    connection.ensure_connection()
    if not connection.get_autocommit():
        raise transaction.TransactionManagementError("rows_insert_committed needs autocommit mode.")
    raw = connection.connection
    with connection.wrap_database_errors:
        cursor = raw.cursor()
        mode = getattr(connection, "transaction_mode", None)  # as Django's atomic begins (IMMEDIATE here)
        cursor.execute(f"BEGIN {mode}" if mode else "BEGIN")
        try:
            for objs in groups:
                statement = _statements.get((alias, type(objs[0])))
                if statement is None:
                    statement = _statements[(alias, type(objs[0]))] = _Statement(type(objs[0]), connection)
                _insert(cursor, statement, objs, connection, alias, qmark=True)
            cursor.execute("COMMIT")
        except BaseException:
            if raw.in_transaction:
                raw.rollback()
            _forget(groups)
            raise
        finally:
            cursor.close()


def _forget(groups) -> None:
    """After a rollback: the objects are unsaved again (no primary key)."""
    for objs in groups:
        for obj in objs:
            setattr(obj, obj._meta.pk.attname, None)
            obj._state.adding = True
            obj._state.db = None


def _insert(cursor, statement: "_Statement", objs: list[Model], connection, alias: str, *, qmark: bool) -> None:
    """Execute ``statement`` for ``objs`` (in chunks under the parameter limit) and set their primary keys.

    ``qmark``: ``cursor`` is the driver's own sqlite3 cursor, which takes ``?`` placeholders.
    """
    pk = objs[0]._meta.pk.attname
    # One row always fits: only a bulk insert asks the database how many parameters a statement takes.
    per_statement = 1 if len(objs) == 1 else max(1, _max_parameters(connection) // len(statement.fields))
    for start in range(0, len(objs), per_statement):
        chunk = objs[start : start + per_statement]
        cursor.execute(statement.sql(len(chunk), qmark=qmark), statement.params(chunk, connection))
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
