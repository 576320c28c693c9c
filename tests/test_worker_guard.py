"""A worker survives any task message, whoever sent it.

Each bad message is published by a plain client (a kombu producer, Celery's
``send_task`` or a raw LPUSH) to the head of a queue a real worker consumes; the
worker must reject it, record the run as failed with the reason when the message
names a task id, and go on to run the ten good runs queued behind it.
"""

import json
import pickle
import uuid

import pytest
from django_celery_results.models import TaskResult

from config.celery import app as celery_app
from tests.conftest import CeleryProcess, process_env, use_broker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

QUEUE = "default"


def nested_json(depth: int) -> str:
    """A JSON object nested ``depth`` levels deep, built without recursion."""
    return '{"a":' * depth + "1" + "}" * depth


def publish(body, *, headers: dict, content_type: str = "application/json", priority: int = 0) -> None:
    """Publish a message with a plain kombu producer, at the head of the queue (priority 0)."""
    with celery_app.connection_for_write() as connection:
        producer = connection.Producer()
        producer.publish(
            body,
            exchange=QUEUE,
            routing_key=QUEUE,
            headers=headers,
            content_type=content_type,
            content_encoding="utf-8" if content_type != "application/x-python-serialize" else "binary",
            priority=priority,
            retry=False,
        )


def task_headers(task_id: str, task: str = "examples.add", **extra) -> dict:
    return {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "argsrepr": "", "kwargsrepr": "", **extra}


def bad_send_task_deep_kwargs(task_id):
    # The case: a plain Celery client, kwargs nested ~900 deep (pickling them for the pool recursed).
    headers = task_headers(task_id)
    publish(f'[[], {{"x": {nested_json(900)}}}, {{}}]', headers=headers)
    return "arguments nested deeper than 100 levels"


def bad_deeper_than_the_decoder(task_id):
    publish(f"[[{nested_json(5000)}], {{}}, {{}}]", headers=task_headers(task_id))
    return "body could not be decoded"


def bad_args_not_a_list(task_id):
    publish(json.dumps([{"x": 1}, {}, {}]), headers=task_headers(task_id))
    return "arguments (args) are not a list"


def bad_kwargs_not_an_object(task_id):
    publish(json.dumps([[1], [2], {}]), headers=task_headers(task_id))
    return "keyword arguments (kwargs) are not an object"


def bad_body_not_three_parts(task_id):
    publish(json.dumps([[1, 2], {}]), headers=task_headers(task_id))
    return "body is not a list of [args, kwargs, embed]"


def bad_body_an_object(task_id):
    publish(json.dumps({"args": [1, 2]}), headers=task_headers(task_id))
    return "body is not a list of [args, kwargs, embed]"


def bad_embed_not_an_object(task_id):
    publish(json.dumps([[1, 2], {}, "callbacks"]), headers=task_headers(task_id))
    return "embed"


def bad_pickle(task_id):
    pickled = pickle.dumps(((1, 2), {}, {}))
    publish(pickled, headers=task_headers(task_id), content_type="application/x-python-serialize")
    return "content type 'application/x-python-serialize' is not accepted"


def bad_invalid_json(task_id):
    publish("[[1, 2], {}, {", headers=task_headers(task_id))
    return "body could not be decoded"


def bad_huge(task_id):
    publish(json.dumps([["x" * (11 * 1024 * 1024)], {}, {}]), headers=task_headers(task_id))
    return "larger than the limit of 10485760 bytes"


def bad_deep_headers(task_id):
    publish(json.dumps([[1, 2], {}, {}]), headers=task_headers(task_id, extra=json.loads(nested_json(300))))
    return "headers nested deeper than 100 levels"


def bad_unknown_task(task_id):
    celery_app.send_task("no.such.task", args=[1], task_id=task_id, queue=QUEUE, priority=0)
    return "no.such.task"


def bad_bad_eta(task_id):
    publish(json.dumps([[1, 2], {}, {}]), headers=task_headers(task_id, eta="not a date"))
    return "invalid ETA value"


CASES_WITH_ID = [
    bad_send_task_deep_kwargs,
    bad_deeper_than_the_decoder,
    bad_args_not_a_list,
    bad_kwargs_not_an_object,
    bad_body_not_three_parts,
    bad_body_an_object,
    bad_embed_not_an_object,
    bad_pickle,
    bad_invalid_json,
    bad_huge,
    bad_deep_headers,
    bad_unknown_task,
    bad_bad_eta,
]


def run_ten_and_check_the_worker(worker) -> None:
    """Queue ten good runs behind the bad message: all succeed, and the worker is the same live process."""
    pid = worker.process.pid
    results = [celery_app.send_task("examples.add", args=[i, i], queue=QUEUE) for i in range(10)]
    assert [result.get(timeout=90) for result in results] == [2 * i for i in range(10)]
    assert worker.process.poll() is None and worker.process.pid == pid
    assert celery_app.control.ping(destination=[worker.hostname], timeout=2)


@pytest.mark.parametrize("bad_message", CASES_WITH_ID, ids=lambda case: case.__name__.removeprefix("bad_"))
def test_worker_rejects_a_bad_message_records_the_failure_and_keeps_consuming(celery_worker, bad_message):
    task_id = f"bad-{uuid.uuid4()}"
    reason = bad_message(task_id)

    result = wait_for(
        lambda: TaskResult.objects.filter(task_id=task_id).first(), timeout=60, message="the rejection to be recorded"
    )
    assert result.status == "FAILURE"
    assert reason in result.result, result.result
    run_ten_and_check_the_worker(celery_worker)
    assert task_id in celery_worker.log()


@pytest.mark.parametrize(
    "headers",
    [
        {"task": "examples.add"},  # no id
        {"task": "examples.add", "id": 42},  # id not a string
        {},  # no task name at all (an old protocol 1 message needs it in the body)
    ],
    ids=["missing-id", "id-not-a-string", "no-headers"],
)
def test_worker_rejects_a_message_without_usable_headers_and_keeps_consuming(celery_worker, headers):
    marker = f"marker-{uuid.uuid4()}"
    publish(json.dumps([[marker], {}, {}]), headers=headers)
    run_ten_and_check_the_worker(celery_worker)
    wait_for(lambda: "Rejected task message" in celery_worker.log(), timeout=10, message="the rejection to be logged")


@pytest.mark.parametrize(
    "raw",
    [
        "not json at all",
        json.dumps({"body": "!!!", "headers": {"task": "examples.add", "id": "raw-x"}, "properties": {}}),
        json.dumps(["not", "an", "envelope"]),
        nested_json(5000),
    ],
    ids=["invalid-json", "body-not-base64", "envelope-a-list", "envelope-too-deep"],
)
def test_worker_survives_garbage_pushed_straight_onto_the_queue(celery_worker, redis_server, raw):
    redis_server.client().lpush(QUEUE, raw)
    run_ten_and_check_the_worker(celery_worker)


def test_a_valid_message_from_a_plain_producer_still_runs(celery_worker):
    task_id = f"plain-{uuid.uuid4()}"
    publish(json.dumps([[20, 22], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]),
            headers=task_headers(task_id))  # fmt: skip
    assert celery_app.AsyncResult(task_id).get(timeout=60) == 42


@pytest.fixture
def unchecked_worker(django_db_blocker, private_redis, redis_server):
    """A worker on a Redis of its own whose depth check lets everything through to the pool."""
    private_redis.client().flushall()
    with django_db_blocker.unblock():
        env = process_env(private_redis, TASKCENTER_MESSAGE_MAX_DEPTH="100000")
    hostname = f"unchecked-{uuid.uuid4().hex[:8]}@localhost"
    worker = CeleryProcess(
        "worker-unchecked",
        ["worker", "--loglevel=INFO", "--concurrency=1", f"--hostname={hostname}", "--without-mingle"],
        env,
    )
    worker.hostname = hostname
    use_broker(private_redis.url)
    try:
        wait_for(lambda: celery_app.control.ping(destination=[hostname], timeout=0.5), timeout=60, message="ping")
        yield worker
    finally:
        use_broker(redis_server.url)
        worker.stop()


def test_a_request_the_pool_cannot_take_is_refused_and_its_pool_slot_given_back(unchecked_worker):
    # With the depth check out of the way, pickling the arguments for the pool recurses:
    # the request is refused there, and the one pool slot is free for the runs behind it.
    task_ids = [f"deep-{uuid.uuid4()}" for _ in range(2)]
    for task_id in task_ids:
        publish(f'[[], {{"x": {nested_json(900)}}}, {{}}]', headers=task_headers(task_id))
    for task_id in task_ids:
        recorded = TaskResult.objects.filter(task_id=task_id)
        result = wait_for(recorded.first, timeout=60, message="the failure to be recorded")
        assert result.status == "FAILURE"
        assert "RecursionError while handing the task to the pool" in result.result, result.result
    run_ten_and_check_the_worker(unchecked_worker)


def test_a_bad_message_reusing_a_finished_runs_id_does_not_overwrite_its_result(celery_worker):
    task_id = f"done-{uuid.uuid4()}"
    assert celery_app.send_task("examples.add", args=[1, 2], task_id=task_id, queue=QUEUE).get(timeout=60) == 3
    publish(json.dumps([{"x": 1}, {}, {}]), headers=task_headers(task_id))
    run_ten_and_check_the_worker(celery_worker)
    wait_for(lambda: f"Not recording the rejection of {task_id}" in celery_worker.log(), timeout=10, message="log")
    assert TaskResult.objects.get(task_id=task_id).status == "SUCCESS"
