"""A run's own record: state precedence, event rules, attempts, and task ids that must not break any page."""

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult

from taskcenter.models import Run
from taskcenter.monitor.runs import RunChanges, RunEvent, _literal, run_apply_event, runs_changes_write
from taskcenter.selectors.runs import RunFilters, runs_page

pytestmark = pytest.mark.django_db

# The last four name other pages beside a run's (``runs/retry/``, ``runs/count/``...).
ODD_IDS = ["x/../y", "a b c", "ünïcødé-日本", "~tilde", "..", "a%2Fb?c=d#e", "retry", "count", "saved", "progress"]


def make_run(task_id: str, **fields) -> Run:
    return Run.objects.create(task_result_id=task_id, task_name="examples.add", queue="high", args=[1, 2], **fields)


def event(kind: str, at: float = 1_700_000_000.0, **fields) -> RunEvent:
    return RunEvent(kind=kind, timestamp=at, hostname=fields.pop("hostname", "w1@host"), **fields)


# --- State precedence --------------------------------------------------------------------


def test_a_recorded_success_wins_over_a_later_revoked_result_and_over_no_result():
    run = make_run("t-1", recorded_state="SUCCESS")
    assert run.state == "SUCCESS"
    TaskResult.objects.create(task_id="t-1", status="REVOKED")
    run = Run.objects.select_related("task_result").get(pk=run.pk)
    assert run.state == "SUCCESS"


def test_the_result_row_wins_over_a_recorded_state_that_is_not_final():
    make_run("t-2", recorded_state="RECEIVED")
    TaskResult.objects.create(task_id="t-2", status="STARTED", date_started=timezone.now())
    assert Run.objects.select_related("task_result").get(task_result_id="t-2").state == "STARTED"


def test_history_filters_by_the_real_state_when_results_are_gone():
    kept = make_run("t-3", recorded_state="SUCCESS", recorded_finished_at=timezone.now())
    waiting = make_run("t-4")
    live = make_run("t-5")
    TaskResult.objects.create(task_id="t-5", status="SUCCESS")
    assert {r.id for r in runs_page(RunFilters(state="SUCCESS")).runs} == {kept.id, live.id}
    assert [r.id for r in runs_page(RunFilters(state="PENDING")).runs] == [waiting.id]


def test_a_run_cancelled_before_it_started_has_no_start_even_with_a_revoked_result():
    run = make_run("t-6", recorded_state="REVOKED", cancelled_at=timezone.now())
    TaskResult.objects.create(task_id="t-6", status="REVOKED")  # date_created is set, date_started is not
    run = Run.objects.select_related("task_result").get(pk=run.pk)
    assert run.state == "REVOKED"
    assert run.started_at is None and run.duration is None and run.finished_at is not None


# --- Event rules ---------------------------------------------------------------------------


def test_final_states_are_sticky_and_a_late_revoke_changes_nothing():
    run = Run(recorded_state="PENDING")
    for kind in ("task-received", "task-started", "task-succeeded", "task-revoked", "task-started"):
        run_apply_event(run, event(kind, text="42" if kind == "task-succeeded" else ""))
    assert run.recorded_state == "SUCCESS"
    assert run.outcome == "42"


def test_a_success_replaces_a_revoke_that_raced_it():
    run = Run(recorded_state="REVOKED")
    run_apply_event(run, event("task-succeeded", text="1"))
    assert run.recorded_state == "SUCCESS"


def test_a_second_start_without_an_end_marks_the_first_attempt_lost():
    run = Run()
    run_apply_event(run, event("task-started", 100.0, pid=11))
    run_apply_event(run, event("task-started", 200.0, hostname="w2@host", pid=22))
    run_apply_event(run, event("task-failed", 210.0, text="ValueError('x')"))
    assert [a["ended"] for a in run.attempts] == ["lost", "failed"]
    assert [a["worker"] for a in run.attempts] == ["w1@host", "w2@host"]
    assert run.worker == "w2@host"
    assert run.recorded_started_at == datetime.fromtimestamp(200.0, UTC)
    assert run.recorded_state == "FAILURE" and run.outcome == "ValueError('x')"


def test_retries_and_requeues_end_attempts():
    run = Run()
    run_apply_event(run, event("task-started", 1.0))
    run_apply_event(run, event("task-retried", 2.0, text="Retry in 1s"))
    run_apply_event(run, event("task-started", 3.0))
    run_apply_event(run, event("task-rejected", 4.0, requeue=True))
    run_apply_event(run, event("task-started", 5.0))
    run_apply_event(run, event("task-succeeded", 6.0))
    assert [a["ended"] for a in run.attempts] == ["retried", "requeued", "succeeded"]
    assert [a["number"] for a in run.attempt_list] == [1, 2, 3]


def test_arguments_of_other_clients_are_read_back_from_their_repr_safely():
    assert _literal("(3, 4)", list) == [3, 4]
    assert _literal("{'a': [1, None]}", dict) == {"a": [1, None]}
    assert _literal("[" * 5000 + "]" * 5000, list)[0].startswith("(not readable")
    assert _literal("(<object at 0x1>,)", list)[0].startswith("(not readable")
    assert _literal("__import__('os')", dict) == {}


def test_the_monitor_creates_a_missing_run_from_task_received_after_the_grace_only():
    changes = RunChanges(clock=lambda: 1000.0)
    changes.handle(
        {"type": "task-received", "uuid": "ext-1", "name": "examples.add", "args": "(3, 4)", "kwargs": "{}",
         "hostname": "w@h", "timestamp": 999.0}
    )  # fmt: skip
    changes.handle({"type": "task-started", "uuid": "ext-1", "hostname": "w@h", "timestamp": 999.5, "pid": 5})
    later = runs_changes_write(changes.take(), now=1001.0)
    assert list(later) == ["ext-1"] and not Run.objects.filter(task_result_id="ext-1").exists()
    runs_changes_write(later, now=1010.0)
    run = Run.objects.get(task_result_id="ext-1")
    assert (run.task_name, run.args, run.source, run.recorded_state) == ("examples.add", [3, 4], "external", "STARTED")
    assert run.attempts[0]["pid"] == 5


def test_the_monitor_keeps_a_richer_row_written_by_the_publisher():
    make_run("own-1", source="web")
    changes = RunChanges(clock=lambda: 1000.0)
    changes.handle({"type": "task-received", "uuid": "own-1", "name": "other", "args": "()", "timestamp": 999.0})
    changes.handle({"type": "task-succeeded", "uuid": "own-1", "result": "3", "timestamp": 999.9})
    assert runs_changes_write(changes.take(), now=1000.0) == {}
    run = Run.objects.get(task_result_id="own-1")
    assert (run.task_name, run.source, run.recorded_state, run.outcome) == ("examples.add", "web", "SUCCESS", "3")


# --- No task id breaks a page ------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ODD_IDS)
def test_any_task_id_links_to_its_own_run_page(staff_client, task_id):
    make_run(task_id, recorded_state="SUCCESS")
    history = staff_client.get(reverse("taskcenter:run_list"))
    assert history.status_code == 200
    url = reverse("taskcenter:run_detail", args=[task_id])
    assert url.encode() in history.content or url.replace("&", "&amp;").encode() in history.content
    page = staff_client.get(url)
    assert page.status_code == 200
    assert page.context["run"].task_id == task_id
    for name in ("run_cancel", "run_retry"):
        assert staff_client.get(reverse(f"taskcenter:{name}", args=[task_id])).status_code < 500


@pytest.mark.parametrize("task_id", ODD_IDS)
def test_any_task_id_is_read_through_the_api_by_the_path_it_is_linked_at(viewer, task_id):
    make_run(task_id, recorded_state="SUCCESS")
    url = reverse("api:run", args=[task_id])
    response = viewer.get(url)
    assert response.status_code == 200, (url, response.content[:300])
    assert response.json()["task_id"] == task_id
    listed = viewer.get(reverse("api:runs")).json()["results"]
    assert [run["task_id"] for run in listed] == [task_id]


def test_every_literal_segment_beside_a_task_id_is_reserved():
    """A page named like ``runs/count/`` next to ``runs/<task id>/``: a run with that id must be linked encoded."""
    from django.urls import URLPattern, URLResolver, get_resolver

    from taskcenter.task_id_path import RESERVED_SEGMENTS

    routes = []

    def walk(patterns, prefix=""):
        for entry in patterns:
            if isinstance(entry, URLResolver):
                walk(entry.url_patterns, prefix + str(entry.pattern))
            elif isinstance(entry, URLPattern):
                routes.append(prefix + str(entry.pattern))

    walk(get_resolver().url_patterns)
    beside = set()
    for route in (r for r in routes if "<taskid:" in r):
        parent, _, rest = route.partition("<taskid:")
        following = rest.partition(">")[2]  # what comes after the id: "/", "/cancel/"...
        for other in routes:
            if other.startswith(parent) and "<" not in other[len(parent) :]:
                segment = other[len(parent) :].split("/")[0]
                if segment and other[len(parent) + len(segment) :] in ("/", following):
                    beside.add(segment)
    assert beside, routes
    assert beside <= RESERVED_SEGMENTS, beside - RESERVED_SEGMENTS


def test_an_encoded_path_that_is_not_valid_is_a_404(staff_client):
    assert staff_client.get("/runs/~%%%/").status_code == 404
    assert staff_client.get("/runs/~AAAA_/").status_code == 404


def test_schedule_pages_and_admin_list_render_runs_with_odd_ids(staff_client):
    every = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.MINUTES)
    task = PeriodicTask.objects.create(name="odd", task="examples.add", interval=every, args="[1, 2]")
    for n, task_id in enumerate(ODD_IDS):
        make_run(task_id, periodic_task_name="odd", created_at=timezone.now() - timedelta(seconds=len(ODD_IDS) - n))
    for url in (
        reverse("taskcenter:schedule_list"),
        reverse("taskcenter:schedule_detail", args=[task.pk]),
        reverse("admin:django_celery_beat_periodictask_changelist"),
        reverse("taskcenter:audit_list"),
        reverse("taskcenter:dashboard"),
    ):
        response = staff_client.get(url)
        assert response.status_code == 200, url
    assert reverse("taskcenter:run_detail", args=[ODD_IDS[-1]]).replace("&", "&amp;").encode() in (
        staff_client.get(reverse("taskcenter:schedule_list")).content
    )


def test_results_copied_before_cleanup_keep_final_states_and_the_last_known_one():
    from taskcenter.backend import runs_record_results

    now = timezone.now()
    make_run("c-1")
    make_run("c-2", recorded_state="FAILURE", outcome="kept")
    make_run("c-3")
    TaskResult.objects.create(task_id="c-1", status="SUCCESS", result='"done"', worker="w@h", date_started=now)
    TaskResult.objects.create(task_id="c-2", status="REVOKED", result="{}")
    TaskResult.objects.create(task_id="c-3", status="STARTED", worker="w@h", date_started=now)
    assert runs_record_results(TaskResult.objects.all()) == 2
    TaskResult.objects.all().delete()
    runs = {run.task_id: run for run in Run.objects.select_related("task_result")}
    assert (runs["c-1"].state, runs["c-1"].outcome, runs["c-1"].worker_name) == ("SUCCESS", '"done"', "w@h")
    assert runs["c-1"].started_at == now and runs["c-1"].finished_at is not None
    assert (runs["c-2"].state, runs["c-2"].outcome) == ("FAILURE", "kept")
    assert (runs["c-3"].state, runs["c-3"].finished_at) == ("STARTED", None)
