"""History and detail pages: filters, keyset pages, no table-wide COUNT, login required."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import Run
from taskcenter.selectors.runs import RunFilters, runs_page

pytestmark = pytest.mark.django_db


def make_run(n: int, *, task_name="examples.add", queue="high", status=None, created_at=None) -> Run:
    task_id = f"task-{n:05d}"
    if status:
        TaskResult.objects.create(task_id=task_id, task_name=task_name, status=status, result="3")
    return Run.objects.create(
        task_result_id=task_id,
        task_name=task_name,
        queue=queue,
        args=[1, 2],
        created_at=created_at or timezone.now(),
    )


def test_pages_walk_the_whole_history_newest_first_without_gaps_or_repeats():
    runs = [make_run(n) for n in range(125)]
    seen, before = [], None
    while True:
        page = runs_page(RunFilters(), before=before, page_size=50)
        seen.extend(run.id for run in page.runs)
        if page.older_cursor is None:
            break
        before = page.older_cursor
    assert seen == sorted((run.id for run in runs), reverse=True)


def test_newer_link_returns_to_the_previous_page():
    [make_run(n) for n in range(120)]
    first = runs_page(RunFilters(), page_size=50)
    second = runs_page(RunFilters(), before=first.older_cursor, page_size=50)
    back = runs_page(RunFilters(), after=second.newer_cursor, page_size=50)
    assert [r.id for r in back.runs] == [r.id for r in first.runs]
    assert back.newer_cursor is None


def test_state_filter_includes_pending_runs_that_have_no_result_yet():
    pending = make_run(1)
    done = make_run(2, status="SUCCESS")
    failed = make_run(3, status="FAILURE")
    assert [r.id for r in runs_page(RunFilters(state="PENDING")).runs] == [pending.id]
    assert [r.id for r in runs_page(RunFilters(state="SUCCESS")).runs] == [done.id]
    assert [r.id for r in runs_page(RunFilters(state="FAILURE")).runs] == [failed.id]


def test_task_queue_and_time_filters_combine():
    now = timezone.now()
    make_run(1, task_name="examples.add", queue="high", created_at=now - timedelta(hours=2))
    match = make_run(2, task_name="examples.add", queue="high", created_at=now)
    make_run(3, task_name="examples.fail", queue="default", created_at=now)
    filters = RunFilters(task_name="examples.add", queue="high", created_from=now - timedelta(minutes=5))
    assert [r.id for r in runs_page(filters).runs] == [match.id]


def test_history_page_runs_a_fixed_number_of_queries_and_never_counts_the_table(staff_client):
    for n in range(120):
        make_run(n, status="SUCCESS" if n % 2 else None)
    with CaptureQueriesContext(connection) as queries:
        response = staff_client.get(reverse("taskcenter:run_list"), {"state": "SUCCESS"})
    assert response.status_code == 200
    sql = [q["sql"].upper() for q in queries.captured_queries]
    assert not any("COUNT(" in statement for statement in sql)
    assert len(sql) <= 5  # session, user, one page query, the user's saved filters (+ savepoint slack)
    assert "Older" in response.content.decode()


def test_history_page_filters_from_the_query_string(staff_client):
    make_run(1, task_name="examples.add", status="SUCCESS")
    make_run(2, task_name="examples.fail", queue="default", status="FAILURE")
    response = staff_client.get(reverse("taskcenter:run_list"), {"state": "FAILURE"})
    page = response.content.decode()
    assert "task-00002" in page and "task-00001" not in page


def test_bad_history_filters_get_400_with_the_reason(staff_client):
    response = staff_client.get(reverse("taskcenter:run_list"), {"state": "EXPLODED", "created_from": "yesterday"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "Select a valid choice" in page and "Enter a valid date/time" in page


def test_run_detail_shows_arguments_result_and_traceback(staff_client):
    run = make_run(7)
    TaskResult.objects.create(
        task_id=run.task_id, status="FAILURE", result='{"exc_type": "ValueError"}', traceback="Traceback: boom"
    )
    response = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id]))
    page = response.content.decode()
    assert response.status_code == 200
    assert "FAILURE" in page and "Traceback: boom" in page and "ValueError" in page


def test_unknown_run_is_404(staff_client):
    assert staff_client.get(reverse("taskcenter:run_detail", args=["nope"])).status_code == 404


@pytest.mark.parametrize("name", ["taskcenter:catalogue", "taskcenter:run_list"])
def test_pages_require_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_pages_refuse_non_staff_users(client, django_user_model):
    user = django_user_model.objects.create_user(username="visitor", password="pw-visitor-1")
    client.force_login(user)
    assert client.get(reverse("taskcenter:catalogue")).status_code == 403
    response = client.post(reverse("taskcenter:launch", args=["examples.add"]), {"args": "[1, 2]"})
    assert response.status_code == 403
    assert not Run.objects.exists()


def test_login_page_is_public(client):
    assert client.get(reverse("login")).status_code == 200


def test_detail_of_a_run_no_worker_has_reported_on_shows_it_pending(staff_client):
    run = make_run(8)  # no TaskResult row yet
    response = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id]))
    assert response.status_code == 200
    assert "PENDING" in response.content.decode()
