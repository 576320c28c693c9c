"""``manage.py tc deadletters``: list, replay (same or edited arguments) and discard, by id or by filter."""

import pytest

from taskcenter.models import AuditEntry, DeadLetter, Run
from tests.cli_helpers import make_user, tc, tc_fails, tc_json
from tests.test_deadletters import letter

pytestmark = pytest.mark.django_db


def test_list_shows_unresolved_letters_newest_first_with_filters_and_pages():
    first, second = letter(), letter(reason=DeadLetter.Reason.EXPIRED, task_name="examples.fail")
    letter(resolution=DeadLetter.Resolution.DISCARDED)
    document = tc_json("deadletters", "list")
    assert [x["id"] for x in document["dead_letters"]] == [second.pk, first.pk]
    assert document["dead_letters"][0]["created_at"][-6] in "+-" and document["dead_letters"][0]["status"] == "open"
    assert [x["id"] for x in tc_json("deadletters", "list", "--reason", "expired")["dead_letters"]] == [second.pk]
    assert len(tc_json("deadletters", "list", "--status", "all")["dead_letters"]) == 3
    page = tc_json("deadletters", "list", "--limit", "1")
    assert page["next_before"] == second.pk
    older = tc_json("deadletters", "list", "--limit", "1", "--before", str(page["next_before"]))
    assert [x["id"] for x in older["dead_letters"]] == [first.pk]
    text = tc("deadletters", "list")
    assert text.splitlines()[0].split()[:3] == ["ID", "TASK", "REASON"] and "examples.fail" in text
    tc_fails("deadletters", "list", "--since", "yesterday", code=2, match="not an ISO date")


def test_replay_one_letter_with_edited_arguments_links_the_new_run(redis_server, django_user_model):
    ops = make_user(django_user_model, "ops", "view_run", "manage_deadletters", "launch_any_task")
    dead = letter()
    document = tc_json("deadletters", "replay", str(dead.pk), "--args", "[3, 4]", "--user", "ops")
    replayed = document["done"][0]
    assert replayed["status"] == "replayed" and replayed["id"] == dead.pk
    run = Run.objects.get(task_result_id=replayed["replayed_as"])
    assert run.args == [3, 4] and run.source == "cli" and run.launched_by == ops
    assert AuditEntry.objects.get(action="deadletter_replay", outcome="ok").actor == ops
    tc_fails("deadletters", "replay", str(dead.pk), code=1, match="already replayed or discarded")


def test_discard_by_filter_shows_the_count_first_and_acts_only_with_yes():
    expired = [letter(reason=DeadLetter.Reason.EXPIRED) for _ in range(3)]
    kept = letter()
    preview = tc("deadletters", "discard", "--reason", "expired")
    assert preview.startswith("3 unresolved dead letter(s) match. Nothing was done: add --yes to discard them.")
    assert tc_json("deadletters", "discard", "--reason", "expired")["dry_run"] is True
    assert not DeadLetter.objects.exclude(resolution="").exists()
    assert tc("deadletters", "discard", "--reason", "expired", "--yes") == "Discarded 3 dead letter(s); 0 refused.\n"
    assert set(DeadLetter.objects.filter(resolution="discarded").values_list("pk", flat=True)) == {
        x.pk for x in expired
    }
    assert DeadLetter.objects.get(pk=kept.pk).resolution == ""


def test_replay_by_ids_and_by_filter(redis_server):
    a, b, c = letter(), letter(), letter(task_name="examples.fail", args=[], kwargs={"message": "again"})
    document = tc_json("deadletters", "replay", str(a.pk), str(b.pk))
    assert document["matched"] == 2 and len(document["done"]) == 2 and document["refused"] == []
    assert tc("deadletters", "replay", "--task", "examples.fail", "--yes").startswith("Replayed 1 dead letter(s)")
    assert Run.objects.count() == 3 and not DeadLetter.objects.filter(resolution="").exists()
    assert DeadLetter.objects.get(pk=c.pk).replayed_as


def test_every_action_is_refused_without_the_permission(redis_server, django_user_model):
    make_user(django_user_model, "viewer", "view_run")
    make_user(django_user_model, "manager", "view_run", "manage_deadletters")  # may launch nothing
    dead = letter()
    for args in (["replay", str(dead.pk)], ["discard", str(dead.pk)], ["discard", "--yes"], ["replay", "--yes"]):
        tc_fails("deadletters", *args, "--user", "viewer", code=1, match="You may not")
    tc_fails("deadletters", "replay", str(dead.pk), "--user", "manager", code=1, match="You may not launch")
    refused = tc_fails("deadletters", "replay", "--yes", "--user", "manager", code=1, match="1 dead letter")
    assert "refused" in str(refused)
    assert not Run.objects.exists() and DeadLetter.objects.get().resolution == ""


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["replay", "999999"], "No dead letter 999999"),
        (["discard", "1", "--task", "examples.add"], "ids or filter options, not both"),
        (["replay", "--args", "[1]"], "give exactly one id"),
        (["replay", "LETTER", "--args", "[1,"], "--args is not valid JSON"),
        (["replay", "LETTER", "--kwargs", "[1]"], "--kwargs must be a JSON object"),
    ],
)
def test_bad_input_is_a_usage_error_and_nothing_changes(redis_server, args, message):
    dead = letter()
    args = [str(dead.pk) if arg == "LETTER" else arg for arg in args]
    tc_fails("deadletters", *args, code=2, match=message.replace("[", r"\["))
    assert DeadLetter.objects.get().resolution == "" and not Run.objects.exists()


def test_more_letters_than_the_bulk_limit_are_refused(settings):
    settings.TASKCENTER_BULK_RETRY_LIMIT = 2
    for _ in range(3):
        letter()
    tc_fails("deadletters", "discard", "--yes", code=1, match="More than 2 dead letters match")
    assert not DeadLetter.objects.exclude(resolution="").exists()
