"""The Failures and Dead letters pages stay fast at millions of rows: every query they send on the big tables
(runs, results, dead letters, failure groups) is bounded by a LIMIT or a key, counts nothing, and on SQLite
walks an index instead of scanning or sorting the table (EXPLAIN QUERY PLAN, with statistics as at a million
rows). Timings at a million rows are in docs/benchmarks.md (bench/pages_at_scale.py)."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import DeadLetter, FailureGroup, Run

pytestmark = pytest.mark.django_db

BIG_TABLES = ("taskcenter_run", "django_celery_results_taskresult", "taskcenter_deadletter", "taskcenter_failuregroup")
FINGERPRINT = "f" * 40
#: Rows per table and per index entry claimed in sqlite_stat1, so the planner chooses as it would at scale.
ROWS = 1_000_000


@pytest.fixture
def data():
    now = timezone.now()
    FailureGroup.objects.create(
        fingerprint=FINGERPRINT, task_name="examples.fail", exception_type="ExampleFailure", count=30,
        first_seen=now - timedelta(days=3), last_seen=now,
    )  # fmt: skip
    for n in range(30):
        TaskResult.objects.create(task_id=f"r{n}", task_name="examples.fail", status="FAILURE")
        Run.objects.create(
            task_result_id=f"r{n}", task_name="examples.fail", queue="default", recorded_state="FAILURE",
            failure_fingerprint=FINGERPRINT,
        )  # fmt: skip
        DeadLetter.objects.create(
            task_id=f"r{n}" if n < 20 else f"gone-{n}",  # runs r20-r29 have no dead letter
            task_name="examples.fail", reason="failed" if n % 3 else "expired",
            exception_type="ExampleFailure", resolution="" if n % 2 else "replayed",
        )  # fmt: skip


def at_scale_statistics() -> None:
    """Tell SQLite's planner the big tables hold a million rows, as ANALYZE would there."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
        rows = cursor.execute("SELECT tbl, idx, stat FROM sqlite_stat1").fetchall()
        for table, index, stat in rows:
            if table in BIG_TABLES:
                parts = stat.split()
                # Total rows, then rows per distinct prefix: a unique prefix stays unique, the others scale up.
                total = max(int(parts[0]), 1)
                scaled = [str(ROWS)] + [p if p == "1" else str(int(p) * ROWS // total) for p in parts[1:]]
                cursor.execute(
                    "UPDATE sqlite_stat1 SET stat = %s WHERE tbl = %s AND idx IS %s", [" ".join(scaled), table, index]
                )
        cursor.execute("ANALYZE sqlite_schema")  # reload the statistics


def big_table_queries(queries) -> list[str]:
    return [
        q["sql"] for q in queries.captured_queries
        if q["sql"].lstrip().upper().startswith("SELECT") and any(f'"{t}"' in q["sql"] for t in BIG_TABLES)
    ]  # fmt: skip


def problems(sql: str) -> list[str]:
    """What makes ``sql`` grow with the table: a COUNT, no bound, a whole-table scan, a sort of every match."""
    found = []
    if re.search(r"\bCOUNT\(", sql, re.IGNORECASE):
        found.append("counts rows")
    keyed = re.search(r'\."(id|task_id|fingerprint)" IN \(', sql)  # at most a page of keys
    if " LIMIT " not in sql.upper() and not keyed:
        found.append("has no LIMIT and no key")
    if connection.vendor != "sqlite" or keyed:
        return found
    ordered_walk = " LIMIT " in sql.upper() and re.search(r'ORDER BY "\w+"\."id" (DESC|ASC)', sql)
    with connection.cursor() as cursor:
        plan = [row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()]
    for step in plan:
        bare_scan = re.fullmatch(r"SCAN (\S+)( AS \S+)?", step.strip())
        if bare_scan and bare_scan[1] in BIG_TABLES and not ordered_walk:
            found.append(f"scans a whole table ({step})")
        # "RIGHT PART OF ORDER BY": rows come in index order, only ties are sorted, and the LIMIT stops it.
        if "TEMP B-TREE FOR ORDER BY" in step:
            found.append(f"sorts every match ({step})")
    return found


PAGES = [
    "/failures/",
    "/failures/?task_name=examples.fail",
    "/failures/?exception_type=ExampleFailure",
    "/failures/?status=open",
    "/failures/?seen_from=2020-01-01T00:00",
    f"/failures/{FINGERPRINT}/",
    f"/failures/{FINGERPRINT}/?before=20",
    f"/failures/{FINGERPRINT}/?after=5",
    "/deadletters/",
    "/deadletters/?status=",
    "/deadletters/?status=&before=20",
    "/deadletters/?after=3",
    "/deadletters/?task_name=examples.fail",
    "/deadletters/?reason=expired",
    "/deadletters/?exception_type=ExampleFailure",
    "/deadletters/?status=replayed",
    "/deadletters/?status=discarded&task_name=examples.fail&reason=failed&exception_type=ExampleFailure",
    "/deadletters/?status=&created_from=2020-01-01T00:00&created_to=2100-01-01T00:00",
    "/deadletters/?status=&created_from=2020-01-01T00:00&created_to=2100-01-01T00:00&before=20",
    "/deadletters/?status=&created_from=2020-01-01T00:00&after=3",
    "/deadletters/?created_from=2020-01-01T00:00&task_name=examples.fail",
    "/deadletters/?created_to=2100-01-01T00:00&exception_type=ExampleFailure",
]


@pytest.mark.sqlite_only  # reads SQLite's query plans with statistics as at a million rows
@pytest.mark.parametrize("url", PAGES)
def test_every_query_of_the_page_is_bounded_and_walks_an_index(staff_client, data, url):
    at_scale_statistics()
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(url)
    assert response.status_code == 200
    sent = big_table_queries(queries)
    assert sent, "the page read none of the big tables"
    found = [(re.sub(r"^SELECT .*? FROM ", "SELECT ... FROM ", sql), problems(sql)) for sql in sent if problems(sql)]
    assert found == []


@pytest.mark.parametrize(
    "url, form",
    [
        (f"/failures/{FINGERPRINT}/retry/", {}),
        (f"/failures/{FINGERPRINT}/deadletter/", {}),
        ("/deadletters/actions/", {"action": "replay", "scope": "filter", "status": "open"}),
    ],
)
@pytest.mark.usefixtures("data")
def test_the_counts_confirmed_before_a_bulk_action_are_bounded(staff_client, url, form, settings):
    """The confirmation shows how many rows the action takes: read with a LIMIT (the bulk limit + 1), never a COUNT."""
    settings.TASKCENTER_BULK_RETRY_LIMIT = 4
    if connection.vendor == "sqlite":
        at_scale_statistics()
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.post(url, form)
    assert response.status_code == 400  # more than the limit: said so, nothing done
    assert "4" in response.content.decode()
    sent = big_table_queries(queries)
    listed = [sql for sql in sent if "taskcenter_failuregroup" not in sql.split(" WHERE ")[0]]
    assert listed and all(sql.endswith(" LIMIT 5") for sql in listed), listed
    assert not [sql for sql in sent if re.search(r"\bCOUNT\(", sql, re.IGNORECASE)]


def test_a_time_range_pages_through_every_letter_once_in_time_order_ties_included():
    from taskcenter.selectors.deadletters import DeadLetterFilters, deadletters_page

    start = timezone.now() - timedelta(hours=1)
    minutes = [5, 1, 3, 3, 3, 0, 4, 2, 3, 9]  # written out of time order; four at the same time
    ids = {
        DeadLetter.objects.create(task_id=f"t{n}", reason="failed", created_at=start + timedelta(minutes=m)).pk: m
        for n, m in enumerate(minutes)
    }
    DeadLetter.objects.create(task_id="outside", reason="failed", created_at=start - timedelta(minutes=1))
    filters = DeadLetterFilters(status="", created_from=start, created_to=start + timedelta(minutes=9))
    expected = sorted((pk for pk, m in ids.items() if m < 9), key=lambda pk: (ids[pk], pk), reverse=True)

    seen, page = [], deadletters_page(filters, page_size=2)
    pages = [page]
    while True:
        seen += [letter.pk for letter in page.letters]
        if page.older_cursor is None:
            break
        page = deadletters_page(filters, before=page.older_cursor, page_size=2)
        pages.append(page)
    assert seen == expected
    # And back: each newer page is the page seen before it.
    for older, newer in zip(pages[1:], pages[:-1], strict=True):
        back = deadletters_page(filters, after=older.newer_cursor, page_size=2)
        assert [x.pk for x in back.letters] == [x.pk for x in newer.letters]
