"""History stays flat at millions of runs: every query a History page or the runs API sends is bounded.

On SQLite, with statistics as at a million rows, each query on the run or result table
walks an index in page order (or reads by key), never scans a table, never sorts every
match, never counts, and the list reads ``taskcenter_run`` alone: the results of the
page's rows are read by their task ids. Timings at a million runs are in
docs/benchmarks.md (``bench/pages_at_scale.py --history``).
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import RUN_STATES, Run
from taskcenter.selectors.runs import RunFilters, runs_page
from tests.test_failure_and_deadletter_pages_bounded import at_scale_statistics, big_table_queries

pytestmark = pytest.mark.django_db

RUNS = '"taskcenter_run"'
RESULTS = '"django_celery_results_taskresult"'


@pytest.fixture
def data():
    alice = get_user_model().objects.create_user(username="alice")
    now = timezone.now()
    for n, state in enumerate(RUN_STATES * 3):
        Run.objects.create(
            task_result_id=f"h{n}", task_name=["examples.add", "examples.fail"][n % 2], queue=["high", "low"][n % 2],
            worker=f"w{n % 3}@host", periodic_task_name="nightly" if n % 4 == 0 else "", source=["web", "api"][n % 2],
            launched_by=alice if n % 2 else None, created_at=now - timedelta(minutes=n),
            args=["hello world" if n % 3 else "bye"],
        )  # fmt: skip
        if state not in ("PENDING", "RECEIVED"):
            TaskResult.objects.create(task_id=f"h{n}", status=state, worker=f"w{n % 3}@host")
        Run.objects.filter(task_result_id=f"h{n}").update(recorded_state=state)
    return now


def plan_problems(sql: str) -> list[str]:
    """What makes ``sql`` grow with the tables: a COUNT, no bound, a join, a table scan, a sort of every match."""
    found = []
    if re.search(r"\bCOUNT\(", sql, re.IGNORECASE):
        found.append("counts rows")
    keyed = re.search(r'\."(id|task_id)" (IN \(|= )', sql) or re.search(r'"task_id" IN \(', sql)
    if " LIMIT " not in sql.upper() and not keyed:
        found.append("has no LIMIT and no key")
    if RUNS in sql and RESULTS in sql:
        found.append("joins runs and results")
    with connection.cursor() as cursor:
        plan = [row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
    for step in plan:
        scan = re.fullmatch(r"SCAN (\S+)(?: AS \S+)?(.*)", step.strip())
        if scan and scan[1] in ("taskcenter_run", "django_celery_results_taskresult"):
            if "USING" not in scan[2] or " LIMIT " not in sql.upper():
                found.append(f"scans a whole table ({step})")
        if "TEMP B-TREE" in step:
            found.append(f"sorts every match ({step})")
    return found


def history_urls(now) -> list[str]:
    local = timezone.localtime(now)

    def at(minutes: int) -> str:
        return (local - timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M")

    middle = Run.objects.order_by("-created_at", "-id").values_list("id", flat=True)[10]
    urls = ["/runs/"] + [f"/runs/?state={state}" for state in RUN_STATES]
    urls += [
        "/runs/?task_name=examples.add",
        "/runs/?queue=low",
        "/runs/?worker=w1@host",
        "/runs/?schedule=nightly",
        "/runs/?launched_by=alice",
        "/runs/?launched_by=nobody",
        "/runs/?source=api",
        "/runs/?task_id=h3",
        f"/runs/?created_from={at(10)}",
        f"/runs/?created_from={at(15)}&created_to={at(5)}",
        "/runs/?task_name=examples.fail&state=FAILURE",
        "/runs/?queue=low&state=STARTED",
        "/runs/?worker=w1@host&state=SUCCESS",
        "/runs/?launched_by=alice&task_name=examples.fail",
        f"/runs/?state=FAILURE&created_from={at(15)}&created_to={at(5)}",
        f"/runs/?task_name=examples.add&state=SUCCESS&created_from={at(15)}",
        f"/runs/?before={middle}",
        f"/runs/?after={middle}",
        f"/runs/?state=SUCCESS&before={middle}",
        f"/runs/?task_name=examples.add&created_from={at(15)}&before={middle}",
        "/runs/?task_name=EXAMPLES",
        "/runs/?task_name=fail&state=FAILURE",
        "/runs/?queue=LO&state=STARTED",
        "/runs/?queue=o",
        f"/runs/?queue=l&before={middle}",
        "/runs/?task_name=examples&launched_by=alice",
        "/runs/?task_id=h1",
        "/runs/?task_id=h&state=SUCCESS",
        "/runs/?text=hello",
        "/runs/?text=hello world&task_name=ADD&state=SUCCESS",
        f"/runs/?text=hello&before={middle}",
        "/runs/?sort=runtime",
        "/runs/?sort=runtime&task_name=examples",
        "/runs/?sort=runtime&launched_by=alice&task_name=examples.fail",
        "/runs/?sort=runtime&text=hello",
        "/api/v1/runs/?search=hello&task=add",
        "/api/v1/runs/?sort=runtime&queue=HIGH",
        "/api/v1/runs/count/?search=hello",
        "/api/v1/runs/?state=FAILURE&worker=w1@host",
        "/api/v1/runs/?schedule=nightly&launched_by=alice",
        f"/api/v1/runs/?state=PENDING&after={middle}",
    ]
    return urls


@pytest.mark.skipif(connection.vendor != "sqlite", reason="query plans are checked on SQLite")
def test_every_history_query_walks_an_index_reads_runs_alone_and_counts_nothing(staff_client, data):
    at_scale_statistics()
    found = {}
    for url in history_urls(data):
        with CaptureQueriesContext(connection) as queries:
            response = staff_client.get(url)
        assert response.status_code == 200, url
        sent = big_table_queries(queries)
        assert any(RUNS in sql for sql in sent) or "nobody" in url, url  # an unknown user: no run query at all
        bad = [(re.sub(r"^SELECT .*? FROM ", "SELECT ... FROM ", sql), plan_problems(sql)) for sql in sent]
        bad = [b for b in bad if b[1]]
        if bad:
            found[url] = bad
    assert found == {}


@pytest.mark.parametrize("state", RUN_STATES)
def test_each_state_lists_exactly_its_runs(data, state):
    listed = runs_page(RunFilters(state=state)).runs
    assert len(listed) == 3 and {run.state for run in listed} == {state}


def test_the_page_shows_results_read_by_key_and_a_constant_number_of_queries(staff_client, data):
    staff_client.get("/runs/")  # warm the session and the user
    with CaptureQueriesContext(connection) as few:
        staff_client.get("/runs/?page_size=5")
    for n in range(40):
        Run.objects.create(task_result_id=f"more{n}", task_name="examples.add", queue="high")
        TaskResult.objects.create(task_id=f"more{n}", status="SUCCESS")
    with CaptureQueriesContext(connection) as many:
        response = staff_client.get("/runs/")
    assert len(many) == len(few)
    assert "more39" in response.content.decode()


def test_a_time_range_pages_through_every_run_once_in_time_order_ties_included():
    start = timezone.now() - timedelta(hours=1)
    minutes = [5, 1, 3, 3, 3, 0, 4, 2, 3, 9]  # written out of time order; four at the same time
    ids = {
        Run.objects.create(task_result_id=f"t{n}", task_name="x", created_at=start + timedelta(minutes=m)).pk: m
        for n, m in enumerate(minutes)
    }
    Run.objects.create(task_result_id="outside", task_name="x", created_at=start - timedelta(minutes=1))
    filters = RunFilters(created_from=start, created_to=start + timedelta(minutes=9))
    expected = sorted((pk for pk, m in ids.items() if m < 9), key=lambda pk: (ids[pk], pk), reverse=True)

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
        back = runs_page(filters, after=older.newer_cursor, page_size=2)
        assert [r.pk for r in back.runs] == [r.pk for r in newer.runs]


def test_a_cursor_whose_run_was_deleted_still_continues_below_it():
    """Retention may delete the run a cursor names: the page goes on from the run written just before it."""
    now = timezone.now()
    pks = [
        Run.objects.create(task_result_id=f"d{n}", task_name="x", created_at=now - timedelta(minutes=6 - n)).pk
        for n in range(6)
    ]
    Run.objects.filter(pk=pks[3]).delete()
    assert [r.pk for r in runs_page(RunFilters(), before=pks[3]).runs] == pks[2::-1]


@pytest.mark.parametrize(
    "query",
    ["state=BOGUS", "source=nowhere", "before=abc", "created_from=yesterday", "worker=" + "w" * 300],
)
def test_a_bad_history_filter_is_a_clear_400(staff_client, query):
    response = staff_client.get(f"/runs/?{query}")
    assert response.status_code == 400
    assert 'role="alert"' in response.content.decode()


def test_history_filters_are_refused_to_a_user_who_may_not_view_runs(client, django_user_model):
    user = django_user_model.objects.create_user(username="plain", password="pw-123456789")
    client.force_login(user)
    assert client.get("/runs/?worker=w1@host&source=api").status_code == 403
    client.logout()
    assert client.get("/runs/?worker=w1@host").status_code == 302  # to the login page


def test_the_results_admin_list_goes_to_history_and_its_search_to_the_exact_task_id(staff_client):
    url = reverse("admin:django_celery_results_taskresult_changelist")
    response = staff_client.get(url)
    assert (response.status_code, response["Location"]) == (302, reverse("taskcenter:run_list"))
    response = staff_client.get(url, {"q": " abc-123 "})
    assert response["Location"] == reverse("taskcenter:run_list") + "?task_id=abc-123"


def test_the_results_admin_list_is_refused_without_the_view_permission(client, django_user_model):
    user = django_user_model.objects.create_user(username="staffer", password="pw-123456789", is_staff=True)
    client.force_login(user)
    assert client.get(reverse("admin:django_celery_results_taskresult_changelist")).status_code == 403


@pytest.mark.parametrize(
    "extra, lookup",
    [
        ({"worker": "w1@host"}, {"worker": "w1@host"}),
        ({"schedule": "nightly"}, {"periodic_task_name": "nightly"}),
        ({"launched_by": "alice"}, {"launched_by__username": "alice"}),
        ({"source": "api"}, {"source": "api"}),
        ({"task_id": "h6"}, {"task_result_id": "h6"}),
        ({"task_name": "FAIL"}, {"task_name": "examples.fail"}),
        ({"text": "bye"}, {"args": ["bye"]}),
    ],
)
def test_rerunning_every_run_matching_the_filter_keeps_the_new_filters(staff_client, data, extra, lookup):
    """The bulk re-run of "every run matching this filter" re-reads the same filter, new fields included."""
    expected = set(
        Run.objects.filter(recorded_state__in=("SUCCESS", "FAILURE", "REVOKED"), **lookup).values_list(
            "task_result_id", flat=True
        )
    )
    assert 0 < len(expected) < Run.objects.filter(recorded_state__in=("SUCCESS", "FAILURE", "REVOKED")).count()
    response = staff_client.post(reverse("taskcenter:bulk_retry"), {"scope": "filter", "state": "", **extra})
    assert response.status_code == 200
    assert {run.task_id for run in response.context["runs"]} == expected
