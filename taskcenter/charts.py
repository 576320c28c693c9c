"""Server-side SVG line charts for the dashboard: no JavaScript, no external assets.

``line_chart`` draws one line per series over time with axes, gridlines, time
labels and a legend. It is a pure function of its arguments (no database, no
settings), returns markup safe to put in a template as is, and escapes every
piece of text it draws. A ``None`` value is a gap: the line stops and starts
again at the next known value.
"""

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta, tzinfo
from html import escape

from django.utils.safestring import SafeString, mark_safe

#: Colours of successive series (colour-blind friendly, Okabe-Ito); ``colors`` overrides per name.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
#: Candidate spacings of time ticks, in seconds.
TIME_STEPS = (60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 14400, 21600, 43200, 86400, 172800, 604800)
#: Room around the plot area for labels and the legend (pixels).
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 56, 16, 28, 30
FONT = "font-family:system-ui,sans-serif;font-size:11px"

Point = tuple[datetime, float | None]


def line_chart(
    series: Mapping[str, Sequence[Point]],
    *,
    width: int = 640,
    height: int = 220,
    y_label: str = "",
    title: str = "",
    start: datetime | None = None,
    end: datetime | None = None,
    tz: tzinfo | None = None,
    colors: Mapping[str, str] | None = None,
) -> SafeString:
    """An SVG chart of ``series`` (name -> ``[(time, value or None), ...]``).

    The time axis spans ``start`` to ``end`` when given, else the times of the
    points; the value axis starts at 0 (or below, for negative values) and ends
    at a round number above the largest value. Time labels are shown in ``tz``
    (default: the zone of the first time, else UTC). Without any value, the axes
    are drawn with "No data".
    """
    width, height = max(int(width), 160), max(int(height), 100)
    left, right = MARGIN_LEFT, width - MARGIN_RIGHT
    top, bottom = MARGIN_TOP, height - MARGIN_BOTTOM
    colors = dict(colors or {})

    times = [t for points in series.values() for t, _ in points]
    values = [v for points in series.values() for _, v in points if _is_number(v)]
    t0 = start or (min(times) if times else None)
    t1 = end or (max(times) if times else None)
    if t0 is None or t1 is None:
        t1 = datetime.now(UTC)
        t0 = t1 - timedelta(hours=1)
    if tz is None:
        tz = t0.tzinfo or UTC
    span = max((t1 - t0).total_seconds(), 1.0)
    y_min = min(0.0, min(values)) if values else 0.0
    y_max, y_step = _nice_axis(max(values) if values else 0.0, y_min)

    def x_of(t: datetime) -> float:
        return left + (right - left) * ((t - t0).total_seconds() / span)

    def y_of(v: float) -> float:
        return bottom - (bottom - top) * ((v - y_min) / ((y_max - y_min) or 1.0))

    label = title or y_label or "chart"
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="{_esc(label)}" style="{FONT}">',
        f"<title>{_esc(label)}</title>",
        f'<rect x="{left}" y="{top}" width="{right - left}" height="{bottom - top}" fill="#fff" stroke="none"/>',
    ]

    # Horizontal gridlines and value labels.
    tick = y_min
    while tick <= y_max + y_step / 1000:
        y = y_of(tick)
        parts.append(f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#e3e3e3"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" fill="#555">{_esc(_format_value(tick))}</text>'
        )
        tick += y_step

    # Vertical gridlines and time labels.
    for moment in _time_ticks(t0, t1, tz):
        x = x_of(moment)
        parts.append(f'<line class="grid" x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{bottom}" stroke="#eeeeee"/>')
        text = moment.astimezone(tz).strftime("%m-%d %H:%M" if span > 86400 else "%H:%M")
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" fill="#555">{_esc(text)}</text>')

    # Axes.
    parts.append(f'<line class="axis" x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#888"/>')
    parts.append(f'<line class="axis" x1="{left}" y1="{top}" x2="{left}" y2="{bottom}" stroke="#888"/>')
    if y_label:
        mid = (top + bottom) / 2
        parts.append(
            f'<text x="12" y="{mid:.1f}" text-anchor="middle" fill="#555" '
            f'transform="rotate(-90 12 {mid:.1f})">{_esc(y_label)}</text>'
        )

    # Lines, one per series, broken at gaps; lone points drawn as dots.
    for index, (name, points) in enumerate(series.items()):
        color = colors.get(name) or PALETTE[index % len(PALETTE)]
        path, dots = _path(sorted(points, key=lambda p: p[0]), x_of, y_of)
        attrs = f'data-series="{_esc(name)}"'
        if path:
            parts.append(
                f'<path class="line" {attrs} d="{path}" fill="none" stroke="{_esc(color)}" '
                f'stroke-width="1.8" stroke-linejoin="round"/>'
            )
        for x, y in dots:
            parts.append(f'<circle class="dot" {attrs} cx="{x:.1f}" cy="{y:.1f}" r="2.2" fill="{_esc(color)}"/>')

    # Legend along the top.
    x = left
    for index, name in enumerate(series):
        color = colors.get(name) or PALETTE[index % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="8" width="10" height="10" fill="{_esc(color)}"/>')
        parts.append(f'<text class="legend" x="{x + 14}" y="17" fill="#333">{_esc(name)}</text>')
        x += 28 + 7 * len(str(name))

    if not values:
        parts.append(
            f'<text class="empty" x="{(left + right) / 2:.1f}" y="{(top + bottom) / 2:.1f}" '
            f'text-anchor="middle" fill="#888">No data</text>'
        )
    parts.append("</svg>")
    # Every interpolated text went through _esc, so the markup is safe.
    return mark_safe("".join(parts))


def _esc(text) -> str:
    return escape(str(text), quote=True)


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _path(points: Sequence[Point], x_of, y_of) -> tuple[str, list[tuple[float, float]]]:
    """SVG path commands for the runs of known values, and the points that stand alone."""
    commands: list[str] = []
    dots: list[tuple[float, float]] = []
    run: list[tuple[float, float]] = []

    def flush():
        if len(run) == 1:
            dots.append(run[0])
        elif run:
            commands.append("M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in run))
        run.clear()

    for moment, value in points:
        if _is_number(value):
            run.append((x_of(moment), y_of(float(value))))
        else:
            flush()
    flush()
    return " ".join(commands), dots


def _nice_axis(top_value: float, bottom_value: float = 0.0, ticks: int = 4) -> tuple[float, float]:
    """A round upper bound at or above ``top_value`` and a round step dividing the range in about ``ticks``."""
    extent = top_value - bottom_value
    if extent <= 0:
        return bottom_value + 1.0, 0.25
    raw = extent / ticks
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    return bottom_value + step * math.ceil(extent / step - 1e-9), step


def _time_ticks(t0: datetime, t1: datetime, tz: tzinfo, most: int = 7) -> list[datetime]:
    """Round times (on the hour, every 10 minutes, ...) in ``tz`` between ``t0`` and ``t1``."""
    span = (t1 - t0).total_seconds()
    step = next((s for s in TIME_STEPS if span / s <= most), TIME_STEPS[-1])
    offset = (t0.astimezone(tz).utcoffset() or timedelta()).total_seconds()
    first = math.ceil((t0.timestamp() + offset) / step) * step - offset
    ticks = []
    moment = first
    while moment <= t1.timestamp() + 1e-6 and len(ticks) < 50:
        ticks.append(datetime.fromtimestamp(moment, UTC))
        moment += step
    return ticks


def _format_value(value: float) -> str:
    """Short axis labels: 0, 0.25, 12, 1.5k, 2M."""
    if value == 0:
        return "0"
    magnitude = abs(value)
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if magnitude >= limit:
            return f"{value / limit:.3g}{suffix}"
    if magnitude >= 1:
        return f"{value:.4g}"
    return f"{value:.2g}"
