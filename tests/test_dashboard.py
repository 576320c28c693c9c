"""Dashboard page and the SVG charts module.

The page is fed by rows made here (``TaskMinute``, ``QueueSample``), messages
pushed into a real Redis server (a queue no worker consumes), and worker,
monitor and beat state written in that Redis the way the monitor and beat write
it, on a Redis server of this module's own so no other process changes it.
"""

import json
import re
import time
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.charts import line_chart
from taskcenter.models import DURATION_BUCKETS, QueueSample, Run, TaskMinute

SVG = "{http://www.w3.org/2000/svg}"
QUEUE = "dashboard-test"
PRIORITY_SEPARATOR = "\x06\x16"
T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

# --- Charts (pure) ---------------------------------------------------------------------


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(str(svg))
    assert root.tag == f"{SVG}svg"
    return root


def minutes(values, start=T0):
    return [(start + timedelta(minutes=i), value) for i, value in enumerate(values)]


def test_chart_is_valid_svg_with_axes_gridlines_time_labels_and_legend():
    svg = line_chart(
        {"succeeded": minutes(range(61)), "failed": minutes([1] * 61)}, width=640, height=220, y_label="tasks / min"
    )
    root = parse(svg)
    assert root.get("width") == "640" and root.get("height") == "220"
    assert len(root.findall(f"{SVG}line[@class='axis']")) == 2
    assert len(root.findall(f"{SVG}line[@class='grid']")) >= 6
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "08:00" in texts and "08:30" in texts and "09:00" in texts, texts
    assert "0" in texts and "60" in texts, "value axis runs from 0 to a round number above the top value"
    assert [t.text for t in root.findall(f"{SVG}text[@class='legend']")] == ["succeeded", "failed"]
    assert "tasks / min" in texts
    paths = {p.get("data-series"): p.get("d") for p in root.findall(f"{SVG}path")}
    assert set(paths) == {"succeeded", "failed"}
    assert paths["succeeded"].startswith("M") and paths["succeeded"].count("L") == 60


def test_chart_escapes_every_text():
    hostile = '<script>alert("x")</script> & "q"'
    svg = line_chart({hostile: minutes([1, 2])}, width=400, height=160, y_label=hostile, title=hostile)
    assert "<script>" not in svg
    root = parse(svg)
    assert root.find(f"{SVG}title").text == hostile
    assert root.get("aria-label") == hostile
    assert [t.text for t in root.findall(f"{SVG}text[@class='legend']")] == [hostile]
    assert root.find(f"{SVG}path").get("data-series") == hostile


def test_chart_breaks_lines_at_none_and_draws_lone_points():
    root = parse(line_chart({"p95": minutes([1, 2, None, 3, 4, None, 5, None])}, width=400, height=160))
    path_data = root.find(f"{SVG}path").get("d")
    assert path_data.count("M") == 2, "a gap starts a new segment"
    assert len(root.findall(f"{SVG}circle")) == 1, "a value between two gaps is drawn as a dot"


@pytest.mark.parametrize(
    "series",
    [{}, {"succeeded": []}, {"p95": minutes([None, None, None])}],
    ids=["no-series", "empty-series", "only-gaps"],
)
def test_chart_without_values_draws_axes_and_says_no_data(series):
    root = parse(line_chart(series, width=300, height=120, y_label="s"))
    assert root.find(f"{SVG}text[@class='empty']").text == "No data"
    assert len(root.findall(f"{SVG}line[@class='axis']")) == 2
    assert root.find(f"{SVG}path") is None


def test_chart_spans_the_given_window_and_labels_in_the_given_zone():
    from zoneinfo import ZoneInfo

    day_start = T0 - timedelta(days=1)
    root = parse(
        line_chart(
            {"a": minutes([3], start=T0 - timedelta(hours=2))},
            start=day_start,
            end=T0,
            tz=ZoneInfo("Asia/Shanghai"),
            width=640,
            height=200,
        )
    )
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert any(text.endswith("16:00") for text in texts), texts  # 08:00 UTC is 16:00 in Shanghai
    (dot,) = root.findall(f"{SVG}circle")
    assert 560 < float(dot.get("cx")) < 624, "a point 2 h before the end of a day window is near the right edge"


def test_chart_handles_large_small_and_constant_values():
    for values in ([0, 0, 0], [1_500_000, 2_000_000], [0.001, 0.004], [-2, 3]):
        root = parse(line_chart({"v": minutes(values)}, width=300, height=120))
        assert root.find(f"{SVG}path") is not None
    texts = [t.text for t in parse(line_chart({"v": minutes([1_500_000, 2_000_000])})).iter(f"{SVG}text")]
    assert "2M" in texts


# --- The page ---------------------------------------------------------------------------


@pytest.fixture
def broker(private_broker, settings):
    """This module's own Redis as the broker, with a queue no worker consumes."""
    settings.TASKCENTER_QUEUES = [*settings.TASKCENTER_QUEUES, QUEUE]
    return private_broker


def write_live_state(client, *, now: float, monitor_started: float | None = None) -> None:
    """One online worker, a monitor that just flushed and a beat that just ticked."""
    worker = {"hostname": "dash-w1@test", "online": True, "last_heartbeat": now - 1, "active": 2, "processed": 40}
    client.hset(
        "taskcenter:monitor:workers", "dash-w1@test", json.dumps({**worker, "loadavg": [0.5, 0.4, 0.3], "freq": 2})
    )
    client.set("taskcenter:monitor:tick", repr(now))
    client.set("taskcenter:monitor:started", repr(monitor_started or now - 3600))
    client.set("taskcenter:beat:leader", "beathost:4242:abc")
    client.set(
        "taskcenter:beat:last_tick",
        json.dumps(
            {"id": "beathost:4242:abc", "hostname": "beathost", "pid": 4242, "time": now - 2, "max_interval": 5}
        ),
    )


def push(client, queue: str, *, sent_at: float, step: int = 6, task_id: str = "t") -> None:
    key = queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
    client.lpush(key, json.dumps({"body": "", "headers": {"id": task_id, "taskcenter_sent_at": sent_at}}))


def buckets(index: int, count: int) -> list[int]:
    counts = [0] * (len(DURATION_BUCKETS) + 1)
    counts[index] = count
    return counts


@pytest.fixture
def history():
    """Ten busy minutes just now, one three hours ago, and queue samples."""
    now = timezone.now().replace(second=0, microsecond=0)
    rows = [
        TaskMinute(
            minute=now - timedelta(minutes=i),
            task_name="examples.add",
            queue="default",
            sent=8,
            started=8,
            succeeded=6,
            failed=2,
            runtime_sum=6.0,
            runtime_buckets=buckets(7, 8),  # 0.5 s < runtime <= 1 s
            wait_sum=0.4,
            wait_buckets=buckets(3, 8),
        )
        for i in range(1, 11)
    ]
    rows.append(TaskMinute(minute=now - timedelta(hours=3), task_name="examples.fail", queue="low", failed=5))
    TaskMinute.objects.bulk_create(rows)
    QueueSample.objects.bulk_create(
        QueueSample(at=now - timedelta(minutes=i), queue="default", depth=40 + i, oldest_age=3.0) for i in range(30)
    )
    return now


def stuck_run(task_id: str = "stuck-1") -> Run:
    result = TaskResult.objects.create(
        task_id=task_id,
        task_name="examples.process_items",
        status="STARTED",
        worker="gone@host",
        date_started=timezone.now() - timedelta(minutes=30),
    )
    return Run.objects.create(task_result=result, task_name="examples.process_items", queue="low")


def svgs(html: str) -> list[ET.Element]:
    return [parse(match) for match in re.findall(r"<svg\b.*?</svg>", html, flags=re.S)]


@pytest.mark.django_db
def test_dashboard_shows_figures_live_queues_and_charts_with_bounded_queries(
    staff_client, broker, history, django_assert_max_num_queries
):
    now = time.time()
    write_live_state(broker, now=now)
    push(broker, QUEUE, sent_at=now - 90, step=9, task_id="a")
    push(broker, QUEUE, sent_at=now - 10, step=0, task_id="b")
    push(broker, QUEUE, sent_at=now - 5, step=0, task_id="c")
    run = stuck_run()

    with django_assert_max_num_queries(12):
        response = staff_client.get(reverse("taskcenter:dashboard"))

    assert response.status_code == 200
    html = response.content.decode()
    context = response.context
    assert context["workers_online"] == 1
    assert "dash-w1@test" in html
    assert context["summary"]["succeeded"] == 60 and context["summary"]["failed"] == 20
    assert context["figures"]["failure_rate"] == "25.0 %" and context["figures"]["success_rate"] == "75.0 %"
    assert context["figures"]["runtime"]["p95"].endswith("ms")
    assert re.search(r'id="tile-failure">.*?25\.0 %', html, flags=re.S)

    live = {queue.name: queue for queue in context["live"].queues}
    assert live[QUEUE].depth == 3 and 85 <= live[QUEUE].oldest_age <= 150
    assert re.search(rf'id="queue-{QUEUE}">.*?class="depth">3<', html, flags=re.S)

    assert "beathost" in html and context["beat_ticking"]
    assert context["stuck_count"] == 1
    assert reverse("taskcenter:run_detail", args=[run.task_id]) in html

    charts = svgs(html)
    assert len(charts) == 8, "throughput, run time, wait time and queue depth over the last hour and the last day"
    series = {p.get("data-series") for chart in charts for p in chart.iter(f"{SVG}path")}
    assert {"succeeded", "failed", "p50", "p95", "p99", "default"} <= series
    assert '<meta http-equiv="refresh" content="10">' in html


@pytest.mark.django_db
def test_chart_series_per_minute_for_the_hour_and_five_minute_averages_for_the_day(history):
    from taskcenter.selectors import monitoring
    from taskcenter.views.dashboard import _percentiles, _queue_depths, _throughput

    end = history
    points = monitoring.minute_series(since=end - timedelta(days=1), until=end)
    hour_start, day_start = end - timedelta(hours=1), end - timedelta(days=1)
    hour = _throughput([p for p in points if p.minute >= hour_start], hour_start, end, 1)
    day = _throughput(points, day_start, end, 5)
    assert len(hour["failed"]) == 61 and len(day["failed"]) == 24 * 12 + 1
    assert dict(hour["failed"])[end - timedelta(minutes=1)] == 2
    assert max(value for _, value in hour["failed"]) == 2, "the run of three hours ago is not in the hour"
    three_hours_ago = end - timedelta(hours=3)
    slot = three_hours_ago - timedelta(minutes=three_hours_ago.minute % 5)
    assert dict(day["failed"])[slot] == pytest.approx(5 / 5)
    assert sum(value for _, value in day["succeeded"]) * 5 == 60, "averages keep the totals"
    p95 = dict(_percentiles(points, "runtime", hour_start, end, 1)["p95"])
    assert p95[end] is None and 0.5 < p95[end - timedelta(minutes=1)] <= 1.0
    depths = _queue_depths(monitoring.queue_series(since=day_start), hour_start, end, 1)
    assert dict(depths["default"])[end - timedelta(minutes=29)] == 69
    assert dict(depths["default"])[end - timedelta(minutes=45)] is None, "no sample: a gap, not a zero"


@pytest.mark.django_db
def test_dashboard_without_monitor_or_data_still_renders(staff_client, broker):
    response = staff_client.get(reverse("taskcenter:dashboard") + "?refresh=0")
    assert response.status_code == 200
    html = response.content.decode()
    assert "event monitor is not running" in html
    assert response.context["workers_online"] == 0
    assert "http-equiv" not in html
    assert len(svgs(html)) == 8 and "No data" in html


@pytest.mark.django_db
def test_dashboard_with_the_broker_down_says_so_fast(staff_client, tmp_path, redis_server):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server):
        started = time.monotonic()
        response = staff_client.get(reverse("taskcenter:dashboard"))
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert "not reachable" in response.content.decode()
    assert elapsed < 10


@pytest.mark.django_db
def test_dashboard_needs_staff_access(client, viewer_client):
    url = reverse("taskcenter:dashboard")
    from django.test import Client

    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and reverse("login") in anonymous["Location"]
    assert viewer_client.get(url).status_code == 200
