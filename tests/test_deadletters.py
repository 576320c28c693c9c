"""Dead letters page: filters, detail, discard, bulk actions with a confirmed count, permissions, metrics, alert."""

import json
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from hypothesis import given

from taskcenter.models import AuditEntry, DeadLetter, Run
from taskcenter.secret_arguments import MASK, seal, unseal
from taskcenter.selectors import alerts
from taskcenter.services import deadletters
from tests.test_fuzz import FUZZ, admin_client, outcome, query  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

LIST = reverse("taskcenter:deadletter_list")
BULK = reverse("taskcenter:deadletter_bulk")


def letter(**fields) -> DeadLetter:
    values = {
        "task_id": f"t-{DeadLetter.objects.count()}-{time.monotonic_ns()}",
        "task_name": "examples.add",
        "queue": "default",
        "reason": DeadLetter.Reason.FAILED,
        "exception_type": "ValueError",
        "message": "bad value",
        "traceback": "Traceback (most recent call last):\nValueError: bad value",
        "args": [1, 2],
        **fields,
    }
    return DeadLetter.objects.create(**values)


@pytest.fixture
def manager_client(client, django_user_model):
    """Staff allowed to view runs and manage dead letters, but to launch nothing."""
    user = django_user_model.objects.create_user(username="dl-manager", password="pw-1", is_staff=True)
    for codename in ("view_run", "manage_deadletters"):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="taskcenter"))
    client.force_login(user)
    return client


def test_the_list_shows_unresolved_letters_newest_first_and_filters(staff_client):
    old = letter(reason=DeadLetter.Reason.EXPIRED, created_at=timezone.now() - timedelta(days=2))
    other = letter(task_name="examples.fail", exception_type="ExampleFailure")
    new = letter()
    letter(resolution="discarded")
    page = staff_client.get(LIST).context["page"]
    assert [x.pk for x in page.letters] == [new.pk, other.pk, old.pk]
    assert [x.pk for x in staff_client.get(LIST, {"reason": "expired"}).context["page"].letters] == [old.pk]
    assert [x.pk for x in staff_client.get(LIST, {"task_name": "examples.fail"}).context["page"].letters] == [other.pk]
    by_type = staff_client.get(LIST, {"exception_type": "ExampleFailure", "status": "open"}).context["page"].letters
    assert [x.pk for x in by_type] == [other.pk]
    since = (timezone.now() - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert old.pk not in [x.pk for x in staff_client.get(LIST, {"created_from": since}).context["page"].letters]
    assert len(staff_client.get(LIST, {"status": ""}).context["page"].letters) == 4


def test_the_list_pages_by_keyset_without_counting(staff_client, django_assert_max_num_queries, settings):
    letters = [letter() for _ in range(55)]
    with django_assert_max_num_queries(12):
        first = staff_client.get(LIST).context["page"]
    assert len(first.letters) == 50 and first.older_cursor == letters[5].pk
    second = staff_client.get(LIST, {"before": first.older_cursor}).context["page"]
    assert [x.pk for x in second.letters] == [x.pk for x in reversed(letters[:5])]
    back = staff_client.get(LIST, {"after": second.newer_cursor}).context["page"]
    assert [x.pk for x in back.letters] == [x.pk for x in first.letters]


def test_the_detail_shows_traceback_arguments_and_links_the_run(staff_client):
    run = Run.objects.create(task_result_id="run-with-letter", task_name="examples.add", queue="default")
    shown = letter(task_id=run.task_id, args=[7, 8])
    body = staff_client.get(reverse("taskcenter:deadletter_detail", args=[shown.pk])).content.decode()
    assert "ValueError: bad value" in body and "[7, 8]" in body
    assert reverse("taskcenter:run_detail", args=[run.task_id]) in body
    assert reverse("taskcenter:run_detail", args=[run.task_id]) in staff_client.get(LIST).content.decode()
    assert staff_client.get(reverse("taskcenter:deadletter_detail", args=[999999])).status_code == 404


def test_discard_marks_the_letter_and_is_audited(staff_client):
    gone = letter()
    response = staff_client.post(reverse("taskcenter:deadletter_discard", args=[gone.pk]))
    assert response.status_code == 302
    gone.refresh_from_db()
    assert gone.resolution == "discarded" and gone.resolved_by == staff_client.user
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DEADLETTER_DISCARD)
    assert entry.task_id == gone.task_id and entry.outcome == "ok"
    again = staff_client.post(reverse("taskcenter:deadletter_discard", args=[gone.pk]))
    assert again.status_code == 409
    assert AuditEntry.objects.filter(action=AuditEntry.Action.DEADLETTER_DISCARD, outcome="refused").count() == 1


def test_bulk_discard_of_selected_letters_confirms_the_count_first(staff_client):
    chosen, kept = letter(), letter()
    data = {"action": "discard", "scope": "selected", "ids": [chosen.pk], "status": "open"}
    confirm = staff_client.post(BULK, data)
    assert confirm.status_code == 200 and "Discard 1 dead letter?" in confirm.content.decode()
    assert not DeadLetter.objects.exclude(resolution="").exists()
    staff_client.post(BULK, {**data, "confirm": "on"})
    assert DeadLetter.objects.get(pk=chosen.pk).resolution == "discarded"
    assert DeadLetter.objects.get(pk=kept.pk).resolution == ""


def test_bulk_replay_by_filter_confirms_the_count_then_replays_each(staff_client, redis_server):
    matching = [letter(task_name="examples.add", args=[i, 1]) for i in range(3)]
    other = letter(task_name="examples.fail", args=[], kwargs={})
    data = {"action": "replay", "scope": "filter", "task_name": "examples.add", "status": "open"}
    confirm = staff_client.post(BULK, data)
    assert confirm.status_code == 200 and "Replay 3 dead letters?" in confirm.content.decode()
    assert not Run.objects.exists()
    response = staff_client.post(BULK, {**data, "confirm": "on"})
    assert response.status_code == 302 and "task_name=examples.add" in response["Location"]
    runs = Run.objects.filter(task_name="examples.add")
    assert sorted(run.args for run in runs) == [[0, 1], [1, 1], [2, 1]]
    for x in matching:
        x.refresh_from_db()
        assert x.resolution == "replayed" and runs.filter(task_result_id=x.replayed_as).exists()
    assert DeadLetter.objects.get(pk=other.pk).resolution == ""
    assert AuditEntry.objects.filter(action=AuditEntry.Action.DEADLETTER_REPLAY, outcome="ok").count() == 3


def test_a_replay_with_arguments_of_the_wrong_type_is_refused_and_leaves_the_letter_open(staff_client):
    bad = letter()
    url = reverse("taskcenter:deadletter_replay", args=[bad.pk])
    response = staff_client.post(url, {"args": '["one", "two"]', "kwargs": "{}"})
    assert response.status_code == 400 and not Run.objects.exists()
    bad.refresh_from_db()
    assert bad.resolution == "" and bad.replayed_as == ""


def test_a_view_only_user_gets_403_on_every_action_and_nothing_changes(viewer_client):
    target = letter()
    assert viewer_client.get(LIST).status_code == 200
    assert viewer_client.get(reverse("taskcenter:deadletter_detail", args=[target.pk])).status_code == 200
    replay = reverse("taskcenter:deadletter_replay", args=[target.pk])
    attempts = [
        viewer_client.get(replay),
        viewer_client.post(replay, {"args": "[1, 2]"}),
        viewer_client.post(reverse("taskcenter:deadletter_discard", args=[target.pk])),
        viewer_client.post(BULK, {"action": "discard", "scope": "selected", "ids": [target.pk], "confirm": "on"}),
        viewer_client.post(BULK, {"action": "replay", "scope": "filter", "status": "open", "confirm": "on"}),
    ]
    assert [r.status_code for r in attempts] == [403] * 5
    target.refresh_from_db()
    assert target.resolution == "" and not Run.objects.exists()
    assert not AuditEntry.objects.exists()
    assert "Replay" not in viewer_client.get(reverse("taskcenter:deadletter_detail", args=[target.pk])).content.decode()


def test_replay_also_needs_the_permission_to_launch_the_task(manager_client):
    target = letter()
    replay = reverse("taskcenter:deadletter_replay", args=[target.pk])
    assert manager_client.post(replay, {"args": "[1, 2]"}).status_code == 403
    manager_client.post(BULK, {"action": "replay", "scope": "selected", "ids": [target.pk], "confirm": "on"})
    target.refresh_from_db()
    assert target.resolution == "" and not Run.objects.exists()
    # Discarding needs no launch permission.
    assert manager_client.post(reverse("taskcenter:deadletter_discard", args=[target.pk])).status_code == 302


def test_metrics_count_dead_letters_per_reason_and_task(client, settings):
    settings.TASKCENTER_METRICS_TOKEN = "dl-token"
    for n, reason in enumerate([DeadLetter.Reason.FAILED, DeadLetter.Reason.FAILED, DeadLetter.Reason.REJECTED]):
        deadletters.deadletter_record(task_id=f"m-{n}", task_name="examples.add", reason=reason)
    DeadLetter.objects.filter(reason=DeadLetter.Reason.REJECTED).update(resolution="discarded")
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer dl-token").content.decode()
    assert 'taskcenter_dead_letters_total{reason="failed",task="examples.add"} 2.0' in body
    assert 'taskcenter_dead_letters_total{reason="rejected",task="examples.add"} 1.0' in body
    assert 'taskcenter_dead_letters_unresolved{reason="failed",task="examples.add"} 2.0' in body
    assert 'taskcenter_dead_letters_unresolved{reason="rejected",task="examples.add"} 0.0' in body

    # A counter: deleting old letters (retention) does not lower it, so Prometheus sees no reset.
    DeadLetter.objects.filter(task_id="m-0").delete()
    body = client.get("/metrics", HTTP_AUTHORIZATION="Bearer dl-token").content.decode()
    assert 'taskcenter_dead_letters_total{reason="failed",task="examples.add"} 2.0' in body
    assert 'taskcenter_dead_letters_unresolved{reason="failed",task="examples.add"} 1.0' in body


def test_metrics_read_counters_and_the_open_letters_index_not_the_whole_table():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from taskcenter.selectors.deadletters import deadletter_counts

    deadletters.deadletter_record(task_id="c-1", task_name="examples.add", reason=DeadLetter.Reason.FAILED)
    with CaptureQueriesContext(connection) as queries:
        assert deadletter_counts() == [
            {"reason": "failed", "task_name": "examples.add", "total": 1, "unresolved": 1}
        ]  # fmt: skip
    (letters,) = [q["sql"] for q in queries.captured_queries if "taskcenter_deadletter" + '"' in q["sql"]]
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            plan = " ".join(row[-1] for row in cursor.execute(f"EXPLAIN QUERY PLAN {letters}").fetchall())
        assert "USING COVERING INDEX deadletter_open_counts (resolution=?)" in plan, plan


def test_recent_dead_letters_fire_the_alert_and_old_or_resolved_ones_do_not():
    beat = alerts.BeatSummary(True, True, {"id": "b"}, time.time(), 1.0, 0, "")
    base = alerts.Snapshot(
        failed=0, finished=10, failure_rate=0.0, queues=alerts.LiveQueues([alerts.LiveQueue("default", 0, None)]),
        workers_online=1, beat=beat, stuck_runs=0, monitor_alive=True,
    )  # fmt: skip
    assert [a.name for a in alerts.evaluate(replace(base, dead_letters_recent=2))] == ["DeadLettersArriving"]
    letter(created_at=timezone.now() - timedelta(hours=1))
    letter(resolution="replayed")
    assert alerts._dead_letters_recent() == 0
    letter()
    assert alerts._dead_letters_recent() == 1


def test_fuzz_dead_letter_filters_and_actions(admin_client, outcome):  # noqa: F811
    target = letter()
    names = ["task_name", "reason", "exception_type", "status", "created_from", "created_to", "before", "after"]
    outcome.sweep(admin_client, "get", LIST, {}, names)
    outcome.sweep(admin_client, "post", BULK, {"action": "discard", "scope": "filter"}, [*names, "ids", "scope"])

    @FUZZ
    @given(params=query(names))
    def fuzz(params):
        outcome.request(admin_client, "get", LIST, params)
        outcome.request(admin_client, "post", BULK, {"action": "discard", "scope": "filter", **params})
        outcome.request(admin_client, "get", reverse("taskcenter:deadletter_detail", args=[target.pk]), params)

    fuzz()
    outcome.check()


def test_a_replay_sends_the_sealed_secret_and_refuses_a_mask_it_cannot_read(staff_client, redis_server):
    sealed = letter(
        task_name="examples.connect",
        args=[],
        kwargs={"host": "db", "user": "u", "password": MASK},
        secrets=seal({"password": "hunter2"}),
    )
    new_run = deadletters.deadletter_replay(letter=sealed, actor=staff_client.user)
    assert new_run.kwargs["password"] == MASK and unseal(new_run.secrets) == {"password": "hunter2"}
    unreadable = letter(task_name="examples.connect", args=[], kwargs={"host": "db", "user": "u", "password": MASK})
    url = reverse("taskcenter:deadletter_replay", args=[unreadable.pk])
    response = staff_client.post(url, {"args": "[]", "kwargs": json.dumps(unreadable.kwargs)})
    assert response.status_code == 400 and "enter it again" in response.content.decode()
    unreadable.refresh_from_db()
    assert unreadable.resolution == ""
