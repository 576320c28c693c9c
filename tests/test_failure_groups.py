"""Failure groups from the monitor's batch, the Failures pages, their permissions, filters and query counts."""

import uuid
from datetime import UTC, datetime

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from taskcenter.models import AuditEntry, FailureGroup, Run
from taskcenter.monitor.failures import FailureCollector, failures_write
from tests.test_failure_fingerprint import tb

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC).timestamp()


def failed_run(task_name="examples.fail") -> Run:
    return Run.objects.create(
        task_result_id=str(uuid.uuid4()), task_name=task_name, queue="default", recorded_state="FAILURE"
    )


def fail_event(run: Run, *, at: float = T0, line: int = 81, exception_line: str = "ExampleFailure: boom") -> dict:
    traceback = tb(l3=line).replace("taskcenter.examples.tasks.ExampleFailure: boom", exception_line)
    return {
        "type": "task-failed",
        "uuid": run.task_id,
        "exception": "ExampleFailure('boom')",
        "traceback": traceback,
        "timestamp": at,
    }


def collect(*events) -> dict:
    collector = FailureCollector()
    for event in events:
        collector.handle(event)
    return collector.take()


def test_failures_of_one_error_make_one_group_counted_once_per_run():
    runs = [failed_run() for _ in range(3)]
    failures_write(collect(*(fail_event(run, at=T0 + i, line=80 + i) for i, run in enumerate(runs))))
    group = FailureGroup.objects.get()
    assert group.count == 3
    assert group.first_seen.timestamp() == T0 and group.last_seen.timestamp() == T0 + 2
    assert group.sample_task_id == runs[2].task_id
    assert set(Run.objects.filter(failure_fingerprint=group.fingerprint)) == set(runs)

    failures_write(collect(fail_event(runs[0], at=T0 + 9)))  # the same event again: not counted twice
    assert FailureGroup.objects.get().count == 3

    later = failed_run()
    failures_write(collect(fail_event(later, at=T0 + 10)))
    group.refresh_from_db()
    assert group.count == 4 and group.last_seen.timestamp() == T0 + 10 and group.sample_task_id == later.task_id


def test_another_exception_makes_another_group():
    failures_write(collect(fail_event(failed_run()), fail_event(failed_run(), exception_line="KeyError: 'x'")))
    groups = sorted(FailureGroup.objects.values_list("exception_type", "count"))
    assert groups == [("ExampleFailure", 1), ("KeyError", 1)]


def test_a_failure_waits_for_its_run_row_then_is_dropped():
    task_id = str(uuid.uuid4())
    event = {"type": "task-failed", "uuid": task_id, "exception": "E()", "traceback": "", "timestamp": T0}
    failures = collect(event)
    assert failures_write(failures, now=failures[task_id].first_seen + 1) == failures  # kept for later
    assert failures_write(failures, now=failures[task_id].first_seen + 3600) == {}
    assert not FailureGroup.objects.exists()


def test_a_resolved_group_opens_again_when_it_fails_again_and_an_ignored_one_stays_ignored():
    failures_write(collect(fail_event(failed_run()), fail_event(failed_run(), exception_line="KeyError: 'x'")))
    FailureGroup.objects.filter(exception_type="ExampleFailure").update(status=FailureGroup.Status.RESOLVED)
    FailureGroup.objects.filter(exception_type="KeyError").update(status=FailureGroup.Status.IGNORED)
    failures_write(collect(fail_event(failed_run()), fail_event(failed_run(), exception_line="KeyError: 'x'")))
    assert dict(FailureGroup.objects.values_list("exception_type", "status")) == {
        "ExampleFailure": "open",
        "KeyError": "ignored",
    }


def make_groups(count: int, prefix: str = "task") -> list[FailureGroup]:
    events = [fail_event(failed_run(f"examples.{prefix}{i}"), at=T0 + i) for i in range(count)]
    failures_write(collect(*events))
    return list(FailureGroup.objects.all())


def test_the_failures_page_lists_groups_last_seen_first_and_filters(staff_client):
    make_groups(3)
    page = staff_client.get(reverse("taskcenter:failure_list")).content.decode()
    assert page.index("examples.task2") < page.index("examples.task1") < page.index("examples.task0")
    filtered = staff_client.get(reverse("taskcenter:failure_list"), {"task_name": "examples.task1"}).content.decode()
    assert "examples.task1" in filtered and "examples.task2" not in filtered
    by_type = staff_client.get(reverse("taskcenter:failure_list"), {"exception_type": "Nope"}).content.decode()
    assert "No failure groups match." in by_type
    backwards = {"seen_from": "2026-05-02T00:00", "seen_to": "2026-05-01"}
    bad = staff_client.get(reverse("taskcenter:failure_list"), backwards)
    assert bad.status_code == 400


def test_the_group_page_pages_through_its_runs_by_keyset(staff_client):
    runs = [failed_run() for _ in range(55)]
    failures_write(collect(*(fail_event(run) for run in runs)))
    group = FailureGroup.objects.get()
    url = reverse("taskcenter:failure_detail", args=[group.fingerprint])
    first = staff_client.get(url)
    assert first.status_code == 200
    assert first.context["page"].runs[0] == runs[-1] and len(first.context["page"].runs) == 50
    assert "ExampleFailure: boom" in first.content.decode()  # the sample traceback
    older = staff_client.get(url, {"before": first.context["page"].older_cursor})
    assert [r.id for r in older.context["page"].runs] == [r.id for r in reversed(runs[:5])]
    assert staff_client.get(url, {"before": "x"}).status_code == 400
    assert staff_client.get(reverse("taskcenter:failure_detail", args=["0" * 40])).status_code == 404


def test_a_failed_run_page_links_to_its_group(staff_client):
    run = failed_run()
    failures_write(collect(fail_event(run)))
    page = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert reverse("taskcenter:failure_detail", args=[FailureGroup.objects.get().fingerprint]) in page


def test_the_failures_page_does_a_bounded_number_of_queries(staff_client, django_assert_max_num_queries):
    make_groups(3)
    staff_client.get(reverse("taskcenter:failure_list"))  # warm caches (content types, permissions)
    with django_assert_max_num_queries(8) as few:
        staff_client.get(reverse("taskcenter:failure_list"))
    make_groups(40, prefix="more")
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert len(staff_client.get(reverse("taskcenter:failure_list")).context["groups"]) == 43


def test_the_group_page_does_a_bounded_number_of_queries(staff_client, django_assert_max_num_queries):
    runs = [failed_run() for _ in range(30)]
    failures_write(collect(*(fail_event(run) for run in runs)))
    url = reverse("taskcenter:failure_detail", args=[FailureGroup.objects.get().fingerprint])
    staff_client.get(url)
    with django_assert_max_num_queries(10):
        staff_client.get(url)


def test_a_view_only_user_sees_the_pages_but_gets_403_on_actions(viewer_client):
    (group,) = make_groups(1)
    assert viewer_client.get(reverse("taskcenter:failure_list")).status_code == 200
    page = viewer_client.get(reverse("taskcenter:failure_detail", args=[group.fingerprint]))
    assert page.status_code == 200 and "Mark resolved" not in page.content.decode()
    assert viewer_client.post(reverse("taskcenter:failure_retry", args=[group.fingerprint])).status_code == 403
    status = reverse("taskcenter:failure_status", args=[group.fingerprint])
    assert viewer_client.post(status, {"status": "resolved"}).status_code == 403
    group.refresh_from_db()
    assert group.status == "open"


def test_retry_needs_launch_permission_for_the_task(client, django_user_model):
    from django.contrib.auth.models import Permission

    (group,) = make_groups(1)
    user = django_user_model.objects.create_user(username="ctl", password="pw-ctl-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "control_run"]))
    client.force_login(user)
    assert client.post(reverse("taskcenter:failure_retry", args=[group.fingerprint])).status_code == 403


def test_marking_a_group_resolved_is_audited(staff_client):
    (group,) = make_groups(1)
    url = reverse("taskcenter:failure_status", args=[group.fingerprint])
    assert staff_client.post(url, {"status": "resolved"}).status_code == 302
    group.refresh_from_db()
    assert group.status == "resolved" and group.status_changed_by == staff_client.user
    entry = AuditEntry.objects.get(action=AuditEntry.Action.FAILURES_STATUS)
    assert entry.actor == staff_client.user and entry.detail["to"] == "resolved"
    assert staff_client.post(url, {"status": "gone"}).status_code == 302  # refused with a message
    group.refresh_from_db()
    assert group.status == "resolved"


text = st.text(max_size=40)


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    params=st.dictionaries(
        st.sampled_from(["task_name", "exception_type", "status", "seen_from", "seen_to", "before", "after", "x"]),
        text,
    ),
    fingerprint=st.text(alphabet="abcdef0123456789-_", min_size=1, max_size=60),
)
def test_failure_pages_answer_any_input_without_a_server_error(staff_client, params, fingerprint):
    assert staff_client.get(reverse("taskcenter:failure_list"), params).status_code < 500
    detail = reverse("taskcenter:failure_detail", args=[fingerprint])
    assert staff_client.get(detail, params).status_code < 500
    status = reverse("taskcenter:failure_status", args=[fingerprint])
    assert staff_client.post(status, params).status_code < 500


@pytest.mark.sqlite_only  # PostgreSQL may scan a small table instead; the plan is SQLite's
def test_a_groups_runs_and_the_group_list_are_read_through_their_indexes():
    runs = Run.objects.filter(failure_fingerprint="a" * 40).select_related("task_result").order_by("-id")[:51]
    assert "run_failure_id" in runs.explain()
    groups = FailureGroup.objects.order_by("-last_seen", "-id")[:200]
    assert "failuregroup_last_seen" in groups.explain()


def test_the_collector_keeps_only_failures_and_the_newest_event_per_run():
    collector = FailureCollector(clock=lambda: T0, max_pending=2)
    collector.handle({"type": "task-succeeded", "uuid": "a"})
    collector.handle({"type": "task-failed", "uuid": ""})
    assert len(collector) == 0
    collector.handle({"type": "task-failed", "uuid": "a", "exception": "E('old')"})
    taken = collector.take()
    collector.handle({"type": "task-failed", "uuid": "a", "exception": "E('new')"})
    collector.keep(taken)  # not written: put back, the newer event wins
    assert collector.take()["a"].exception == "E('new')"
    for task_id in "bcd":
        collector.handle({"type": "task-failed", "uuid": task_id})
    assert list(collector.take()) == ["c", "d"]  # bounded: the oldest is dropped


def test_a_group_retry_beyond_the_bulk_limit_is_refused_before_launching_anything(staff_client, settings):
    settings.TASKCENTER_BULK_RETRY_LIMIT = 2
    failures_write(collect(*(fail_event(failed_run()) for _ in range(3))))
    url = reverse("taskcenter:failure_retry", args=[FailureGroup.objects.get().fingerprint])
    response = staff_client.post(url, {"confirm": "on"})
    assert response.status_code == 400
    assert "More than 2 failed runs" in response.content.decode()
    assert not Run.objects.filter(retry_of__isnull=False).exists()
    assert not AuditEntry.objects.exists()
