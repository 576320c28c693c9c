"""Dead letters written by a real worker: a final failure, a rejected message, an expired run; replay from the page."""

import json
import time
import uuid

import pytest
from django.urls import reverse

from taskcenter.models import AuditEntry, DeadLetter, Run
from taskcenter.secret_arguments import MASK, unseal
from taskcenter.services.launch import run_launch
from tests.conftest import wait_for, wait_for_state
from tests.test_control_e2e import paused_queue
from tests.test_worker_guard import publish, task_headers

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def letter_of(task_id: str, timeout: float = 30) -> DeadLetter:
    wait_for(lambda: DeadLetter.objects.filter(task_id=task_id).exists(), timeout=timeout, message="a dead letter")
    return DeadLetter.objects.get(task_id=task_id)


def test_a_task_that_always_fails_ends_as_a_dead_letter_with_its_traceback(celery_worker):
    run = run_launch(task_name="examples.fail", kwargs={"message": "boom for the letter"})
    letter = letter_of(run.task_id)
    assert letter.reason == DeadLetter.Reason.FAILED
    assert letter.task_name == "examples.fail" and letter.queue == run.queue
    assert letter.exception_type == "ExampleFailure" and letter.message == "boom for the letter"
    assert "Traceback" in letter.traceback and "_check_input" in letter.traceback
    assert letter.kwargs == {"message": "boom for the letter"}
    assert letter.worker == celery_worker.hostname
    assert letter.resolution == ""


def test_a_successful_task_leaves_no_dead_letter(celery_worker):
    run = run_launch(task_name="examples.add", args=[2, 3])
    wait_for_state(run, "SUCCESS")
    assert not DeadLetter.objects.filter(task_id=run.task_id).exists()


def test_a_secret_argument_is_masked_in_the_dead_letter_and_sealed_for_a_replay(celery_worker):
    # A plain client's message (no Run row): the worker masks and seals the secret itself.
    task_id = f"secret-{uuid.uuid4()}"
    kwargs = {"host": "db", "user": "u", "password": 31337}  # not a string: the task fails
    publish(json.dumps([[], kwargs, {}]), headers=task_headers(task_id, task="examples.connect"))
    letter = letter_of(task_id)
    assert letter.reason == DeadLetter.Reason.FAILED and letter.exception_type == "AttributeError"
    assert letter.kwargs == {"host": "db", "user": "u", "password": MASK}
    assert "31337" not in json.dumps([letter.args, letter.kwargs, letter.message])
    assert unseal(letter.secrets) == {"password": 31337}


def test_a_bad_message_from_a_plain_client_ends_as_a_dead_letter_rejected(celery_worker):
    task_id = f"bad-{uuid.uuid4()}"
    publish(json.dumps([{"x": 1}, {}, {}]), headers=task_headers(task_id))
    letter = letter_of(task_id)
    assert letter.reason == DeadLetter.Reason.REJECTED
    assert letter.task_name == "examples.add" and letter.queue == "default"
    assert "arguments (args) are not a list" in letter.message
    assert letter.exception_type == "MessageRejected"
    assert letter.args == [] and letter.kwargs == {}


def test_a_message_for_an_unknown_task_ends_as_a_dead_letter_rejected(celery_worker):
    task_id = f"unknown-{uuid.uuid4()}"
    publish(json.dumps([[1], {}, {}]), headers=task_headers(task_id, task="nobody.knows.this"))
    letter = letter_of(task_id)
    assert letter.reason == DeadLetter.Reason.REJECTED and letter.task_name == "nobody.knows.this"
    assert letter.exception_type == "NotRegistered" and "Unknown task" in letter.message


def test_a_run_that_expired_in_a_paused_queue_ends_as_a_dead_letter_expired(celery_worker):
    with paused_queue(celery_worker, "low"):
        run = run_launch(task_name="examples.add", args=[1, 1], queue="low", expires=1)
        time.sleep(2)
    letter = letter_of(run.task_id)
    assert letter.reason == DeadLetter.Reason.EXPIRED
    assert letter.args == [1, 1] and letter.queue == "low"
    assert "Expired" in letter.message


def test_replay_with_edited_arguments_launches_a_linked_run_and_marks_the_letter(staff_client, celery_worker):
    run = run_launch(task_name="examples.fail", kwargs={"message": "first"})
    letter = letter_of(run.task_id)
    page = staff_client.get(reverse("taskcenter:deadletter_replay", args=[letter.pk]))
    assert page.status_code == 200 and "first" in page.content.decode()
    response = staff_client.post(
        reverse("taskcenter:deadletter_replay", args=[letter.pk]), {"args": "[]", "kwargs": '{"message": "second"}'}
    )
    assert response.status_code == 302
    new_run = Run.objects.get(retry_of=run)
    assert response["Location"] == reverse("taskcenter:run_detail", args=[new_run.task_id])
    assert new_run.kwargs == {"message": "second"}
    letter.refresh_from_db()
    assert letter.resolution == "replayed" and letter.replayed_as == new_run.task_id
    assert letter.resolved_by == staff_client.user and letter.resolved_at is not None
    entry = AuditEntry.objects.get(action=AuditEntry.Action.DEADLETTER_REPLAY)
    assert entry.task_id == run.task_id and entry.outcome == "ok" and new_run.task_id in entry.message
    # The replay fails too: it is a dead letter of its own, the first one stays replayed.
    assert letter_of(new_run.task_id).kwargs == {"message": "second"}
    again = staff_client.post(reverse("taskcenter:deadletter_replay", args=[letter.pk]), {"args": "[]"})
    assert again.status_code == 409 and Run.objects.filter(retry_of=run).count() == 1
