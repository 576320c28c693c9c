"""Filters that no index covers together walk a bounded number of runs, say so, and let the operator go on.

A user and a task (or a source, or a worker and a queue, ...) share no index: the page
walks the index of one filter and checks the others on each row. At a million runs a
combination that never matches would walk all of that filter's runs, so the walk stops
after ``TASKCENTER_HISTORY_SCAN_LIMIT`` runs; the page then says so, and its cursor goes
on from the last run looked at, so paging on finds every match once, in order.
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from taskcenter.models import Run
from taskcenter.selectors.runs import RunFilters, runs_filtered, runs_page
from tests.test_failure_and_deadletter_pages_bounded import at_scale_statistics, big_table_queries
from tests.test_history_queries_bounded import plan_problems

pytestmark = pytest.mark.django_db

LIMIT = 100


@pytest.fixture
def scan_limit(settings):
    settings.TASKCENTER_HISTORY_SCAN_LIMIT = LIMIT
    return LIMIT


@pytest.fixture
def alice_runs(scan_limit):
    """Alice launched 450 runs of examples.add and, among the oldest, 3 of examples.fail."""
    alice = get_user_model().objects.create_user(username="alice")
    now = timezone.now()
    rows = [
        Run(
            task_result_id=f"a{n}", task_name="examples.fail" if n in (300, 301, 449) else "examples.add",
            queue="low" if n % 2 else "high", source="api" if n == 10 else "web", launched_by=alice,
            created_at=now - timedelta(seconds=n),
        )
        for n in range(450)
    ]  # fmt: skip
    others = [
        Run(task_result_id=f"o{n}", task_name="examples.fail", created_at=now - timedelta(seconds=n)) for n in range(50)
    ]
    Run.objects.bulk_create(rows + others)
    return alice


def test_a_combination_that_matches_nothing_nearby_walks_at_most_the_limit_and_says_so(staff_client, alice_runs):
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get("/runs/?launched_by=alice&task_name=examples.fail")
    assert response.status_code == 200
    page = response.context["page"]
    assert page.runs == [] and page.scan_limited and page.scanned == LIMIT
    assert page.scan_index == "launched by alice"
    # The walk read at most LIMIT rows of the run table, in bounded statements.
    walked = [sql for sql in big_table_queries(queries) if '"taskcenter_run"' in sql]
    assert walked and all(" LIMIT " in sql for sql in walked)
    assert sum(int(re.search(r" LIMIT (\d+)", sql)[1]) for sql in walked) <= LIMIT
    # The page says so and links on from the 100th run of alice it looked at.
    last_looked_at = Run.objects.get(task_result_id=f"a{LIMIT - 1}").pk
    html = response.content.decode()
    assert 'id="scan-limited"' in html and "looked at 100 runs (launched by alice)" in html
    assert "None of the runs looked at match." in html
    continue_link = f"?launched_by=alice&amp;task_name=examples.fail&amp;before={last_looked_at}"
    assert f'href="{continue_link}">search the next 100 older runs</a>' in html


def test_following_the_continue_link_finds_every_match_once_in_order(staff_client, alice_runs):
    filters = RunFilters(launched_by="alice", task_name="examples.fail")
    expected = list(runs_filtered(filters).values_list("task_result_id", flat=True))
    assert expected == ["a300", "a301", "a449"]
    base = "/runs/?launched_by=alice&task_name=examples.fail"
    url, seen, pages = base, [], 0
    while url:
        page = staff_client.get(url).context["page"]
        pages += 1
        seen += [run.task_id for run in page.runs]
        assert page.scanned <= LIMIT
        url = f"{base}&before={page.older_cursor}" if page.older_cursor else ""
    assert seen == expected
    assert pages == 5  # 100 runs looked at per page: 450 runs of alice, the last page reaches their end


def test_paging_newer_from_the_oldest_run_walks_up_and_finds_every_match_once(alice_runs):
    filters = RunFilters(launched_by="alice", task_name="examples.fail")
    oldest = Run.objects.order_by("created_at", "id").first()
    assert oldest.task_id == "a449"  # the cursor itself is not shown again
    seen, cursor = [], oldest.pk
    while cursor is not None:
        page = runs_page(filters, after=cursor, page_size=2)
        seen = [run.task_id for run in page.runs] + seen
        assert page.scanned <= LIMIT
        if page.scan_limited:
            assert page.scan_direction == "after" and page.scan_cursor == page.newer_cursor
        cursor = page.newer_cursor
    assert seen == ["a300", "a301"]


def test_a_combination_that_often_matches_reads_little_more_than_a_page_and_is_exact(alice_runs):
    """A page filled early stops early, with the usual cursors; pages of it list every match once."""
    filters = RunFilters(launched_by="alice", queue="low")
    with CaptureQueriesContext(connection) as queries:
        page = runs_page(filters, page_size=10)
    assert not page.scan_limited and page.scanned <= 4 * 11
    assert [run.task_id for run in page.runs] == [f"a{n}" for n in range(1, 21, 2)]
    assert len(queries) <= 4
    seen = []
    while True:
        seen += [run.task_id for run in page.runs]
        if page.older_cursor is None:
            break
        page = runs_page(filters, before=page.older_cursor, page_size=10)
    assert seen == list(runs_filtered(filters).values_list("task_result_id", flat=True))


def test_a_source_alone_has_no_index_of_its_own_and_is_bounded_too(staff_client, alice_runs):
    page = staff_client.get("/runs/?source=api").context["page"]
    assert [run.task_id for run in page.runs] == ["a10"]
    assert page.scan_limited and page.scan_index == "" and page.scanned == LIMIT
    assert "looked at 100 runs and found" in staff_client.get("/runs/?source=api").content.decode()


def test_covered_filters_are_one_walk_and_never_limited(alice_runs):
    for filters in [
        RunFilters(launched_by="alice"),
        RunFilters(task_name="examples.fail"),
        RunFilters(task_name="examples.fail", state="PENDING"),
        RunFilters(task_id="a449", launched_by="alice", queue="low"),
    ]:
        page = runs_page(filters)
        assert not page.scan_limited, filters
    assert [r.task_id for r in runs_page(RunFilters(task_id="a449", launched_by="alice", queue="low")).runs] == ["a449"]


def test_a_time_range_bounds_the_walk_and_finds_the_old_matches_at_once(alice_runs):
    newest = Run.objects.get(task_result_id="a300").created_at
    filters = RunFilters(
        launched_by="alice",
        task_name="examples.fail",
        created_from=newest - timedelta(seconds=120),
        created_to=newest + timedelta(seconds=1),
    )
    page = runs_page(filters)
    assert [run.task_id for run in page.runs] == ["a300", "a301"]
    assert page.scan_limited  # 121 runs of alice in that range (a300 to a420): the walk stopped at 100
    rest = runs_page(filters, before=page.older_cursor)
    assert rest.runs == [] and not rest.scan_limited and rest.scanned == 21


def test_the_api_says_the_page_was_limited_and_next_searches_on(staff_client, alice_runs):
    response = staff_client.get("/api/v1/runs/?launched_by=alice&task=examples.fail")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["results"] == [] and body["scan_limited"] is True
    last_looked_at = Run.objects.get(task_result_id=f"a{LIMIT - 1}").pk
    assert body["next"].endswith(f"before={last_looked_at}")
    found = []
    url = body["next"]
    while url:
        body = staff_client.get(url).json()
        found += [run["task_id"] for run in body["results"]]
        url = body["next"]
    assert found == ["a300", "a301", "a449"]
    assert staff_client.get("/api/v1/runs/?task=examples.fail").json()["scan_limited"] is False


def test_the_api_count_of_filters_sharing_no_index_looks_at_most_at_the_limit(staff_client, alice_runs, settings):
    settings.TASKCENTER_API_COUNT_LIMIT = 1000
    count = staff_client.get("/api/v1/runs/count/?launched_by=alice&task=examples.fail").json()
    assert count == {"count": 0, "capped": True}  # none among the 100 newest runs of alice: at least 0
    count = staff_client.get("/api/v1/runs/count/?launched_by=alice&queue=low").json()
    assert count == {"count": 50, "capped": True}  # 50 among the 100 newest, more further back
    assert staff_client.get("/api/v1/runs/count/?schedule=none&source=api").json() == {"count": 0, "capped": False}
    settings.TASKCENTER_HISTORY_SCAN_LIMIT = 1000
    count = staff_client.get("/api/v1/runs/count/?launched_by=alice&task=examples.fail").json()
    assert count == {"count": 3, "capped": False}
    settings.TASKCENTER_API_COUNT_LIMIT = 2
    count = staff_client.get("/api/v1/runs/count/?launched_by=alice&task=examples.fail").json()
    assert count == {"count": 2, "capped": True}


@pytest.mark.skipif(connection.vendor != "sqlite", reason="query plans are checked on SQLite")
@pytest.mark.parametrize(
    "url",
    [
        "/runs/?launched_by=alice&task_name=examples.fail",
        "/runs/?launched_by=alice&task_name=examples.fail&before={a150}",
        "/runs/?launched_by=alice&task_name=examples.fail&after={a449}",
        "/runs/?source=api",
        "/runs/?queue=low&worker=w1",
        "/runs/?task_name=examples.add&state=PENDING&launched_by=alice&source=web",
        "/api/v1/runs/count/?launched_by=alice&task=examples.fail",
    ],
)
def test_each_statement_of_a_limited_page_walks_an_index_with_a_limit(staff_client, alice_runs, url):
    at_scale_statistics()
    ids = {f"a{n}": Run.objects.get(task_result_id=f"a{n}").pk for n in (150, 449)}
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(url.format(**ids))
    assert response.status_code == 200
    bad = {sql: plan_problems(sql) for sql in big_table_queries(queries) if plan_problems(sql)}
    assert bad == {}


def test_limited_history_is_refused_to_a_user_who_may_not_view_runs(client, django_user_model, alice_runs):
    user = django_user_model.objects.create_user(username="plain", password="pw-123456789")
    client.force_login(user)
    assert client.get("/runs/?launched_by=alice&task_name=examples.fail&before=5").status_code == 403
    assert client.get("/api/v1/runs/?launched_by=alice&task=examples.fail").status_code == 403


def test_a_limited_newer_page_links_on_to_newer_runs(staff_client, alice_runs):
    oldest = Run.objects.get(task_result_id="a449").pk
    response = staff_client.get(f"/runs/?launched_by=alice&task_name=examples.fail&after={oldest}")
    page = response.context["page"]
    assert page.scan_limited and page.runs == [] and page.scan_direction == "after"
    html = response.content.decode()
    next_newer = Run.objects.get(task_result_id="a349").pk  # the 100th run of alice above the cursor
    assert f'after={next_newer}">search the next 100 newer runs</a>' in html
