"""Live progress of long tasks, reported by the task and read by the pages."""

import pytest
from django.urls import reverse

from taskcenter.progress import Progress, progress_of, report_progress
from taskcenter.services.launch import run_launch
from tests.conftest import wait_for


def test_speed_and_eta_come_from_items_done_over_time():
    progress = Progress(percent=25, done=5, total=20, message="", started_at=100.0, updated_at=110.0)
    assert progress.rate == 0.5
    assert progress.eta_seconds == 30
    assert progress.as_dict()["eta_seconds"] == 30


def test_reports_are_throttled_but_the_final_one_always_lands(redis_server):
    report_progress("t-1", done=1, total=10, message="one")
    report_progress("t-1", done=2, total=10, message="two")  # within 0.25 s: skipped
    assert progress_of(["t-1"])["t-1"].done == 1
    report_progress("t-1", done=10, total=10, message="done")
    latest = progress_of(["t-1", "unknown"])
    assert latest["t-1"].percent == 100 and latest["t-1"].message == "done" and "unknown" not in latest


def test_reporting_without_a_broker_never_raises(tmp_path, redis_server):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server):
        report_progress("t-2", percent=50)


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_long_example_task_reports_progress_to_the_page_until_it_succeeds(staff_client, celery_worker):
    run = run_launch(task_name="examples.process_items", kwargs={"items": 6, "seconds_per_item": 0.4})
    url = reverse("taskcenter:run_progress")
    detail = staff_client.get(reverse("taskcenter:run_detail", args=[run.task_id])).content.decode()
    assert f'data-progress-for="{run.task_id}"' in detail

    def midway():
        info = staff_client.get(url, {"ids": run.task_id}).json()[run.task_id]
        p = info["progress"]
        return info["state"] == "STARTED" and p and 0 < p["done"] < 6 and p["rate"] and p["eta_seconds"] is not None

    wait_for(midway, timeout=30, message="progress to be reported while running")

    def finished():
        info = staff_client.get(url, {"ids": run.task_id}).json()[run.task_id]
        return info["finished"] and info

    info = wait_for(finished, timeout=30, message="the run to finish")
    assert info["state"] == "SUCCESS" and info["progress"]["percent"] == 100 and info["progress"]["done"] == 6


@pytest.mark.django_db
def test_progress_endpoint_needs_a_logged_in_operator(client):
    assert client.get(reverse("taskcenter:run_progress"), {"ids": "x"}).status_code == 302
