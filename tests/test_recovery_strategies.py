"""Recovery strategies: per task type (code, override), applied by rule after a final failure, by operators
on the run page, in bulk and from the command line; permissions; the forms never answer 5xx."""

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.urls import reverse
from django_celery_results.models import TaskResult
from hypothesis import given

from taskcenter.checkpoints import checksum_of
from taskcenter.models import AuditEntry, Checkpoint, DeadLetter, RecoveryAction, RecoveryPolicy, Run
from taskcenter.services import recovery
from taskcenter.services.errors import ServiceError
from tests.test_fuzz import FUZZ, admin_client, outcome, query  # noqa: F401 (fixtures)

pytestmark = pytest.mark.django_db

PAGE = reverse("taskcenter:recovery")
POLICY = reverse("taskcenter:recovery_policy")
BULK = reverse("taskcenter:recovery_bulk")


def failed_run(task_id: str, *, task_name: str = "examples.process_items", status: str = "FAILURE", **fields) -> Run:
    TaskResult.objects.create(task_id=task_id, task_name=task_name, status=status)
    return Run.objects.create(
        task_result_id=task_id, task_name=task_name, queue="low", kwargs={"items": 3, "seconds_per_item": 0}, **fields
    )


def checkpoint(task_id: str, root: str | None = None, done: int = 1) -> Checkpoint:
    state = {"done": done}
    return Checkpoint.objects.create(
        task_id=task_id, root_task_id=root or task_id, state=state, progress=f"{done} of 3", checksum=checksum_of(state)
    )


def test_the_strategy_is_the_operators_override_else_the_default_in_code(staff_client):
    assert recovery.strategy_for("examples.process_items") == ("RESUME", "default in code")
    assert recovery.strategy_for("examples.add") == (None, "")
    recovery.recovery_policy_set(task_name="examples.add", strategy="SKIP", actor=staff_client.user)
    assert recovery.strategy_for("examples.add") == ("SKIP", "operator override")
    recovery.recovery_policy_set(task_name="examples.add", strategy="", actor=staff_client.user)
    assert recovery.strategy_for("examples.add") == (None, "")
    assert AuditEntry.objects.filter(action=AuditEntry.Action.RECOVERY_POLICY).count() == 2


def test_an_unknown_strategy_or_task_is_refused():
    with pytest.raises(ServiceError):
        recovery.recovery_policy_set(task_name="nobody.knows", strategy="SKIP", actor=None)
    with pytest.raises(ServiceError):
        recovery.recovery_policy_set(task_name="examples.add", strategy="EXPLODE", actor=None)
    with pytest.raises(ValueError, match="unknown recovery strategy"):
        from taskcenter.catalogue import register

        register("x.y", lambda: None, recovery="LATER")


def test_a_strategy_is_refused_for_a_run_that_succeeded():
    run = failed_run("ok-1", status="SUCCESS")
    with pytest.raises(recovery.NotRecoverable):
        recovery.run_recover(run=run, strategy="RETRY", actor=None)
    assert not RecoveryAction.objects.exists()
    assert AuditEntry.objects.get(task_id="ok-1").outcome == AuditEntry.Outcome.REFUSED


def test_skip_resolves_the_dead_letter_and_launches_nothing():
    run = failed_run("skip-1")
    DeadLetter.objects.create(task_id="skip-1", task_name=run.task_name, reason=DeadLetter.Reason.FAILED)
    action = recovery.run_recover(run=run, strategy="SKIP", actor=None)
    assert action.new_task_id == "" and Run.objects.count() == 1
    assert DeadLetter.objects.get(task_id="skip-1").resolution == DeadLetter.Resolution.DISCARDED


def test_manual_lists_the_run_as_needing_attention_until_another_strategy_is_applied(staff_client):
    run = failed_run("manual-1")
    recovery.run_recover(run=run, strategy="MANUAL", actor=None, rule="operator override")
    page = staff_client.get(PAGE)
    assert [a.task_id for a, _ in page.context["attention"]] == ["manual-1"]
    recovery.run_recover(run=run, strategy="SKIP", actor=staff_client.user)
    assert staff_client.get(PAGE).context["attention"] == []


def test_restart_discards_the_lineages_checkpoints_and_launches_a_linked_run(redis_server):
    run = failed_run("restart-1")
    checkpoint("restart-1", done=2)
    action = recovery.run_recover(run=run, strategy="RESTART", actor=None)
    assert not Checkpoint.objects.exists()
    new = Run.objects.get(task_result_id=action.new_task_id)
    assert new.retry_of_id == run.pk and new.kwargs == run.kwargs


def test_a_final_failure_gets_the_task_types_strategy_by_rule_and_at_most_the_automatic_limit(redis_server, settings):
    settings.TASKCENTER_RECOVERY_MAX_AUTOMATIC = 1
    first = failed_run("auto-1")
    action = recovery.recovery_apply_after_failure(task_id="auto-1", task_name="examples.process_items")
    assert action.strategy == "RESUME" and action.rule == "default in code" and action.actor is None
    second = Run.objects.get(task_result_id=action.new_task_id)
    assert second.retry_of_id == first.pk
    TaskResult.objects.create(task_id=second.task_id, task_name=second.task_name, status="FAILURE")
    again = recovery.recovery_apply_after_failure(task_id=second.task_id, task_name=second.task_name)
    assert again.strategy == "MANUAL" and "limit of 1 reached" in again.rule and again.new_task_id == ""


def test_no_strategy_declared_means_nothing_is_done_after_a_final_failure():
    failed_run("none-1", task_name="examples.add")
    assert recovery.recovery_apply_after_failure(task_id="none-1", task_name="examples.add") is None


def test_the_run_page_lists_checkpoints_and_the_strategy_and_resume_opens_the_new_run(staff_client, redis_server):
    run = failed_run("page-1")
    checkpoint("page-1", done=2)
    url = reverse("taskcenter:run_detail", args=["page-1"])
    page = staff_client.get(url)
    assert b"2 of 3" in page.content and b"Apply strategy" in page.content
    response = staff_client.post(reverse("taskcenter:run_recover", args=["page-1"]), {"strategy": "RESUME"})
    action = RecoveryAction.objects.get(task_id="page-1")
    assert response.status_code == 302 and response.url == reverse("taskcenter:run_detail", args=[action.new_task_id])
    assert action.actor == staff_client.user
    assert b"operator" in staff_client.get(url).content
    new_page = staff_client.get(response.url).content
    assert b"Launched by <strong>RESUME</strong>" in new_page
    assert Run.objects.get(task_result_id=action.new_task_id).retry_of_id == run.pk


def test_a_strategy_applies_to_selected_runs_in_bulk(staff_client, redis_server):
    for task_id in ("bulk-1", "bulk-2"):
        failed_run(task_id)
    ok = failed_run("bulk-3", status="SUCCESS")
    response = staff_client.post(BULK, {"strategy": "SKIP", "task_ids": ["bulk-1", "bulk-2", ok.task_id, "nope"]})
    assert response.status_code == 302
    assert sorted(RecoveryAction.objects.values_list("task_id", flat=True)) == ["bulk-1", "bulk-2"]


def test_history_applies_a_strategy_to_the_runs_selected_there(staff_client):
    failed_run("hist-1")
    history = staff_client.get(reverse("taskcenter:run_list")).content.decode()
    assert f'formaction="{BULK}"' in history and 'value="hist-1" form="bulk-retry"' in history
    # The History form posts its filter fields and scope too; they are ignored.
    response = staff_client.post(BULK, {"strategy": "MANUAL", "task_ids": ["hist-1"], "state": "FAILURE", "scope": ""})
    assert response.status_code == 302
    assert RecoveryAction.objects.get(task_id="hist-1").strategy == "MANUAL"


def test_the_apply_form_is_offered_only_for_a_run_a_strategy_applies_to(staff_client):
    failed_run("offer-ok", status="SUCCESS")
    failed_run("offer-failed")
    assert b"Apply strategy" not in staff_client.get(reverse("taskcenter:run_detail", args=["offer-ok"])).content
    assert b"Apply strategy" in staff_client.get(reverse("taskcenter:run_detail", args=["offer-failed"])).content


def test_the_policy_form_sets_an_override_audited(staff_client):
    response = staff_client.post(POLICY, {"task_name": "examples.add", "strategy": "RETRY"})
    assert response.status_code == 302
    assert RecoveryPolicy.objects.get(task_name="examples.add").changed_by == staff_client.user
    assert staff_client.post(POLICY, {"task_name": "nobody", "strategy": "RETRY"}).status_code == 400


def test_a_view_only_user_gets_403_on_every_action(viewer_client):
    failed_run("view-1")
    assert viewer_client.get(PAGE).status_code == 200
    assert b"Apply strategy" not in viewer_client.get(reverse("taskcenter:run_detail", args=["view-1"])).content
    for url, data in (
        (POLICY, {"task_name": "examples.add", "strategy": "SKIP"}),
        (BULK, {"strategy": "SKIP", "task_ids": ["view-1"]}),
        (reverse("taskcenter:run_recover", args=["view-1"]), {"strategy": "SKIP"}),
    ):
        assert viewer_client.post(url, data).status_code == 403, url
    assert not RecoveryAction.objects.exists() and not RecoveryPolicy.objects.exists()


def test_control_without_the_tasks_launch_permission_is_refused(client, django_user_model):
    user = django_user_model.objects.create_user(username="ctl", password="pw-1", is_staff=True)
    for codename in ("view_run", "control_run"):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="taskcenter"))
    client.force_login(user)
    failed_run("ctl-1")
    assert client.post(reverse("taskcenter:run_recover", args=["ctl-1"]), {"strategy": "SKIP"}).status_code == 403
    assert client.post(BULK, {"strategy": "SKIP", "task_ids": ["ctl-1"]}).status_code == 403


def test_the_command_applies_a_strategy_and_lists_checkpoints(django_user_model):
    run = failed_run("cmd-1")
    checkpoint("cmd-1", done=2)
    out = StringIO()
    call_command("recovery", "checkpoints", "cmd-1", stdout=out)
    assert "2 of 3" in out.getvalue() and "ok" in out.getvalue()
    Checkpoint.objects.update(state={"done": 99})
    out = StringIO()
    call_command("recovery", "checkpoints", "cmd-1", "--json", stdout=out)
    assert '"valid": false' in out.getvalue()
    django_user_model.objects.create_user(username="nobody-special", password="pw-1", is_staff=True)
    with pytest.raises(CommandError, match="may not"):
        call_command("recovery", "apply", "cmd-1", "--strategy", "SKIP", "--user", "nobody-special")
    out = StringIO()
    call_command("recovery", "apply", "cmd-1", "--strategy", "SKIP", stdout=out)
    assert "SKIP applied" in out.getvalue()
    assert RecoveryAction.objects.get(task_id=run.task_id).strategy == "SKIP"
    with pytest.raises(CommandError, match="No run"):
        call_command("recovery", "apply", "missing", "--strategy", "SKIP")
    with pytest.raises(CommandError, match="only"):
        call_command("recovery", "apply", failed_run("cmd-2", status="STARTED").task_id, "--strategy", "SKIP")


def test_fuzz_recovery_forms(admin_client, outcome):  # noqa: F811
    failed_run("fuzz-1")
    recover = reverse("taskcenter:run_recover", args=["fuzz-1"])
    outcome.sweep(admin_client, "post", POLICY, {"task_name": "examples.add"}, ["task_name", "strategy"])
    outcome.sweep(admin_client, "post", BULK, {"strategy": "MANUAL"}, ["strategy", "task_ids"])
    outcome.sweep(admin_client, "post", recover, {}, ["strategy"])

    @FUZZ
    @given(params=query(["task_name", "strategy", "task_ids"]))
    def fuzz(params):
        outcome.request(admin_client, "post", POLICY, params)
        outcome.request(admin_client, "post", BULK, params)
        outcome.request(admin_client, "post", recover, params)
        outcome.request(admin_client, "get", PAGE, params)

    fuzz()
    outcome.check()


def test_manage_recovery_sets_strategies_but_applies_none(client, django_user_model):
    user = django_user_model.objects.create_user(username="rec-manager", password="pw-1", is_staff=True)
    for codename in ("view_run", "manage_recovery"):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="taskcenter"))
    client.force_login(user)
    failed_run("mgr-1")
    assert f'action="{POLICY}"'.encode() in client.get(PAGE).content
    assert client.post(POLICY, {"task_name": "examples.fail", "strategy": "MANUAL"}).status_code == 302
    assert RecoveryPolicy.objects.get(task_name="examples.fail").changed_by == user
    assert client.post(reverse("taskcenter:run_recover", args=["mgr-1"]), {"strategy": "SKIP"}).status_code == 403
