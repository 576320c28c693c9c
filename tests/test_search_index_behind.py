"""SQLite's text index brought up to date behind the writes (migration 0028, taskcenter.search_index).

Writes only note a run; a catch-up indexes the noted runs in batches. What must hold: a
search (which catches up first) finds exactly the runs whose current text holds the word,
whatever happened to them in between (created, outcome written and rewritten, arguments
changed, deleted while noted or not), and a catch-up interrupted at any batch size leaves
the index exact. A wrong 'delete' of a contentless FTS5 row would leave its words behind,
so a run would still be found by a word it no longer holds: the property test looks for that.
"""

import json
import re
import sqlite3
import time

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskcenter import search_index
from taskcenter.models import Run
from taskcenter.search_index import PENDING, SEARCH, search_index_catch_up, search_index_pending
from taskcenter.selectors.runs import runs_matching_text

pytestmark = pytest.mark.skipif(connection.vendor != "sqlite", reason="the index behind the writes is SQLite's")

WORDS = ["alpha", "bravo", "charlie", "delta", "echo"]
word_lists = st.lists(st.sampled_from(WORDS), max_size=3)


def _reset_index() -> None:
    Run.objects.all().delete()
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {SEARCH}({SEARCH}) VALUES ('delete-all')")
        cursor.execute(f"DELETE FROM {PENDING}")


def _text_words(run: Run) -> set[str]:
    text = " ".join([json.dumps(run.args), json.dumps(run.kwargs), run.outcome or ""])
    return set(re.findall(r"[a-z]+", text))


def _expected(word: str) -> set[int]:
    return {run.id for run in Run.objects.all() if word in _text_words(run)}


operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), word_lists),
        st.tuples(st.just("outcome"), st.integers(0, 5), word_lists),
        st.tuples(st.just("args"), st.integers(0, 5), word_lists),
        st.tuples(st.just("delete"), st.integers(0, 5)),
        st.tuples(st.just("catch_up"), st.integers(1, 4)),
        st.tuples(st.just("search"), st.sampled_from(WORDS)),
    ),
    max_size=25,
)


@pytest.mark.django_db
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_a_search_finds_exactly_the_runs_holding_the_word_whatever_happened_to_them(ops):
    _reset_index()
    for op in ops:
        ids = list(Run.objects.order_by("id").values_list("id", flat=True))
        kind = op[0]
        if kind == "create":
            Run.objects.create(task_result_id=f"t{time.monotonic_ns()}", task_name="examples.add", args=op[1])
        elif kind in ("outcome", "args", "delete") and ids:
            target = Run.objects.filter(id=ids[op[1] % len(ids)])
            if kind == "outcome":
                target.update(outcome=" ".join(op[2]))
            elif kind == "args":
                target.update(args=op[2])
            else:
                target.delete()
        elif kind == "catch_up":
            search_index_catch_up(limit=op[1])
        elif kind == "search":
            assert set(runs_matching_text(op[1], limit=1000)) == _expected(op[1]), ops
    for word in WORDS:
        assert set(runs_matching_text(word, limit=1000)) == _expected(word), (word, ops)
    assert search_index_pending() == 0


@pytest.mark.django_db
def test_a_launch_and_a_result_only_note_the_run_and_the_catch_up_indexes_them(monkeypatch):
    _reset_index()
    run = Run.objects.create(task_result_id="n1", task_name="examples.add", args=["invoice", 7781])
    assert search_index_pending() == 1
    Run.objects.filter(id=run.id).update(outcome='"shipped to Zhang"')
    assert search_index_pending() == 1  # the first note stands for both writes
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {SEARCH} WHERE {SEARCH} MATCH 'invoice'")
        assert cursor.fetchall() == []  # not indexed yet
    monkeypatch.setattr(search_index, "BATCH", 1)
    Run.objects.create(task_result_id="n2", task_name="examples.add", args=["invoice"])
    assert search_index_catch_up(limit=10) == 2
    assert search_index_pending() == 0
    assert runs_matching_text("shipped", limit=10) == [run.id]
    assert sorted(runs_matching_text("invoice", limit=10)) == sorted(Run.objects.values_list("id", flat=True))


@pytest.mark.django_db
def test_a_catch_up_with_nothing_noted_takes_no_write_lock():
    _reset_index()
    with CaptureQueriesContext(connection) as queries:
        assert search_index_catch_up() == 0
    assert [q["sql"] for q in queries.captured_queries] == [f"SELECT 1 FROM {PENDING} LIMIT 1"]


@pytest.mark.django_db(transaction=True)
def test_a_search_while_another_writer_holds_the_database_answers_at_once_from_the_index():
    Run.objects.create(task_result_id="old", task_name="examples.add", args=["parcel"])
    search_index_catch_up()
    Run.objects.create(task_result_id="new", task_name="examples.add", args=["parcel"])
    other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.1, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        started = time.monotonic()
        found = runs_matching_text("parcel", limit=10)
        assert time.monotonic() - started < 2
        assert found == [Run.objects.get(task_result_id="old").id]  # the newest waits for the next catch-up
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert len(runs_matching_text("parcel", limit=10)) == 2


@pytest.mark.django_db(transaction=True)
def test_migrating_back_and_forth_keeps_the_index_exact():
    Run.objects.create(task_result_id="m1", task_name="examples.add", args=["kilo"])
    Run.objects.filter(task_result_id="m1").update(outcome='"lima"')
    try:
        call_command("migrate", "taskcenter", "0027", verbosity=0)
        # 0025's triggers again: the noted run was indexed on the way back, writes index at once.
        assert len(runs_matching_text("lima", limit=10)) == 1
        Run.objects.filter(task_result_id="m1").update(outcome='"mike"')
        assert runs_matching_text("lima", limit=10) == []
    finally:
        call_command("migrate", "taskcenter", verbosity=0)
    Run.objects.filter(task_result_id="m1").update(outcome='"november"')
    assert runs_matching_text("mike", limit=10) == []
    assert len(runs_matching_text("november", limit=10)) == 1
    assert len(runs_matching_text("kilo", limit=10)) == 1


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_the_monitor_indexes_a_finished_run_within_seconds(celery_monitor):
    """A real worker runs a real task; the real monitor indexes its run and result without any search."""
    from taskcenter.services.launch import run_launch
    from tests.conftest import wait_for

    run = run_launch(task_name="examples.add", args=[40, 2])
    wait_for(lambda: Run.objects.filter(id=run.id, recorded_state="SUCCESS").exists(), timeout=30,
             message="the run to succeed")  # fmt: skip
    wait_for(lambda: search_index_pending() == 0, timeout=10, message="the monitor to index the run")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT rowid FROM {SEARCH} WHERE {SEARCH} MATCH '42'")  # the result, read straight
        assert cursor.fetchall() == [(run.id,)]
