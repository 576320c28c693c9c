"""Actions on a whole failure group: apply a recovery strategy to its failed runs, dead-letter it."""

import pytest
from django.urls import reverse

from taskcenter.models import AuditEntry, DeadLetter, FailureGroup, RecoveryAction, Run
from taskcenter.monitor.failures import failures_write
from tests.test_failure_groups import collect, fail_event, failed_run

pytestmark = pytest.mark.django_db


def group_of(count: int) -> tuple[FailureGroup, list[Run]]:
    runs = [failed_run() for _ in range(count)]
    failures_write(collect(*(fail_event(run) for run in runs)))
    return FailureGroup.objects.get(), runs


def test_a_strategy_is_applied_to_every_failed_run_of_the_group_after_confirmation(staff_client):
    group, runs = group_of(3)
    url = reverse("taskcenter:failure_recover", args=[group.fingerprint])
    first = staff_client.post(url, {"strategy": "SKIP"})
    assert first.status_code == 200 and "Apply SKIP to 3 failed runs" in first.content.decode()
    assert not RecoveryAction.objects.exists() and not AuditEntry.objects.exists()

    assert staff_client.post(url, {"strategy": "SKIP", "confirm": "on"}).status_code == 302
    actions = RecoveryAction.objects.all()
    assert {a.task_id for a in actions} == {r.task_id for r in runs} and {a.strategy for a in actions} == {"SKIP"}
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RECOVERY_APPLY).count() == 3  # one per run
    entry = AuditEntry.objects.get(action=AuditEntry.Action.FAILURES_RECOVER)
    assert entry.actor == staff_client.user and entry.detail == {
        "fingerprint": group.fingerprint,
        "strategy": "SKIP",
        "done": 3,
        "refused": 0,
    }


def test_an_unknown_strategy_is_refused_without_touching_anything(staff_client):
    group, _ = group_of(1)
    url = reverse("taskcenter:failure_recover", args=[group.fingerprint])
    assert staff_client.post(url, {"strategy": "EXPLODE", "confirm": "on"}).status_code == 302
    assert not RecoveryAction.objects.exists() and not AuditEntry.objects.exists()


def test_a_group_strategy_beyond_the_bulk_limit_is_refused_before_anything_is_done(staff_client, settings):
    settings.TASKCENTER_BULK_RETRY_LIMIT = 2
    group, _ = group_of(3)
    url = reverse("taskcenter:failure_recover", args=[group.fingerprint])
    response = staff_client.post(url, {"strategy": "MANUAL", "confirm": "on"})
    assert response.status_code == 400 and "More than 2 failed runs" in response.content.decode()
    assert not RecoveryAction.objects.exists() and not AuditEntry.objects.exists()


def test_dead_lettering_a_group_gives_each_failed_run_without_one_a_dead_letter(staff_client):
    group, runs = group_of(3)
    DeadLetter.objects.create(task_id=runs[0].task_id, task_name=runs[0].task_name, reason="rejected")
    url = reverse("taskcenter:failure_deadletter", args=[group.fingerprint])
    first = staff_client.post(url)
    assert first.status_code == 200 and "Dead-letter 2 failed runs" in first.content.decode()
    assert DeadLetter.objects.count() == 1

    assert staff_client.post(url, {"confirm": "on"}).status_code == 302
    letters = DeadLetter.objects.filter(reason="failed")
    assert {letter.task_id for letter in letters} == {runs[1].task_id, runs[2].task_id}
    assert {letter.exception_type for letter in letters} == {"ExampleFailure"}
    entry = AuditEntry.objects.get(action=AuditEntry.Action.FAILURES_DEADLETTER)
    assert entry.actor == staff_client.user and entry.detail["recorded"] == 2

    again = staff_client.post(url)  # nothing left to dead-letter
    assert again.status_code == 200 and "Dead-letter 0 failed runs" in again.content.decode()


def test_a_view_only_user_gets_403_on_the_group_actions_and_nothing_changes(viewer_client):
    group, _ = group_of(2)
    page = viewer_client.get(reverse("taskcenter:failure_detail", args=[group.fingerprint])).content.decode()
    assert "Apply to the failed runs" not in page and "Dead-letter this group" not in page
    recover = reverse("taskcenter:failure_recover", args=[group.fingerprint])
    assert viewer_client.post(recover, {"strategy": "SKIP", "confirm": "on"}).status_code == 403
    deadletter = reverse("taskcenter:failure_deadletter", args=[group.fingerprint])
    assert viewer_client.post(deadletter, {"confirm": "on"}).status_code == 403
    assert not RecoveryAction.objects.exists() and not DeadLetter.objects.exists()
    assert not AuditEntry.objects.exists()


def test_a_group_strategy_needs_the_tasks_launch_permission(client, django_user_model):
    from django.contrib.auth.models import Permission

    group, _ = group_of(1)
    user = django_user_model.objects.create_user(username="ctl", password="pw-ctl-123", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_run", "control_run"]))
    client.force_login(user)
    url = reverse("taskcenter:failure_recover", args=[group.fingerprint])
    assert client.post(url, {"strategy": "SKIP", "confirm": "on"}).status_code == 403
    assert not RecoveryAction.objects.exists()


def test_the_group_page_offers_both_actions_to_an_operator(staff_client):
    group, _ = group_of(1)
    page = staff_client.get(reverse("taskcenter:failure_detail", args=[group.fingerprint])).content.decode()
    assert "Apply to the failed runs" in page and "Dead-letter this group" in page


def test_retry_applied_to_a_group_launches_each_failed_run_again_linked_to_it(staff_client, redis_server):
    group, runs = group_of(2)
    Run.objects.filter(pk__in=[r.pk for r in runs]).update(
        task_name="examples.process_items", kwargs={"items": 1, "seconds_per_item": 0}
    )
    url = reverse("taskcenter:failure_recover", args=[group.fingerprint])
    assert staff_client.post(url, {"strategy": "RETRY", "confirm": "on"}).status_code == 302
    reruns = Run.objects.filter(retry_of__in=runs)
    assert sorted(r.retry_of_id for r in reruns) == sorted(r.pk for r in runs)
    assert AuditEntry.objects.get(action=AuditEntry.Action.FAILURES_RECOVER).detail["done"] == 2
    again = staff_client.post(url, {"strategy": "RETRY"})  # runs already re-run are left out
    assert "Apply RETRY to 0 failed runs" in again.content.decode()
