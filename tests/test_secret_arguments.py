"""Secret arguments reach the worker and are masked everywhere else, re-runs included."""

import hashlib
import json

import pytest
from celery import current_app
from django.test import override_settings
from django.urls import reverse
from django_celery_results.models import TaskResult

from taskcenter import catalogue, secret_arguments
from taskcenter.models import AuditEntry, Run
from taskcenter.secret_arguments import MASK
from tests.conftest import wait_for

PASSWORD = "hunter2-Sup3r-s3cret"
FINGERPRINT = hashlib.sha256(PASSWORD.encode()).hexdigest()[:12]


def entry():
    return catalogue.get_entry("examples.connect")


# --- Masking and sealing (pure logic) ---------------------------------------------------


def test_mask_replaces_secret_arguments_however_they_are_passed():
    args, kwargs, real = secret_arguments.mask(entry(), ["db", "admin", PASSWORD], {})
    assert args == ["db", "admin", MASK] and real == {"password": PASSWORD}
    args, kwargs, real = secret_arguments.mask(entry(), ["db"], {"user": "admin", "password": PASSWORD})
    assert kwargs == {"user": "admin", "password": MASK} and real == {"password": PASSWORD}
    # A chain step after the first: Celery prepends the previous result.
    args, _, real = secret_arguments.mask(entry(), ["admin", PASSWORD], {}, leading=1)
    assert args == ["admin", MASK]


def test_sealed_values_are_encrypted_and_come_back_only_with_the_key(settings):
    token = secret_arguments.seal({"password": PASSWORD})
    assert PASSWORD not in token and "hunter2" not in token
    assert secret_arguments.unseal(token) == {"password": PASSWORD}
    assert secret_arguments.seal({"password": PASSWORD}) != token  # a fresh nonce each time
    tampered = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    assert secret_arguments.unseal(tampered) == {}
    with override_settings(SECRET_KEY="another-key-" * 4, SECRET_KEY_FALLBACKS=[settings.SECRET_KEY]):
        assert secret_arguments.unseal(token) == {"password": PASSWORD}  # rotated key
    with override_settings(SECRET_KEY="another-key-" * 4, SECRET_KEY_FALLBACKS=[]):
        assert secret_arguments.unseal(token) == {}


def test_restore_keeps_changed_values_and_refills_masks():
    sealed = secret_arguments.seal({"password": PASSWORD})
    args, kwargs = secret_arguments.restore(entry(), ["db", "admin"], {"password": MASK}, sealed)
    assert kwargs == {"password": PASSWORD}
    args, kwargs = secret_arguments.restore(entry(), ["db", "admin", "new-one"], {}, sealed)
    assert args == ["db", "admin", "new-one"]
    with pytest.raises(secret_arguments.SecretUnavailable):
        secret_arguments.restore(entry(), ["db", "admin", MASK], {}, "")


def test_a_secret_that_names_no_parameter_is_refused_at_declaration():
    def task(user: str):
        pass

    with pytest.raises(ValueError, match="secret names no parameter"):
        catalogue.register("tests.bad_secret", task, secret=("password",))
    assert catalogue.get_entry("tests.bad_secret") is None


@pytest.mark.django_db
def test_type_errors_never_repeat_a_secret_value(redis_server):
    from taskcenter.services.launch import InvalidLaunch, run_launch

    with pytest.raises(InvalidLaunch) as info:
        run_launch(task_name="examples.connect", kwargs={"host": "db", "user": "u", "password": [PASSWORD]})
    assert "password" in str(info.value) and PASSWORD not in str(info.value)


# --- End to end with a real worker ------------------------------------------------------------


def assert_nowhere(run: Run, client) -> TaskResult:
    """The secret is in none of the places it could leak to from a finished run."""
    result = wait_for(
        lambda: TaskResult.objects.filter(task_id=run.task_id, status__in=("SUCCESS", "FAILURE")).first(),
        timeout=60,
        message=f"{run.task_id} to finish",
    )
    assert result.status == "SUCCESS", result.traceback
    assert FINGERPRINT in result.result  # the worker had the real password
    run = Run.objects.get(pk=run.pk)
    stored = json.dumps([run.args, run.kwargs, run.dedup_key])
    assert PASSWORD not in stored and MASK in stored and PASSWORD not in run.secrets
    assert PASSWORD not in (result.task_args or "") + (result.task_kwargs or "")
    assert MASK in (result.task_args or "") + (result.task_kwargs or "")
    page = client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert PASSWORD not in page and MASK in page
    for entry in AuditEntry.objects.all():
        assert PASSWORD not in json.dumps([entry.message, entry.detail, entry.target])
    return result


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_a_secret_argument_reaches_the_worker_and_is_masked_everywhere_else(staff_client, celery_worker):
    response = staff_client.post(
        reverse("taskcenter:launch", args=["examples.connect"]),
        {
            "mode": "typed",
            "arg_host": "db.internal",
            "arg_user": "admin",
            "arg_password": PASSWORD,
            "queue": "default",
            "priority": "NORMAL",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    first = Run.objects.get()
    assert_nowhere(first, staff_client)

    # Re-run: the form shows the mask, and sending it back sends the real value again.
    retry_url = reverse("taskcenter:run_retry", args=[first.task_id])
    form_page = staff_client.get(retry_url).content.decode()
    assert PASSWORD not in form_page and MASK in form_page
    response = staff_client.post(
        retry_url, {"args": "[]", "kwargs": json.dumps({"host": "db.internal", "user": "admin", "password": MASK})}
    )
    assert response.status_code == 302
    assert_nowhere(Run.objects.get(retry_of=first), staff_client)

    # Sent by application code (not the launch service): masked too, and its re-run works.
    sent = current_app.tasks["examples.connect"].delay("db.internal", "admin", PASSWORD)
    by_code = wait_for(lambda: Run.objects.filter(task_result_id=sent.id).first(), message="the code-sent run")
    assert_nowhere(by_code, staff_client)
    assert staff_client.post(reverse("taskcenter:run_retry", args=[by_code.task_id]), {
        "args": json.dumps(by_code.args), "kwargs": "{}",
    }).status_code == 302  # fmt: skip
    assert_nowhere(Run.objects.get(retry_of=by_code), staff_client)

    # Sent by name, as a plain client would: the publish signal masks what is stored and logged.
    by_name = current_app.send_task("examples.connect", args=["db.internal", "admin", PASSWORD], queue="default")
    assert_nowhere(wait_for(lambda: Run.objects.filter(task_result_id=by_name.id).first(), message="run"), staff_client)

    assert PASSWORD not in celery_worker.log()


@pytest.mark.parametrize("how", ["send_task by name", "delay", "apply_async with a caller's argsrepr", "signature"])
def test_every_message_masks_secrets_in_its_reprs_and_sent_event_but_keeps_them_in_its_body(how):
    """What events (Flower), results and logs show is masked, whoever builds the message."""
    from celery import current_app

    from taskcenter.examples.tasks import connect

    amqp, real = current_app.amqp, ["db.example", "ops", "hunter2-secret"]
    built = []
    original = amqp.create_task_message

    def capture(*args, **kwargs):
        built.append(original(*args, **kwargs))
        raise RuntimeError("captured, not sent")

    amqp.create_task_message = capture
    try:
        with pytest.raises(RuntimeError, match="captured"):
            if how == "send_task by name":
                current_app.send_task("examples.connect", args=real)
            elif how == "delay":
                connect.delay(*real)
            elif how == "signature":
                connect.s(*real[:2], password=real[2]).apply_async()
            else:
                connect.apply_async(real, argsrepr=repr(real), kwargsrepr="{}")
    finally:
        amqp.create_task_message = original
    headers, _, body, sent_event = built[0]
    assert "hunter2-secret" in json.dumps(body)  # the worker gets the real value
    shown = json.dumps([headers.get("argsrepr"), headers.get("kwargsrepr"), sent_event], default=str)
    assert "hunter2-secret" not in shown and secret_arguments.MASK in shown
