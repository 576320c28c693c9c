"""What one launch costs the database: BEGIN, two INSERTs, COMMIT, and no index it does not need (issue 12)."""

import re
from datetime import UTC
from itertools import groupby

import pytest
from celery import signals
from django.db import IntegrityError, connection
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from taskcenter.models import AuditEntry, Run
from taskcenter.rows import _NO_QUICK_WAY, _quick_adapter, rows_insert_committed, rows_new
from taskcenter.services.launch import BrokerUnavailable, run_launch

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's driver-level trace and query plans")
pytestmark = [pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def broker(redis_server):
    return redis_server


@pytest.fixture
def statements():
    """Every statement SQLite itself runs on this connection (not only what Django logs)."""
    connection.ensure_connection()
    seen: list[str] = []
    connection.connection.set_trace_callback(seen.append)
    yield seen
    connection.connection.set_trace_callback(None)


def first_words(seen: list[str]) -> list[str]:
    """Each statement's opening words, once: SQLite traces the INSERT again for each trigger it fires,
    and the statements inside a trigger (the search index's FTS5 writes) as ``-- ...`` lines; FTS5
    also reads its configuration and ``PRAGMA data_version`` on first use in a connection."""
    kept = (
        sql
        for sql in seen
        if not sql.startswith("--") and "data_version" not in sql and "taskcenter_run_search" not in sql
    )
    return [key for key, _ in groupby(" ".join(sql.split()[:3]) for sql in kept)]


@sqlite_only
def test_a_launch_runs_begin_two_inserts_and_commit_and_nothing_while_it_publishes(statements, django_user_model):
    user = django_user_model.objects.create_user("launcher")
    at_publish = {}

    def mark(headers=None, **_):
        at_publish["statements"] = len(statements)

    signals.before_task_publish.connect(mark, dispatch_uid="test.mark")
    try:
        statements.clear()
        run = run_launch(task_name="examples.add", args=[1, 2], launched_by=user)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test.mark")
    assert first_words(statements) == [
        "BEGIN IMMEDIATE",
        'INSERT INTO "taskcenter_run"',
        'INSERT INTO "taskcenter_auditentry"',
        "COMMIT",
    ]
    # All of it before the message exists; nothing after (the publish signals write nothing for it).
    assert at_publish["statements"] == len(statements)
    # Written as PENDING (read from the statement itself: the session's worker may have run it since).
    insert = next(sql for sql in statements if sql.startswith('INSERT INTO "taskcenter_run"'))
    assert run.task_id in insert and "'PENDING'" in insert
    assert AuditEntry.objects.get(task_id=run.task_id).outcome == "ok"


@sqlite_only
def test_a_launch_refused_by_a_stopped_broker_leaves_nothing_half_written(tmp_path, redis_server):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server), pytest.raises(BrokerUnavailable):
        run_launch(task_name="examples.add", args=[1, 2], dedup_key="k")
    assert not Run.objects.exists()
    assert list(AuditEntry.objects.values_list("action", "outcome")) == [("launch", "error")]


def test_a_failed_insert_rolls_back_the_rows_written_before_it_in_the_same_call():
    run = Run(task_result_id="will-not-stay", task_name="examples.add", queue="default")
    broken = AuditEntry(action="launch", target=None)  # NOT NULL: the second INSERT fails
    with pytest.raises(IntegrityError):
        rows_insert_committed([run], [broken])
    assert not Run.objects.exists() and not AuditEntry.objects.exists()
    assert run.pk is None and run._state.adding
    # The connection is usable and in autocommit afterwards.
    assert connection.get_autocommit() and not connection.in_atomic_block
    if connection.vendor == "sqlite":
        assert not connection.connection.in_transaction  # the driver-level BEGIN was rolled back
    rows_insert_committed([run])
    assert Run.objects.get().task_result_id == "will-not-stay"


#: The only full indexes on taskcenter_run, each written by every launch: the task id and History's filters.
LAUNCH_WRITES = {
    "run_created",
    "run_state_created",
    "run_task_created",
    "run_task_state_created",
    "run_queue_created",
    "run_launcher_created",
}


def test_every_full_index_on_runs_is_one_history_or_schedules_need():
    """A new full index makes every launch pay for it: make it partial, or add it here on purpose."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, "taskcenter_run")
    full = {
        name
        for name, info in constraints.items()
        if info["index"]
        and not info["primary_key"]
        and not info["unique"]
        and not _partial(name)
        and info["columns"] != ["task_id"]  # PostgreSQL's LIKE companion of the unique task id
    }
    # PostgreSQL's History search is a GIN index over a tsvector of the run's names and ids
    # (migration 0023); SQLite keeps that index in a separate FTS5 table fed by triggers.
    expected = LAUNCH_WRITES | ({"run_search"} if connection.vendor == "postgresql" else set())
    assert full == expected


def _partial(name: str) -> bool:
    """True for an index with a WHERE clause (it holds only the rows that match)."""
    index = next((i for i in Run._meta.indexes if i.name == name), None)
    return index is not None and index.condition is not None


@sqlite_only
@pytest.mark.parametrize(
    "query",
    [
        "SELECT id FROM taskcenter_run WHERE retry_of_id = 1 ORDER BY id DESC",
        "SELECT id FROM taskcenter_run WHERE batch_id = 1 ORDER BY id",
        "SELECT id FROM taskcenter_run WHERE workflow_id = 1",
        "UPDATE taskcenter_run SET cancelled_by_id = NULL WHERE cancelled_by_id IN (1, 2)",
        "UPDATE taskcenter_run SET launched_by_id = NULL WHERE launched_by_id IN (1, 2)",
        # A failure group's runs without a re-run (selectors.failures): the join uses the partial index.
        "SELECT a.id FROM taskcenter_run a LEFT OUTER JOIN taskcenter_run b ON (a.id = b.retry_of_id)"
        " WHERE a.failure_fingerprint = 'x' AND b.id IS NULL",
    ],
)
def test_links_empty_at_launch_are_still_found_through_an_index(query):
    with connection.cursor() as cursor:
        plan = [row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()]
    assert plan and all(" USING " in step for step in plan if step.startswith(("SEARCH", "SCAN"))), plan
    assert not any(step.startswith("SCAN") for step in plan), plan


@sqlite_only
def test_the_reruns_of_a_run_are_read_through_the_partial_index():
    original = run_launch(task_name="examples.add", args=[1, 2])
    rerun = run_launch(task_name="examples.add", args=[1, 2], retry_of=original)
    assert list(original.reruns.all()) == [rerun]
    with connection.cursor() as cursor:
        compiler = original.reruns.all().query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        plan = [row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall()]
    assert any("run_retry_of" in step for step in plan), plan


@sqlite_only
def test_sqlite_checkpoints_its_wal_at_the_configured_size_not_at_every_thousand_pages(settings):
    with connection.cursor() as cursor:
        (pages,) = cursor.execute("PRAGMA wal_autocheckpoint").fetchone()
        (journal,) = cursor.execute("PRAGMA journal_mode").fetchone()
    assert pages == settings.SQLITE_WAL_AUTOCHECKPOINT == 10_000
    assert journal == "wal"


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@sqlite_only
@hypothesis_settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=_json_values, moment=st.datetimes(timezones=st.just(UTC) | st.timezones() | st.none()))
def test_the_quick_way_to_a_json_or_time_column_gives_what_django_would_send(value, moment):
    """``rows._quick_adapter`` (SQLite) sends the same text Django's ``get_db_prep_save`` does, or steps aside."""
    for field in (Run._meta.get_field("args"), AuditEntry._meta.get_field("detail")):
        quick = _quick_adapter(field, connection)(value)
        assert (quick is _NO_QUICK_WAY) == (value is None)  # None goes Django's way (SQL NULL)
        if value is not None:
            assert quick == field.get_db_prep_save(value, connection)
    created_at = Run._meta.get_field("created_at")
    quick = _quick_adapter(created_at, connection)(moment)
    assert (quick is _NO_QUICK_WAY) == (moment.tzinfo is not UTC)  # only an aware time in UTC
    if quick is not _NO_QUICK_WAY:
        assert quick == created_at.get_db_prep_save(moment, connection)
    assert _quick_adapter(Run._meta.get_field("task_name"), connection) is None


@sqlite_only
def test_a_launch_reads_back_its_arguments_and_times_as_written(django_user_model, private_broker):
    # A broker of its own: the delayed run waits in that broker's scheduled set, not in the shared one.
    user = django_user_model.objects.create(username="reader")
    run = run_launch(task_name="examples.add", args=[2, 3], launched_by=user, countdown=60)
    stored = Run.objects.get(pk=run.pk)
    assert (stored.args, stored.kwargs, stored.attempts) == ([2, 3], {}, [])
    assert stored.created_at == run.created_at and stored.eta == run.eta
    entry = AuditEntry.objects.get(task_id=run.task_id)
    assert entry.detail["queue"] == run.queue and entry.at is not None


def _same_instance(built, expected) -> None:
    """Two unsaved instances with the same values, state and cached related objects."""
    assert type(built) is type(expected)
    skip = {"_state", "created_at", "at"}  # defaults of "now": compared apart
    assert {k: v for k, v in built.__dict__.items() if k not in skip} == {
        k: v for k, v in expected.__dict__.items() if k not in skip
    }
    assert built.__dict__.keys() == expected.__dict__.keys()
    assert (built._state.adding, built._state.db) == (expected._state.adding, expected._state.db)
    assert built._state.fields_cache == expected._state.fields_cache


_run_values = st.fixed_dictionaries(
    {},
    optional={
        "task_result_id": st.text(max_size=40),
        "task_name": st.text(max_size=40),
        "queue": st.sampled_from(["default", "high"]),
        "args": _json_values,
        "kwargs": st.dictionaries(st.text(max_size=5), _json_values, max_size=3),
        "eta": st.none() | st.datetimes(timezones=st.just(UTC)),
        "dedup_key": st.text(max_size=10),
        "periodic_task_name": st.text(max_size=10),
        "retry_of": st.none(),
        "retry_of_id": st.none() | st.integers(1, 10**9),
        "launched_by": st.none(),
        "failure_fingerprint": st.none() | st.text(max_size=40),
    },
)


@hypothesis_settings(max_examples=200, deadline=None)
@given(values=_run_values)
def test_a_row_built_quickly_is_the_instance_django_builds(values):
    """``rows_new`` gives what ``Model(**values)`` gives: the values, the defaults, the state."""
    if "retry_of" in values and "retry_of_id" in values:
        values.pop("retry_of_id")  # Django takes one or the other
    _same_instance(rows_new(Run, **values), Run(**values))


@pytest.mark.django_db
def test_a_row_built_quickly_links_related_objects_as_django_does(django_user_model):
    user = django_user_model.objects.create(username="linker")
    original = Run.objects.create(task_result_id="first", task_name="examples.add", queue="default")
    values = {"task_result_id": "second", "launched_by": user, "retry_of": original, "cancelled_by": None}
    built = rows_new(Run, **values)
    _same_instance(built, Run(**values))
    assert (built.launched_by_id, built.retry_of_id, built.cancelled_by_id) == (user.pk, original.pk, None)
    assert built.launched_by is user and built.retry_of is original
    entry = {"actor": user, "action": "launch", "target": "examples.add", "detail": {"queue": "default"}}
    _same_instance(rows_new(AuditEntry, **entry), AuditEntry(**entry))
    with pytest.raises(ValueError, match="must be a"):  # the descriptor's own type check
        rows_new(Run, launched_by=original)


def test_a_row_built_quickly_refuses_what_django_refuses_and_fills_defaults_afresh():
    with pytest.raises(TypeError, match="unexpected keyword arguments: 'colour'"):
        rows_new(Run, task_name="x", colour="red")
    first, second = rows_new(Run), rows_new(Run)
    assert first.args == [] and first.attempts == [] and first.kwargs == {}
    assert first.args is not second.args  # a new list each time, as Django's callable default
    assert first.created_at is not None and first.recorded_state == "PENDING"


def test_a_model_with_init_receivers_is_built_by_django():
    from django.db.models.signals import post_init

    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Run)
    try:
        run = rows_new(Run, task_name="x")
    finally:
        post_init.disconnect(receiver, sender=Run)
    assert seen == [run]


@sqlite_only
def test_every_query_by_schedule_or_worker_reads_the_partial_indexes_that_launches_skip(staff_client):
    """The schedule and worker indexes hold only runs with a schedule or a worker; every page and check
    that asks for a schedule's or a worker's runs still walks them (SQLite needs the indexes' own
    condition in the query), never the run table or an index of every run."""
    from types import SimpleNamespace

    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    from taskcenter.models import SENT_BY_SCHEDULE, TAKEN_BY_A_WORKER
    from taskcenter.scheduler import TaskcenterScheduler
    from tests.test_schedules import make_schedule

    task = make_schedule(name="tick")
    Run.objects.create(task_result_id="by-schedule", task_name="examples.add", periodic_task_name="tick", worker="w1@h")
    launched = run_launch(task_name="examples.add", args=[1, 2])
    with connection.cursor() as cursor:
        for index, column in (("run_schedule_id", "periodic_task_name"), ("run_worker_created", "worker")):
            entries = cursor.execute(
                f"SELECT count(*) FROM taskcenter_run INDEXED BY {index} WHERE NOT ({column} = '')"
            )
            assert entries.fetchone()[0] == 1, index  # the launch is in neither
    assert (launched.periodic_task_name, launched.worker) == ("", "")
    # A small deployment: one schedule, one worker. With statistics saying so, "= name" and the
    # indexes' condition pick the same runs, and SQLite must still walk the index by "= name", in
    # page order, not by the condition with a sort of every run a schedule sent or a worker took.
    Run.objects.bulk_create(
        Run(task_result_id=f"more-{n}", task_name="examples.add", periodic_task_name="tick", worker="w1@h")
        for n in range(300)
    )
    Run.objects.bulk_create(Run(task_result_id=f"plain-{n}", task_name="examples.add") for n in range(300))
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    with CaptureQueriesContext(connection) as captured:
        for url in (
            reverse("taskcenter:schedule_list"),
            reverse("taskcenter:schedule_detail", args=[task.pk]),
            reverse("taskcenter:run_list") + "?schedule=tick",
            reverse("taskcenter:run_list") + "?schedule=tick&state=FAILURE",
            reverse("taskcenter:run_list") + "?worker=w1@h",
            reverse("taskcenter:run_list") + "?worker=w1@h&task_name=examples.add&before=999999",
            reverse("admin:django_celery_beat_periodictask_changelist"),
        ):
            assert staff_client.get(url).status_code == 200, url
        scheduler = SimpleNamespace(app=SimpleNamespace(conf=SimpleNamespace(result_expires=3600)))
        assert TaskcenterScheduler._active_runs(scheduler, "tick", 5) == 5  # counted up to the limit
    asking = [
        q["sql"]
        for q in captured.captured_queries
        if any(f'"{column}" {op} ' in q["sql"] for column in ("periodic_task_name", "worker") for op in ("=", "IN"))
    ]
    assert len(asking) >= 8, asking
    with connection.cursor() as cursor:
        for sql in asking:
            plan = [row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
            by_value = r"INDEX (run_schedule_id|run_schedule_time|run_worker_created) \((periodic_task_name|worker)=\?"
            assert any(re.search(by_value, step) for step in plan), (sql[-300:], plan)
            # No walk of the whole run table or of an index of every run ("U0": Django's subquery alias).
            assert not any(re.match(r"SCAN (taskcenter_run|U\d+)( |$)", step) for step in plan), (sql[-300:], plan)
    assert str(SENT_BY_SCHEDULE) == "(NOT (AND: ('periodic_task_name', '')))"
    assert str(TAKEN_BY_A_WORKER) == "(NOT (AND: ('worker', '')))"
