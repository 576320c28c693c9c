"""Checkpoints: checksum on canonical JSON, bounded write rate, corrupt ones ignored, lineage of a resume, cleanup."""

import logging
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter import checkpoints
from taskcenter.checkpoints import checkpoint_load, checkpoint_save, checkpoints_flush, checksum_of
from taskcenter.models import Checkpoint, RecoveryAction, Run
from taskcenter.services.retention import retention_cleanup

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fresh_memory():
    checkpoints._runs.clear()
    yield
    checkpoints._runs.clear()


def task(task_id: str):
    return SimpleNamespace(request=SimpleNamespace(id=task_id))


def a_run(task_id: str, *, status: str | None = None, retry_of: Run | None = None) -> Run:
    if status:
        TaskResult.objects.create(task_id=task_id, task_name="examples.process_items", status=status)
    name = "examples.process_items"
    return Run.objects.create(task_result_id=task_id, task_name=name, queue="low", retry_of=retry_of)


def test_the_checksum_is_of_the_canonical_json_whatever_the_key_order():
    assert checksum_of({"b": 1, "a": [1, 2]}) == checksum_of({"a": [1, 2], "b": 1})
    assert checksum_of({"a": 1}) != checksum_of({"a": 2})


def test_the_first_save_is_written_at_once_later_ones_at_most_once_per_interval_and_the_last_at_the_end(settings):
    settings.TASKCENTER_CHECKPOINT_INTERVAL = 3600
    t = task("rate-1")
    assert checkpoint_save(t, {"done": 1}, progress="1 of 5") is True
    assert checkpoint_save(t, {"done": 2}) is False
    assert checkpoint_save(t, {"done": 3}, progress="3 of 5") is False
    assert list(Checkpoint.objects.values_list("state", flat=True)) == [{"done": 1}]
    assert checkpoint_load(t) == {"done": 3}  # the state kept in memory is the latest
    checkpoints_flush("rate-1")
    rows = list(Checkpoint.objects.order_by("id").values_list("sequence", "state", "progress"))
    assert rows == [(1, {"done": 1}, "1 of 5"), (2, {"done": 3}, "3 of 5")]
    assert "rate-1" not in checkpoints._runs


def test_with_no_interval_every_save_is_written(settings):
    settings.TASKCENTER_CHECKPOINT_INTERVAL = 0
    t = task("rate-0")
    for done in range(1, 4):
        assert checkpoint_save(t, {"done": done}) is True
    assert Checkpoint.objects.filter(task_id="rate-0").count() == 3


def test_the_task_end_receiver_costs_nothing_for_a_run_without_checkpoints(django_assert_num_queries):
    with django_assert_num_queries(0):
        checkpoints.flush_at_task_end(task_id="never-saved")


def test_a_corrupt_checkpoint_is_ignored_with_a_log_line_and_the_one_before_is_used(settings, caplog):
    settings.TASKCENTER_CHECKPOINT_INTERVAL = 0
    t = task("corrupt-1")
    checkpoint_save(t, {"done": 4})
    checkpoint_save(t, {"done": 5})
    Checkpoint.objects.filter(task_id="corrupt-1", sequence=2).update(state={"done": 500})
    checkpoints._runs.clear()  # a new process: nothing in memory
    with caplog.at_level(logging.WARNING, logger="taskcenter.checkpoints"):
        assert checkpoint_load(t) == {"done": 4}
    assert "checksum does not match" in caplog.text


def test_a_state_that_is_not_plain_json_or_too_large_is_refused(settings):
    with pytest.raises(ValueError):
        checkpoint_save(task("bad-1"), {"x": float("nan")})
    with pytest.raises(TypeError):
        checkpoint_save(task("bad-1"), {"x": object()})
    settings.TASKCENTER_CHECKPOINT_MAX_BYTES = 10
    with pytest.raises(ValueError, match="exceeds"):
        checkpoint_save(task("bad-1"), {"items": "x" * 20})
    assert not Checkpoint.objects.exists()


def test_outside_a_task_there_is_no_checkpoint():
    with pytest.raises(RuntimeError):
        checkpoint_save(SimpleNamespace(request=SimpleNamespace(id=None)), {"done": 1})


def test_a_run_launched_with_resume_reads_its_predecessors_last_checkpoint_and_saves_in_its_lineage(settings):
    settings.TASKCENTER_CHECKPOINT_INTERVAL = 0
    first = a_run("lineage-a", status="FAILURE")
    checkpoint_save(task("lineage-a"), {"done": 10})
    RecoveryAction.objects.create(task_id="lineage-a", strategy="RESUME")  # new_task_id set after the launch
    a_run("lineage-b", retry_of=first)
    assert checkpoint_load(task("lineage-b")) == {"done": 10}
    checkpoint_save(task("lineage-b"), {"done": 12})
    assert Checkpoint.objects.get(task_id="lineage-b").root_task_id == "lineage-a"


def test_a_run_launched_with_retry_does_not_read_its_predecessors_checkpoints(settings):
    settings.TASKCENTER_CHECKPOINT_INTERVAL = 0
    first = a_run("retry-a", status="FAILURE")
    checkpoint_save(task("retry-a"), {"done": 10})
    RecoveryAction.objects.create(task_id="retry-a", strategy="RETRY", new_task_id="retry-b")
    a_run("retry-b", retry_of=first)
    assert checkpoint_load(task("retry-b")) is None


def test_cleanup_removes_old_checkpoints_of_finished_runs_only():
    old = timezone.now() - timedelta(days=30)
    a_run("done-run", status="SUCCESS")
    a_run("running-run", status="STARTED")
    a_run("waiting-run")
    Run.objects.create(task_result_id="expired-result-run", task_name="x", queue="low", recorded_state="FAILURE")
    for task_id, created in (
        ("done-run", old),
        ("running-run", old),
        ("waiting-run", old),
        ("expired-result-run", old),
        ("gone-run", old),
        ("done-run", timezone.now()),
    ):
        Checkpoint.objects.create(task_id=task_id, root_task_id=task_id, state={}, checksum=checksum_of({}),
                                  created_at=created)  # fmt: skip
    report = retention_cleanup(kinds=["checkpoints"])  # TASKCENTER_CHECKPOINT_RETENTION_DAYS: 7
    assert report.counts["checkpoints"] == 3
    assert sorted(Checkpoint.objects.values_list("task_id", flat=True)) == ["done-run", "running-run", "waiting-run"]
