"""The run page tells a run's whole story, with a real worker, monitor and broker."""

import re
import time

import pytest
from celery import current_app
from kombu import Exchange, Queue

from taskcenter.broker import broker_channel, priority_lists, queue_position
from taskcenter.models import Run
from taskcenter.retry_policy import OVERRIDES_KEY
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services import control
from taskcenter.services.launch import run_launch
from tests.conftest import broker_down, wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

#: A queue no worker consumes: its messages wait.
IDLE = "runpage-idle"


def page_of(client, task_id: str) -> str:
    response = client.get(f"/runs/{task_id}/")
    assert response.status_code == 200
    return response.content.decode()


def test_runs_sent_by_a_task_link_to_their_parent_and_root_and_back(staff_client, celery_worker):
    root = run_launch(task_name="examples.fan_out", kwargs={"count": 1, "depth": 2})
    wait_for_state(root, "SUCCESS", timeout=60)
    child = wait_for(lambda: Run.objects.filter(parent_task_id=root.task_id).first(), message="the child run")
    grandchild = wait_for(lambda: Run.objects.filter(parent_task_id=child.task_id).first(), message="the grandchild")
    wait_for_state(grandchild, "SUCCESS", timeout=60)
    assert (child.root_task_id, child.task_name) == (root.task_id, "examples.fan_out")
    assert (grandchild.root_task_id, grandchild.task_name) == (root.task_id, "examples.add")

    page = page_of(staff_client, grandchild.task_id)
    parent_box = re.search(r'class="lineage-parent">(.*?)</dd>', page, re.S).group(1)
    root_box = re.search(r'class="lineage-root">(.*?)</dd>', page, re.S).group(1)
    assert f"/runs/{child.task_id}/" in parent_box and "examples.fan_out" in parent_box
    assert f"/runs/{root.task_id}/" in root_box
    children_box = re.search(r'class="lineage-children">(.*?)</dd>', page_of(staff_client, root.task_id), re.S).group(1)
    assert f"/runs/{child.task_id}/" in children_box
    # A run nobody's task sent has no lineage.
    assert "lineage-parent" not in page_of(staff_client, root.task_id)


@pytest.fixture
def no_override(redis_server):
    client = redis_server.client()
    client.delete(OVERRIDES_KEY)
    yield
    client.delete(OVERRIDES_KEY)


def test_a_retried_run_shows_each_transition_with_its_worker_and_exception(
    staff_client, celery_worker, celery_monitor, no_override
):
    run = run_launch(task_name="examples.flaky", kwargs={"failures": 1})
    wait_for_state(run, "SUCCESS", timeout=60)
    wait_for(lambda: len(run_by_task_id(run.task_id).attempt_list) == 2, timeout=30, message="two attempts recorded")
    page = page_of(staff_client, run.task_id)
    rows = re.findall(r'<tr class="timeline-entry state-(\w+)">(.*?)</tr>', page, re.S)
    states = [state for state, _ in rows]
    assert states[0] == "pending" and states[-1] == "success", states
    assert states.index("started") < states.index("retry") < states.index("success"), states
    retried = next(row for state, row in rows if state == "retry")
    assert "Attempt 1 failed and will be retried" in retried
    assert "ConnectionError" in retried and "attempt 1: the server did not answer" in retried
    assert celery_worker.hostname in retried
    assert "retry due" in retried
    succeeded = next(row for state, row in rows if state == "success")
    assert "Attempt 2 succeeded" in succeeded and celery_worker.hostname in succeeded
    facts = re.search(r'class="attempt-count">(.*?)</dd>', page).group(1)
    assert facts == "2 attempts, 1 retry"
    assert re.search(r'class="wait-time">\d+\.\d\d s<', page) and re.search(r'class="run-time">\d+\.\d\d s<', page)


def _send_to_idle_queue(priority: int) -> Run:
    queue = Queue(IDLE, Exchange(IDLE, type="direct"), routing_key=IDLE)
    result = current_app.tasks["examples.add"].apply_async((1, 2), queue=queue, priority=priority)
    return wait_for(lambda: Run.objects.filter(task_result_id=result.id).first(), message="the run recorded")


@pytest.fixture
def idle_queue(redis_server):
    sent: list[Run] = []
    yield sent
    for run in sent:
        control.run_cancel(run=run, actor=None)
    with broker_channel() as channel:
        channel.client.delete(*priority_lists(channel, IDLE).values())


def test_a_waiting_run_shows_its_place_in_its_queue(staff_client, idle_queue):
    first = _send_to_idle_queue(priority=6)  # NORMAL
    second = _send_to_idle_queue(priority=6)
    urgent = _send_to_idle_queue(priority=3)  # HIGH: served before both
    idle_queue.extend([first, second, urgent])
    assert first.queue == IDLE
    assert "position ~2 in queue runpage-idle" in page_of(staff_client, first.task_id)
    assert "position ~3 in queue runpage-idle" in page_of(staff_client, second.task_id)
    assert "position ~1 in queue runpage-idle" in page_of(staff_client, urgent.task_id)
    with broker_channel() as channel:
        # The search reads a bounded number of messages: beyond it, the place is not known.
        far = queue_position(channel, IDLE, second.task_id, limit=2)
        assert (far.position, far.beyond, far.scanned) == (None, True, 2)
        assert queue_position(channel, IDLE, "no-such-id").position is None


def test_the_run_page_renders_fast_when_the_broker_is_down(staff_client, tmp_path, redis_server):
    run = Run.objects.create(task_result_id="runpage-down-1", task_name="examples.add", queue="high", args=[1, 2])
    for frozen in (False, True):
        folder = tmp_path / ("frozen" if frozen else "stopped")
        folder.mkdir()
        with broker_down(folder, redis_server, frozen=frozen):
            began = time.monotonic()
            response = staff_client.get(f"/runs/{run.task_id}/")
            elapsed = time.monotonic() - began
        assert response.status_code == 200
        assert "The broker does not answer" in response.content.decode()
        assert elapsed < 2.0, elapsed
