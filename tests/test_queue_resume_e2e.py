"""Resume reaches a worker that started while its queue was paused (real Redis, real workers)."""

import pytest
from django_celery_results.models import TaskResult

from taskcenter.models import QueueState
from taskcenter.services.launch import run_launch
from taskcenter.services.queues import queue_resume
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_worker_started_while_its_queue_was_paused_consumes_it_after_resume(
    private_redis, private_broker, admin_user
):
    from tests.test_recovery_e2e import start_worker, stop_all

    QueueState.objects.create(name="low", paused=True)
    worker = start_worker(private_redis, "started-paused", queues="default,low")
    try:
        assert "paused queues not consumed: low" in worker.log()
        queue_resume(name="low", actor=admin_user)
        run = run_launch(task_name="examples.add", args=[2, 3], queue="low")
        wait_for(
            lambda: TaskResult.objects.filter(task_id=run.task_id, status="SUCCESS").exists(),
            timeout=30, message="the task on the resumed queue",
        )  # fmt: skip
    finally:
        stop_all(worker)


def test_resume_leaves_a_worker_dedicated_to_other_queues_alone(private_redis, private_broker, admin_user):
    from celery import current_app

    from tests.test_recovery_e2e import start_worker, stop_all

    QueueState.objects.create(name="low", paused=True)
    dedicated = start_worker(private_redis, "dedicated-high", queues="high")
    try:
        queue_resume(name="low", actor=admin_user)
        replies = current_app.control.inspect(destination=[dedicated.hostname], timeout=2).active_queues()
        assert [queue["name"] for queue in replies[dedicated.hostname]] == ["high"]
    finally:
        stop_all(dedicated)
