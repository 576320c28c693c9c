"""/metrics: bearer-token access, the metric families and labels, cumulative histograms.

Figures come from ``TaskTotals`` rows made here, from messages pushed into a real
Redis server (a queue no worker consumes), and from worker, monitor and beat
state written in Redis the way the monitor and beat write it.
"""

import json
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.utils import floatToGoString

from taskcenter.metrics import cumulative_buckets
from taskcenter.models import DURATION_BUCKETS, TaskTotals
from tests.conftest import broker_down

TOKEN = "s3cret-scrape-token"
QUEUE = "metrics-test"
PRIORITY_SEPARATOR = "\x06\x16"
WORKERS_KEY = "taskcenter:monitor:workers"
MONITOR_KEYS = ("taskcenter:monitor:tick", "taskcenter:monitor:last_event")
BEAT_KEYS = ("taskcenter:beat:leader", "taskcenter:beat:last_tick")


@pytest.fixture
def token(settings):
    settings.TASKCENTER_METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def test_queue(settings, redis_server):
    """A configured queue no worker consumes, emptied before and after."""
    settings.TASKCENTER_QUEUES = [*settings.TASKCENTER_QUEUES, QUEUE]
    client = redis_server.client()
    keys = [QUEUE, *(f"{QUEUE}{PRIORITY_SEPARATOR}{step}" for step in (3, 6, 9))]
    client.delete(*keys)
    yield client
    client.delete(*keys)


@pytest.fixture
def live_state(redis_server):
    """One online worker, a monitor that just flushed and a beat that just ticked, as they write them in Redis."""
    client = redis_server.client()
    now = time.time()
    saved = {key: client.get(key) for key in (*MONITOR_KEYS, *BEAT_KEYS)}
    worker = {"hostname": "metrics-w1@test", "online": True, "last_heartbeat": now, "active": 1, "processed": 7}
    client.hset(WORKERS_KEY, "metrics-w1@test", json.dumps({**worker, "loadavg": [0.1, 0.2, 0.3], "freq": 2.0}))
    for key in MONITOR_KEYS:
        client.set(key, repr(now))
    client.set("taskcenter:beat:leader", "beathost:4242:abc")
    client.set(
        "taskcenter:beat:last_tick",
        json.dumps({"id": "beathost:4242:abc", "hostname": "beathost", "pid": 4242, "time": now, "max_interval": 5}),
    )
    yield now
    client.hdel(WORKERS_KEY, "metrics-w1@test")
    for key, value in saved.items():
        client.delete(key) if value is None else client.set(key, value)


def push(client, queue: str, *, sent_at: float, step: int = 6, task_id: str = "id-1") -> None:
    key = queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}"
    body = {"body": "", "headers": {"id": task_id, "task": "examples.add", "taskcenter_sent_at": sent_at}}
    client.lpush(key, json.dumps(body))


def scrape(client, token: str | None = TOKEN, **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token is not None else {}
    return client.get("/metrics", **headers, **extra)


def families(response) -> dict:
    return {family.name: family for family in text_string_to_metric_families(response.content.decode())}


def samples(family, name: str | None = None) -> list:
    return [s for s in family.samples if name is None or s.name == name]


def buckets_of(*counts) -> list[int]:
    full = [0] * (len(DURATION_BUCKETS) + 1)
    for index, count in counts:
        full[index] = count
    return full


# --- Access ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_without_a_configured_token_metrics_are_refused_with_an_explanation(client, settings):
    settings.TASKCENTER_METRICS_TOKEN = ""
    response = scrape(client, token="anything")
    assert response.status_code == 403
    assert "TASKCENTER_METRICS_TOKEN" in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header",
    [None, "Bearer wrong-token", f"Basic {TOKEN}", "Bearer", f"Bearer {TOKEN}x", f"bearer-{TOKEN}"],
    ids=["missing", "wrong", "basic", "empty", "longer", "no-space"],
)
def test_a_missing_or_wrong_token_gets_401_with_a_challenge(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header is not None else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer ")
    assert "celery_" not in response.content.decode()


@pytest.mark.django_db
def test_the_token_is_compared_in_constant_time(client, token, monkeypatch):
    import hmac

    calls = []
    real = hmac.compare_digest
    monkeypatch.setattr(hmac, "compare_digest", lambda a, b: calls.append((a, b)) or real(a, b))
    assert scrape(client).status_code == 200
    assert calls == [(TOKEN.encode(), TOKEN.encode())]


# --- Content --------------------------------------------------------------------------


@pytest.mark.django_db
def test_metrics_hold_default_and_taskcenter_families_with_minimal_labels(client, token, test_queue, live_state):
    TaskTotals.objects.create(
        task_name="billing.send",
        queue="default",
        sent=10,
        started=9,
        succeeded=7,
        failed=2,
        retried=1,
        revoked=1,
        runtime_sum=12.5,
        runtime_buckets=buckets_of((4, 3), (7, 4), (len(DURATION_BUCKETS), 2)),
        wait_sum=0.3,
        wait_buckets=buckets_of((0, 9)),
    )
    TaskTotals.objects.create(task_name="examples.add", queue="high", sent=3, succeeded=3)
    push(test_queue, QUEUE, sent_at=time.time() - 120, step=9, task_id="old")
    push(test_queue, QUEUE, sent_at=time.time() - 5, step=0, task_id="new")

    response = scrape(client)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    found = families(response)
    # django-prometheus' default registry (this process)
    assert "process_cpu_seconds" in found or "python_info" in found
    assert any(name.startswith("django_http_requests") for name in found)

    tasks = found["celery_tasks"]
    assert tasks.type == "counter"
    by_labels = {(s.labels["task"], s.labels["queue"], s.labels["state"]): s.value for s in samples(tasks)}
    assert by_labels[("billing.send", "default", "sent")] == 10
    assert by_labels[("billing.send", "default", "failed")] == 2
    assert by_labels[("examples.add", "high", "succeeded")] == 3
    assert {state for _, _, state in by_labels} == {"sent", "started", "succeeded", "failed", "retried", "revoked"}
    assert all(set(s.labels) == {"task", "queue", "state"} for s in samples(tasks))

    runtime = found["celery_task_runtime_seconds"]
    assert runtime.type == "histogram"
    billing = [s for s in runtime.samples if s.labels.get("task") == "billing.send"]
    assert all(set(s.labels) - {"le"} == {"task", "queue"} for s in billing)
    buckets = [s for s in billing if s.name.endswith("_bucket")]
    assert [s.labels["le"] for s in buckets] == [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]
    counts = [s.value for s in buckets]
    assert counts == sorted(counts), "buckets are cumulative"
    assert counts[3] == 0 and counts[4] == 3 and counts[7] == 7 and counts[-2] == 7 and counts[-1] == 9
    (count,) = [s.value for s in billing if s.name.endswith("_count")]
    (total,) = [s.value for s in billing if s.name.endswith("_sum")]
    assert count == 9 and total == 12.5
    assert found["celery_task_wait_seconds"].type == "histogram"

    lengths = {s.labels["queue"]: s.value for s in samples(found["celery_queue_length"])}
    assert lengths[QUEUE] == 2
    assert set(lengths) >= {"default", "high", "low", QUEUE}
    ages = {s.labels["queue"]: s.value for s in samples(found["celery_queue_oldest_message_age_seconds"])}
    assert 115 <= ages[QUEUE] <= 180, "the oldest message of every priority list counts"

    assert samples(found["celery_workers_online"])[0].value >= 1
    assert samples(found["taskcenter_monitor_up"])[0].value == 1
    assert samples(found["taskcenter_broker_up"])[0].value == 1
    assert samples(found["taskcenter_beat_last_tick_timestamp_seconds"])[0].value == pytest.approx(live_state, abs=1)
    assert samples(found["taskcenter_stuck_runs"])[0].value >= 0

    taskcenter_families = [f for name, f in found.items() if name.startswith(("celery_", "taskcenter_"))]
    labels = {label for family in taskcenter_families for s in family.samples for label in s.labels}
    assert labels <= {"task", "queue", "state", "le"}, "no task id, argument or worker label"


@pytest.mark.django_db
def test_scrape_reads_totals_and_redis_only_with_few_queries(
    client, token, redis_server, django_assert_max_num_queries
):
    TaskTotals.objects.bulk_create(
        TaskTotals(task_name=f"t{i}", queue="default", succeeded=i, runtime_buckets=buckets_of((1, i)))
        for i in range(200)
    )
    with django_assert_max_num_queries(6) as captured:
        response = scrape(client)
    assert response.status_code == 200
    assert len([s for s in families(response)["celery_tasks"].samples if s.labels["state"] == "succeeded"]) == 200
    for query in captured.captured_queries:
        sql = query["sql"].upper()
        if '"TASKCENTER_RUN"' in sql and "COUNT(" in sql:
            raise AssertionError(f"scrape counts the run history: {query['sql']}")


@pytest.mark.django_db
def test_monitor_down_and_no_worker_show_as_zero(client, token, redis_server):
    client_redis = redis_server.client()
    saved = {key: client_redis.get(key) for key in MONITOR_KEYS}
    workers = client_redis.hgetall(WORKERS_KEY)
    client_redis.delete(*MONITOR_KEYS, WORKERS_KEY)
    try:
        found = families(scrape(client))
    finally:
        for key, value in saved.items():
            if value is not None:
                client_redis.set(key, value)
        if workers:
            client_redis.hset(WORKERS_KEY, mapping=workers)
    assert samples(found["taskcenter_monitor_up"])[0].value == 0
    assert samples(found["celery_workers_online"])[0].value == 0


@pytest.mark.django_db
def test_a_stopped_broker_gives_a_fast_scrape_without_queue_figures(client, token, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        started = time.monotonic()
        response = scrape(client)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    found = families(response)
    assert samples(found["taskcenter_broker_up"])[0].value == 0
    assert "celery_queue_length" not in found or not samples(found["celery_queue_length"])
    assert samples(found["celery_workers_online"])[0].value == 0
    assert elapsed < 10


# --- Buckets --------------------------------------------------------------------------


def test_cumulative_buckets_add_up_and_end_with_inf():
    buckets, total = cumulative_buckets(buckets_of((0, 1), (5, 2), (len(DURATION_BUCKETS), 4)), 42.0)
    assert [le for le, _ in buckets] == [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]
    values = [value for _, value in buckets]
    assert values[0] == 1 and values[4] == 1 and values[5] == 3 and values[-2] == 3 and values[-1] == 7
    assert total == 42.0


def test_cumulative_buckets_accept_short_empty_or_long_lists():
    buckets, total = cumulative_buckets([2], None)
    assert [v for _, v in buckets] == [2] * (len(DURATION_BUCKETS) + 1) and total == 0.0
    assert [v for _, v in cumulative_buckets([], 0)[0]] == [0] * (len(DURATION_BUCKETS) + 1)
    long = [1] * (len(DURATION_BUCKETS) + 3)
    assert cumulative_buckets(long, 1)[0][-1] == ("+Inf", len(long))


@pytest.mark.django_db
def test_a_frozen_broker_does_not_hang_the_scrape(client, token, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        started = time.monotonic()
        response = scrape(client)
        elapsed = time.monotonic() - started
    assert response.status_code == 200
    assert samples(families(response)["taskcenter_broker_up"])[0].value == 0
    assert elapsed < 5, f"scrape took {elapsed:.1f}s"
