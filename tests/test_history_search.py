"""History's search: names in any case, task id prefixes, a text search over arguments and outcome, run times.

The text search reads the full-text index of migration 0023 (FTS5 on SQLite, a GIN index
on PostgreSQL), kept by triggers: these tests write runs and results as the workers and
the retention cleanup do and read History's page, the API and the index itself.
"""

import json
import re
from datetime import timedelta
from importlib import import_module

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskcenter.models import Run
from taskcenter.selectors.runs import (
    POSTGRESQL_SEARCH_DOCUMENT,
    RunFilters,
    runs_count,
    runs_matching_text,
    runs_page,
    search_words,
)
from tests.api_support import make_user, token_client

pytestmark = pytest.mark.django_db

MIGRATION = import_module("taskcenter.migrations.0023_history_search")


def listed(response) -> set[str]:
    assert response.status_code == 200, response.content[:300]
    return {run.task_id for run in response.context["page"].runs}


@pytest.fixture
def runs():
    """Runs of several tasks, queues, workers, schedules and launchers, with arguments and outcomes."""
    alice = get_user_model().objects.create_user(username="alice")
    now = timezone.now()
    specs = [
        # task id, task, queue, worker, schedule, launcher, args, kwargs, result status and text
        ("s-add-1", "examples.add", "high", "w1@host", "", alice, [20003, 4], {}, "SUCCESS", "20007"),
        ("s-add-2", "examples.add", "high", "w2@host", "nightly", None, [1, 2], {}, "SUCCESS", "3"),
        ("s-proc-1", "examples.process_items", "low", "w1@host", "", alice, [], {"items": 5}, "STARTED", None),
        ("s-proc-2", "examples.process_items", "low", "w2@host", "nightly", None, [], {"customer": "Zhang Wei"},
         "SUCCESS", json.dumps({"processed": 5, "note": "invoice 7781 sent"})),
        ("s-fail-1", "examples.fail", "default", "w1@host", "", alice, ["boom"], {}, "FAILURE",
         json.dumps({"exc_type": "ExampleFailure", "exc_message": ["connection refused by db-primary"]})),
        ("s-zh-1", "examples.sum_batch", "default", "w2@host", "", None, [], {"备注": "订单 已发货"}, "SUCCESS", "9"),
        ("other-1", "other.client_task", "default", "w3@host", "", None, [], {}, "SUCCESS", '"ok"'),
    ]  # fmt: skip
    for n, (task_id, task, queue, worker, schedule, launcher, args, kwargs, status, result) in enumerate(specs):
        created = now - timedelta(minutes=10 * (len(specs) - n))
        Run.objects.create(
            task_result_id=task_id, task_name=task, queue=queue, worker=worker, periodic_task_name=schedule,
            launched_by=launcher, args=args, kwargs=kwargs, created_at=created,
        )  # fmt: skip
        TaskResult.objects.create(task_id=task_id, status=status, result=result, worker=worker)
        TaskResult.objects.filter(task_id=task_id).update(  # date_done is "auto_now" on create
            date_started=created + timedelta(seconds=n + 1), date_done=created + timedelta(seconds=10 * n + 2)
        )
    return now


@pytest.mark.parametrize(
    "query, expected",
    [
        ("task_name=PROCESS", {"s-proc-1", "s-proc-2"}),
        ("task_name=Examples.Add", {"s-add-1", "s-add-2"}),
        ("task_name=examples.add", {"s-add-1", "s-add-2"}),
        ("task_name=examples", {"s-add-1", "s-add-2", "s-proc-1", "s-proc-2", "s-fail-1", "s-zh-1"}),
        ("task_name=other.client_task", {"other-1"}),  # a name no catalogue knows: exact
        ("task_name=nothing-like-it", set()),
        ("queue=HI", {"s-add-1", "s-add-2"}),
        ("queue=Lo", {"s-proc-1", "s-proc-2"}),
        ("worker=w1@host", {"s-add-1", "s-proc-1", "s-fail-1"}),
        ("schedule=nightly", {"s-add-2", "s-proc-2"}),
        ("launched_by=alice", {"s-add-1", "s-proc-1", "s-fail-1"}),
        ("task_id=s-add-1", {"s-add-1"}),
        ("task_id=s-proc", {"s-proc-1", "s-proc-2"}),
        ("task_id=zzz", set()),
        ("text=20003", {"s-add-1"}),
        ("text=zhang", {"s-proc-2"}),
        ("text=invoice 7781", {"s-proc-2"}),
        ("text=INVOICE", {"s-proc-2"}),
        ("text=refused", {"s-fail-1"}),
        ("text=refus db", {"s-fail-1"}),
        ("text=ExampleFailure", {"s-fail-1"}),
        ("text=订单", {"s-zh-1"}),
        ("text=invoice refused", set()),
        ("text=nowhere-to-be-found", set()),
        ("text=!!!", set()),
        # combined
        ("task_name=process&worker=w2@host", {"s-proc-2"}),
        ("task_name=examples&launched_by=alice&state=FAILURE", {"s-fail-1"}),
        ("queue=L&state=SUCCESS", {"s-proc-2", "s-zh-1", "other-1"}),
        ("text=nightly&schedule=nightly", set()),
        ("text=items&task_name=proc&launched_by=alice", {"s-proc-1"}),
        ("text=7781&worker=w1@host", set()),
        ("task_id=s-&schedule=nightly&queue=HIGH", {"s-add-2"}),
        ("task_id=s-add&text=20003", {"s-add-1"}),
        ("state=SUCCESS&task_name=ADD&worker=w2@host&schedule=nightly", {"s-add-2"}),
    ],
)
def test_each_filter_alone_and_combined_finds_exactly_its_runs(staff_client, runs, query, expected):
    assert listed(staff_client.get(f"/runs/?{query}")) == expected


def test_the_api_and_the_count_take_the_same_filters(runs):
    client = token_client(make_user("reader"))
    response = client.get("/api/v1/runs/", {"task": "process", "search": "zhang"})
    assert response.status_code == 200, response.content
    assert [run["task_id"] for run in response.json()["results"]] == ["s-proc-2"]
    assert response.json()["search_capped"] is False
    response = client.get("/api/v1/runs/count/", {"queue": "LOW", "task_id": "s-proc"})
    assert response.json() == {"count": 2, "capped": False}
    assert runs_count(RunFilters(text="refused"), limit=10) == (1, False)


def test_several_matching_names_page_through_every_run_once_in_page_order(runs):
    examples = Run.objects.filter(task_name__startswith="examples.")
    expected = list(examples.order_by("-created_at", "-id").values_list("id", flat=True))
    for filters in (RunFilters(task_name="EXAMPLES"), RunFilters(task_name="examples", text="")):
        seen, page = [], runs_page(filters, page_size=2)
        pages = [page]
        while True:
            seen += [run.pk for run in page.runs]
            if page.older_cursor is None:
                break
            page = runs_page(filters, before=page.older_cursor, page_size=2)
            pages.append(page)
        assert seen == expected
        for older, newer in zip(pages[1:], pages[:-1], strict=True):
            assert [r.pk for r in runs_page(filters, after=older.newer_cursor, page_size=2).runs] == [
                r.pk for r in newer.runs
            ]


def test_a_text_search_pages_by_key_with_the_usual_cursors(runs):
    for n in range(5):
        Run.objects.create(task_result_id=f"pg{n}", task_name="examples.add", kwargs={"tag": "pageme"})
    first = runs_page(RunFilters(text="pageme"), page_size=2)
    second = runs_page(RunFilters(text="pageme"), before=first.older_cursor, page_size=2)
    third = runs_page(RunFilters(text="pageme"), before=second.older_cursor, page_size=2)
    ids = [run.task_id for page in (first, second, third) for run in page.runs]
    assert sorted(ids) == [f"pg{n}" for n in range(5)] and third.older_cursor is None
    back = runs_page(RunFilters(text="pageme"), after=second.newer_cursor, page_size=2)
    assert [r.pk for r in back.runs] == [r.pk for r in first.runs]


def test_a_search_matching_more_runs_than_it_reads_says_so(staff_client, settings):
    settings.TASKCENTER_HISTORY_SCAN_LIMIT = 100
    Run.objects.bulk_create(
        [Run(task_result_id=f"many{n}", task_name="examples.add", args=["common"]) for n in range(130)]
    )
    assert len(runs_matching_text("common", limit=100)) == 100
    response = staff_client.get("/runs/?text=common")
    assert response.context["page"].search_capped
    assert 'id="search-capped"' in response.content.decode()
    assert runs_count(RunFilters(text="common"), limit=1000) == (100, True)


def test_a_secret_argument_is_indexed_masked_only(runs):
    from taskcenter.secret_arguments import MASK

    Run.objects.create(
        task_result_id="secret-1", task_name="examples.connect", kwargs={"host": "db1", "password": MASK},
        secrets="sealed-not-indexed-hunter2",
    )  # fmt: skip
    assert runs_matching_text("hunter2", limit=10) == []
    assert runs_matching_text("sealed", limit=10) == []
    assert [Run.objects.get(pk=pk).task_id for pk in runs_matching_text("db1 password", limit=10)] == ["secret-1"]


def test_the_index_follows_argument_and_outcome_changes_and_deletes(runs):
    run = Run.objects.get(task_result_id="s-add-2")
    assert runs_matching_text("rewritten", limit=10) == []
    Run.objects.filter(pk=run.pk).update(outcome="rewritten outcome")
    assert runs_matching_text("rewritten", limit=10) == [run.pk]
    Run.objects.filter(pk=run.pk).update(outcome="")
    assert runs_matching_text("rewritten", limit=10) == []
    TaskResult.objects.filter(task_id="s-add-2").update(status="SUCCESS", result='"fresh result 4242"')
    assert runs_matching_text("4242", limit=10) == [run.pk]
    Run.objects.filter(pk=run.pk).delete()
    assert runs_matching_text("4242", limit=10) == []


def test_a_result_stored_by_a_backend_sets_the_outcome_a_retry_only_while_unfinished(runs):
    Run.objects.create(task_result_id="r1", task_name="examples.flaky")
    TaskResult.objects.create(task_id="r1", status="RETRY", result='{"exc_message": ["flaky once"]}')
    assert "flaky once" in Run.objects.get(task_result_id="r1").outcome
    TaskResult.objects.filter(task_id="r1").update(status="SUCCESS", result='"finally"')
    assert Run.objects.get(task_result_id="r1").outcome == '"finally"'
    TaskResult.objects.filter(task_id="r1").update(status="RETRY", result='"late retry"')
    assert Run.objects.get(task_result_id="r1").outcome == '"finally"'


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite plan")
def test_the_text_search_reads_the_fts5_index(runs):
    with CaptureQueriesContext(connection) as queries:
        runs_matching_text("invoice", limit=100)
    (sql,) = [q["sql"] for q in queries.captured_queries if " MATCH " in q["sql"]]
    with connection.cursor() as cursor:
        plan = " ".join(row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall())
    assert re.search(r"SCAN taskcenter_run_search VIRTUAL TABLE INDEX \d+:M", plan), plan
    assert "TEMP B-TREE" not in plan, plan  # the rowid order is the index's own


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL plan")
def test_the_text_search_reads_the_gin_index_on_postgresql(runs):
    Run.objects.bulk_create([Run(task_result_id=f"bulk{n}", task_name="x", args=[n]) for n in range(2000)])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE taskcenter_run")
        cursor.execute(
            f"EXPLAIN SELECT id FROM taskcenter_run WHERE {POSTGRESQL_SEARCH_DOCUMENT}"
            " @@ to_tsquery('simple'::regconfig, %s) ORDER BY id DESC LIMIT 2000",
            ["invoice:*"],
        )
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "run_search" in plan, plan
    assert [Run.objects.get(pk=pk).task_id for pk in runs_matching_text("INVOICE", limit=10)] == ["s-proc-2"]


def test_the_postgresql_query_repeats_the_indexed_expression_exactly():
    assert import_module("taskcenter.migrations.0025_search_cjk").POSTGRESQL_DOCUMENT == POSTGRESQL_SEARCH_DOCUMENT


def test_the_sqlite_function_and_the_postgresql_expression_space_the_same_characters():
    from taskcenter.search_text import CJK_CLASS

    assert import_module("taskcenter.migrations.0025_search_cjk").CJK_CLASS == CJK_CLASS


def test_history_shows_wait_and_run_times_and_sorts_by_run_time(staff_client, runs):
    response = staff_client.get("/runs/?sort=runtime")
    page = response.context["page"]
    runtimes = [run.duration for run in page.runs]
    assert runtimes == sorted(runtimes, reverse=True) and None not in runtimes
    assert page.runs[0].task_id == "other-1"  # the longest: 62 s - 7 s
    assert page.sorted_among == Run.objects.count()
    assert "s-proc-1" not in {run.task_id for run in page.runs}  # still running: no run time
    body = response.content.decode()
    assert "Run time" in body and "Wait" in body and 'id="sorted-among"' in body
    assert "55.00 s" in body  # other-1: 62 s - 7 s
    run = Run.objects.get(task_result_id="s-add-2")
    assert run.wait_time == timedelta(seconds=2) and run.duration == timedelta(seconds=10)
    filtered = staff_client.get("/runs/?sort=runtime&task_name=add&launched_by=alice").context["page"]
    assert [r.task_id for r in filtered.runs] == ["s-add-1"]


def test_the_wait_counts_from_the_eta_when_later_and_a_recorded_run_keeps_its_times():
    created = timezone.now() - timedelta(hours=1)
    run = Run.objects.create(
        task_result_id="eta-1", task_name="x", created_at=created, eta=created + timedelta(minutes=5),
        recorded_state="SUCCESS", recorded_started_at=created + timedelta(minutes=6),
        recorded_finished_at=created + timedelta(minutes=7),
    )  # fmt: skip
    run = Run.objects.get(pk=run.pk)
    assert run.wait_time == timedelta(minutes=1) and run.duration == timedelta(minutes=1)
    assert [r.task_id for r in runs_page(RunFilters(sort="runtime")).runs] == ["eta-1"]


def test_search_is_open_to_viewers_and_closed_to_others(runs, viewer_client, client, django_user_model):
    assert listed(viewer_client.get("/runs/?text=zhang&task_name=PROC")) == {"s-proc-2"}
    client.logout()
    assert client.get("/runs/?text=zhang").status_code == 302
    user = django_user_model.objects.create_user(username="plain", password="pw-123456789")
    client.force_login(user)
    assert client.get("/runs/?text=zhang").status_code == 403
    anonymous = client.__class__()
    assert anonymous.get("/api/v1/runs/", {"search": "zhang"}).status_code in (401, 403)


def test_the_filter_link_keeps_the_filters(staff_client, runs):
    body = staff_client.get("/runs/?task_name=process&text=zhang").content.decode()
    assert 'id="filter-link"' in body and "text=zhang" in body


TEXT = st.text(st.characters(codec="utf-8"), max_size=300)


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(
    params=st.fixed_dictionaries(
        {},
        optional={
            "task_name": TEXT,
            "queue": TEXT,
            "task_id": TEXT,
            "text": TEXT,
            "sort": TEXT,
            "state": TEXT,
            "worker": TEXT,
            "schedule": TEXT,
            "launched_by": TEXT,
            "before": TEXT,
            "after": TEXT,
        },
    )  # fmt: skip
)
def test_no_search_input_is_answered_with_a_server_error(admin_client, params):
    assert admin_client.get("/runs/", params).status_code < 500
    api = {"task" if k == "task_name" else "search" if k == "text" else k: v for k, v in params.items()}
    assert admin_client.get("/api/v1/runs/", api).status_code < 500
    assert admin_client.get("/api/v1/runs/count/", api).status_code < 500


@pytest.mark.parametrize("text", ['"', "*", "a OR b", "NEAR(a b)", "col:x", "-x", "a AND", "^x", "x'y", "(", "&|!:*"])
def test_search_syntax_characters_are_words_not_queries(staff_client, runs, text):
    assert staff_client.get("/runs/", {"text": text}).status_code == 200


def test_a_count_over_several_names_counts_each_name_on_its_index(runs):
    assert runs_count(RunFilters(task_name="EXAMPLES"), limit=100) == (6, False)
    assert runs_count(RunFilters(task_name="EXAMPLES"), limit=3) == (3, True)
    assert runs_count(RunFilters(queue="L"), limit=100) == (5, False)  # low and default


def test_a_user_saves_opens_and_deletes_named_filters_of_their_own(staff_client, runs):
    from django.test import Client

    from taskcenter.models import SavedFilter

    other = Client()
    other.force_login(make_user("another-viewer"))

    response = staff_client.post(
        "/runs/saved/", {"name": " failing imports ", "query": "task_name=fail&state=FAILURE&before=99"}
    )
    assert response.status_code == 302 and response["Location"] == "/runs/?task_name=fail&state=FAILURE"
    saved = SavedFilter.objects.get()
    assert (saved.name, saved.query) == ("failing imports", "task_name=fail&state=FAILURE")
    body = staff_client.get("/runs/").content.decode()
    assert 'id="saved-filters"' in body and 'href="?task_name=fail&amp;state=FAILURE"' in body
    assert 'id="saved-filters"' not in other.get("/runs/").content.decode()  # only its user sees it
    assert other.post(f"/runs/saved/{saved.pk}/delete/").status_code == 404  # nor deletes it
    staff_client.post("/runs/saved/", {"name": "failing imports", "query": "queue=low"})
    assert SavedFilter.objects.get().query == "queue=low"  # the same name replaces
    assert staff_client.post(f"/runs/saved/{saved.pk}/delete/").status_code == 302
    assert not SavedFilter.objects.exists()


@pytest.mark.parametrize("data", [{"name": "", "query": "a=1"}, {"name": "x" * 101, "query": "a=1"}, {"name": "n"}])
def test_a_saved_filter_needs_a_name_and_a_filter(staff_client, data):
    from taskcenter.models import SavedFilter

    response = staff_client.post("/runs/saved/", data, follow=True)
    assert response.status_code == 200 and not SavedFilter.objects.exists()
    assert any(m.level_tag == "error" for m in response.context["messages"])


def test_saved_filters_need_the_history_permission_and_a_post(client, django_user_model, staff_client):
    assert staff_client.get("/runs/saved/").status_code == 405
    assert client.post("/runs/saved/", {"name": "n", "query": "a=1"}).status_code == 302  # to log in
    user = django_user_model.objects.create_user(username="plain2", password="pw-123456789")
    client.force_login(user)
    assert client.post("/runs/saved/", {"name": "n", "query": "a=1"}).status_code == 403
    assert client.post("/runs/saved/1/delete/").status_code == 403


@settings(max_examples=40, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(name=TEXT, query=TEXT)
def test_no_saved_filter_input_is_answered_with_a_server_error(admin_client, name, query):
    assert admin_client.post("/runs/saved/", {"name": name, "query": query}).status_code < 500


def _run_with_text(task_id: str, *, note: str, result: str | None = None) -> Run:
    run = Run.objects.create(task_result_id=task_id, task_name="examples.add", queue="default", kwargs={"note": note})
    if result is not None:
        TaskResult.objects.create(task_id=task_id, status="SUCCESS", result=result)
    return run


def test_chinese_text_without_spaces_is_found_by_any_part_of_it(staff_client):
    shipped = _run_with_text("zh-shipped", note="订单已发货给张伟", result=json.dumps("同步完成，库存不足3件"))
    pending = _run_with_text("zh-pending", note="订单待付款")

    for text, expected in [
        ("订单", {shipped, pending}),
        ("发货", {shipped}),
        ("已发货给张", {shipped}),
        ("库存不足", {shipped}),  # in the result, written by the results table's trigger
        ("不足3件", {shipped}),
        ("付款 订单", {pending}),
        ("货订", set()),  # both characters are there, not next to each other
        ("发货 付款", set()),
    ]:
        assert set(runs_matching_text(text, limit=10)) == {run.pk for run in expected}, text
    assert listed(staff_client.get("/runs/", {"text": "张伟"})) == {"zh-shipped"}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    note=st.text(alphabet="订单已发货给张伟同步完成库存不足のカナ한국어 ab12", min_size=1, max_size=16), data=st.data()
)
def test_any_run_of_words_cut_from_the_text_finds_the_run(note, data):
    start = data.draw(st.integers(0, len(note) - 1))
    part = note[start : data.draw(st.integers(start + 1, len(note)))]
    run = _run_with_text("zh-any", note=note)
    try:
        if search_words(part):
            found = runs_matching_text(part, limit=10)
            # A cut inside a Latin word or number only finds the word by its start.
            cut_inside = re.search(r"[a-z0-9]$", note[:start]) and re.match(r"[a-z0-9]", part)
            assert cut_inside or run.pk in found, (note, part)
    finally:
        run.delete()


@settings(max_examples=60, deadline=None)
@given(text=st.one_of(
    st.text(alphabet="订单已发货 ab\\u4e0d\"{}:,0123456789DdFfxX", max_size=40),
    st.builds(json.dumps, st.text(alphabet="订单已发货给张伟のカナ한국어 ab😀\\\"", max_size=20)),
))  # fmt: skip
def test_the_database_function_reads_text_as_the_python_one_does(text):
    """The index's SQL function (Python's on SQLite, migration 0025's on PostgreSQL) matches ``searchable``."""
    from taskcenter.search_text import SQL_FUNCTION, searchable

    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {SQL_FUNCTION}(%s)", [text])
        assert cursor.fetchone()[0] == searchable(text)
