"""Dashboard and alerts pages: what the task system does now and over the last hour and day.

Everything shown is read with bounded reads: per-minute rows of the last day
(``TaskMinute``, ``QueueSample``), live figures from Redis, and one limited
query for stuck runs. The run history is never scanned. Charts are SVG drawn
on the server (``taskcenter.charts``). With JavaScript the live figures are
fetched again every ``LIVE_SECONDS`` (``dashboard_live``, a fragment); without,
the page reloads itself every ``REFRESH_SECONDS``.
"""

import logging
from collections import defaultdict
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext as _

from taskcenter.charts import line_chart
from taskcenter.selectors import alerts as alert_service
from taskcenter.views.common import staff_required

logger = logging.getLogger(__name__)

REFRESH_SECONDS = 10
#: Seconds between two updates of the dashboard's live figures by live.js (pages with JavaScript).
LIVE_SECONDS = 5
#: Stuck runs linked on the dashboard (the count goes up to ``alerts.STUCK_LIMIT``).
STUCK_SHOWN = 10
#: Minutes per point of the last-day charts (the last-hour charts use one point per minute).
DAY_BUCKET_MINUTES = 5
OUTCOME_COLORS = {"succeeded": "#009E73", "failed": "#D55E00", "retried": "#E69F00", "revoked": "#999999"}
PERCENTILE_COLORS = {"p50": "#56B4E9", "p95": "#0072B2", "p99": "#CC79A7"}


@staff_required
def dashboard(request):
    from taskcenter.selectors import monitoring

    context = _live_context()
    now = context["now"]
    points = monitoring.minute_series(since=now - timedelta(days=1), until=now)
    queue_history = monitoring.queue_series(since=now - timedelta(days=1))
    refresh = _refresh(request)
    context.update(
        refresh=refresh,
        live_seconds=LIVE_SECONDS if refresh else 0,
        charts=_charts(points, queue_history, now=now),
    )
    return render(request, "taskcenter/dashboard.html", context)


@staff_required
def dashboard_live(request):
    """The dashboard's live figures (tiles, queues, workers, stuck runs) as an HTML fragment for live.js."""
    response = render(request, "taskcenter/_dashboard_live.html", _live_context())
    response["Cache-Control"] = "no-store"
    return response


def _live_context() -> dict:
    """Figures of the last hour and the live state: what the dashboard's live part shows."""
    from taskcenter.selectors import monitoring

    now = timezone.now()
    live = alert_service.live_state()
    workers = sorted(live.workers, key=lambda w: (not w.online, w.hostname))
    summary = monitoring.summary(since=now - timedelta(hours=1))
    stuck = live.stuck or []
    beat = live.beat
    failure_rate = summary.get("failure_rate")
    return {
        "now": now,
        "workers": [_worker_row(worker) for worker in workers],
        "workers_online": sum(1 for worker in workers if worker.online),
        "summary": summary,
        "figures": _figures(summary),
        "failure_over": isinstance(failure_rate, int | float) and failure_rate > settings.TASKCENTER_ALERT_FAILURE_RATE,
        "live": live.queues,
        "beat": beat,
        "beat_last_tick": _aware(beat.last_tick),
        "beat_ticking": beat.ticking(settings.TASKCENTER_ALERT_BEAT_STALE),
        "stuck_count": len(stuck),
        "stuck_more": len(stuck) >= alert_service.STUCK_LIMIT,
        "stuck_over": len(stuck) >= settings.TASKCENTER_ALERT_STUCK_RUNS,
        "stuck_shown": stuck[:STUCK_SHOWN],
        "monitor_alive": live.monitor_alive,
        "thresholds": {
            "depth": settings.TASKCENTER_ALERT_QUEUE_DEPTH,
            "age": settings.TASKCENTER_ALERT_QUEUE_AGE,
            "failure_rate": settings.TASKCENTER_ALERT_FAILURE_RATE,
            "stuck": settings.TASKCENTER_ALERT_STUCK_RUNS,
        },
    }


@staff_required
def alert_list(request):
    state = alert_service.snapshot()
    fired = alert_service.evaluate(state)
    alert_service.alert_summary_store(summary=alert_service.summarise(fired))  # the banner agrees with this page
    context = {
        "refresh": _refresh(request),
        "alerts": fired,
        "state": state,
        "thresholds": alert_service.thresholds(),
    }
    return render(request, "taskcenter/alerts.html", context)


def _figures(summary: dict) -> dict:
    """The summary of the last hour as display strings ("–" when unknown)."""
    runtime, wait = summary.get("runtime") or {}, summary.get("wait") or {}
    return {
        "per_minute": _number(summary.get("per_minute")),
        "success_rate": _percent(summary.get("success_rate")),
        "failure_rate": _percent(summary.get("failure_rate")),
        "runtime": {name: _seconds(runtime.get(name)) for name in ("p50", "p95", "p99")},
        "wait": {name: _seconds(wait.get(name)) for name in ("p50", "p95", "p99")},
    }


def _number(value) -> str:
    return "–" if not isinstance(value, int | float) else f"{value:.3g}" if value < 1000 else f"{value:,.0f}"


def _percent(value) -> str:
    """A rate (a fraction 0..1) as a percentage."""
    return "–" if not isinstance(value, int | float) else f"{value * 100:.1f} %"


def _seconds(value) -> str:
    if not isinstance(value, int | float):
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def _refresh(request) -> int:
    """Seconds between reloads; ``?refresh=0`` stops them."""
    return 0 if request.GET.get("refresh") == "0" else REFRESH_SECONDS


def _aware(unix: float | None) -> datetime | None:
    return datetime.fromtimestamp(unix, UTC) if unix is not None else None


def _worker_row(worker) -> dict:
    return {
        "hostname": worker.hostname,
        "online": worker.online,
        "last_heartbeat": _aware(worker.last_heartbeat),
        "active": worker.active,
        "processed": worker.processed,
        "loadavg": ", ".join(f"{value:.2f}" for value in worker.loadavg or [] if isinstance(value, int | float)),
    }


# --- Charts -------------------------------------------------------------------------------


def _charts(points, queue_history, *, now: datetime) -> dict:
    """The SVG charts of the last hour and of the last day."""
    tz = timezone.get_current_timezone()
    end = _floor(now, 1)
    charts = {}
    for key, minutes, step in (("hour", 60, 1), ("day", 24 * 60, DAY_BUCKET_MINUTES)):
        start = end - timedelta(minutes=minutes)
        window = [p for p in points if p.minute >= start]
        if step == 1:
            throughput_title = _("Finished tasks per minute by outcome")
            runtime_title, wait_title = _("Run time percentiles"), _("Wait time percentiles")
        else:
            throughput_title = _("Finished tasks per minute by outcome (%(step)s-minute average)") % {"step": step}
            runtime_title = _("Run time percentiles (highest minute of each %(step)s)") % {"step": step}
            wait_title = _("Wait time percentiles (highest minute of each %(step)s)") % {"step": step}
        common = {"start": start, "end": end, "tz": tz, "width": 640, "height": 220}
        charts[key] = {
            "throughput": line_chart(
                _throughput(window, start, end, step),
                y_label=_("tasks / min"),
                title=throughput_title,
                colors=OUTCOME_COLORS,
                **common,
            ),
            "runtime": line_chart(
                _percentiles(window, "runtime", start, end, step),
                y_label=_("seconds"),
                title=runtime_title,
                colors=PERCENTILE_COLORS,
                **common,
            ),
            "wait": line_chart(
                _percentiles(window, "wait", start, end, step),
                y_label=_("seconds"),
                title=wait_title,
                colors=PERCENTILE_COLORS,
                **common,
            ),
            "queues": line_chart(
                _queue_depths(queue_history, start, end, step),
                y_label=_("messages"),
                title=_("Queue depth (highest sample per %(step)s min)") % {"step": step},
                **common,
            ),
        }
    return charts


def _floor(moment: datetime, minutes: int) -> datetime:
    moment = moment.astimezone(UTC).replace(second=0, microsecond=0)
    return moment - timedelta(minutes=moment.minute % minutes) if minutes > 1 else moment


def _slots(start: datetime, end: datetime, step: int) -> list[datetime]:
    slots, moment = [], _floor(start, step)
    while moment <= end:
        slots.append(moment)
        moment += timedelta(minutes=step)
    return slots


def _throughput(points, start, end, step) -> dict[str, list]:
    """Tasks per minute by outcome; minutes without a row count as zero."""
    totals: dict[str, dict[datetime, int]] = {name: defaultdict(int) for name in OUTCOME_COLORS}
    for point in points:
        slot = _floor(point.minute, step)
        for name in OUTCOME_COLORS:
            totals[name][slot] += getattr(point, name) or 0
    slots = _slots(start, end, step)
    return {name: [(slot, totals[name].get(slot, 0) / step) for slot in slots] for name in OUTCOME_COLORS}


def _percentiles(points, kind: str, start, end, step) -> dict[str, list]:
    """p50/p95/p99 per minute (highest in each slot); slots without a value are gaps."""
    worst: dict[str, dict[datetime, float]] = {name: {} for name in PERCENTILE_COLORS}
    for point in points:
        slot = _floor(point.minute, step)
        for name in PERCENTILE_COLORS:
            value = getattr(point, f"{kind}_{name}", None)
            if value is not None:
                worst[name][slot] = max(value, worst[name].get(slot, value))
    slots = _slots(start, end, step)
    return {name: [(slot, worst[name].get(slot)) for slot in slots] for name in PERCENTILE_COLORS}


def _queue_depths(queue_history: dict, start, end, step) -> dict[str, list]:
    """Highest sampled depth of each queue per slot; slots without a sample are gaps."""
    slots = _slots(start, end, step)
    series = {}
    for name in sorted(queue_history):
        highest: dict[datetime, int] = {}
        for at, depth, _age in queue_history[name]:
            if at < start or depth is None:
                continue
            slot = _floor(at, step)
            highest[slot] = max(depth, highest.get(slot, depth))
        series[name] = [(slot, highest.get(slot)) for slot in slots]
    return series
