"""Duration histograms, a relative-error quantile sketch, and minute arithmetic; pure code.

A histogram is a list of ``len(DURATION_BUCKETS) + 1`` counts: bucket ``i``
counts durations ``d`` with ``DURATION_BUCKETS[i - 1] < d <= DURATION_BUCKETS[i]``
(as Prometheus' ``le`` buckets, but not cumulative), the last one counts
durations above the largest bound. These coarse buckets feed ``/metrics``; a
percentile read from them can be off by half a bucket (tens of seconds).

Percentiles come from ``DurationSketch`` (DDSketch, Masson et al., VLDB 2019):
log-spaced bins whose every value is within 1 % of the durations it counts, so
any quantile is within 1 % of the exact one, and two sketches merge by adding
their bins. A ``TaskMinute`` histogram field stores both, as
``{"buckets": [...], "sketch": {...}}``; rows written before the sketch (a plain
list of counts) are still read, and percentiles over them are marked estimates.
"""

import math
from bisect import bisect_left
from collections.abc import Sequence
from datetime import UTC, datetime

from taskcenter.models import DURATION_BUCKETS

#: Number of counts in a histogram: one per bound plus the overflow bucket.
BUCKET_COUNT = len(DURATION_BUCKETS) + 1


def empty_buckets() -> list[int]:
    return [0] * BUCKET_COUNT


def bucket_index(seconds: float, bounds: Sequence[float] = DURATION_BUCKETS) -> int:
    """Index of the bucket ``seconds`` falls in (``len(bounds)`` for the overflow bucket)."""
    return bisect_left(bounds, seconds)


def add_buckets(total: list[int], other: Sequence[int] | None) -> list[int]:
    """Add ``other`` into ``total`` in place (a shorter or empty list counts as zeros); return ``total``."""
    if other:
        if len(total) < len(other):
            total.extend([0] * (len(other) - len(total)))
        for i, count in enumerate(other):
            total[i] += count
    return total


def percentile_from_buckets(
    buckets: Sequence[int] | None, q: float, bounds: Sequence[float] = DURATION_BUCKETS
) -> float | None:
    """Estimate the ``q`` quantile of a histogram; None when it counts nothing.

    ``q`` is a fraction (0.95); values above 1 are read as percent (95). The
    value is interpolated linearly inside the bucket that holds the rank, from
    the bucket's lower bound (0 for the first) to its upper bound, as
    Prometheus' ``histogram_quantile`` does. A rank in the overflow bucket
    gives the largest bound (the true value is at least that).
    """
    q = _fraction(q)
    if not buckets:
        return None
    total = sum(buckets)
    if total <= 0:
        return None
    rank = q * total
    cumulative = 0
    for i, count in enumerate(buckets):
        if count <= 0:
            continue
        if cumulative + count >= rank:
            if i >= len(bounds):
                return float(bounds[-1])
            lower = bounds[i - 1] if i > 0 else 0.0
            upper = bounds[i]
            return float(lower + (upper - lower) * max(0.0, rank - cumulative) / count)
        cumulative += count
    return float(bounds[-1])  # unreachable unless counts are negative


def minute_start(timestamp: float) -> datetime:
    """The start of the UTC minute holding the Unix time ``timestamp``, as an aware datetime."""
    return datetime.fromtimestamp(timestamp - timestamp % 60, UTC)


def floor_minute(moment: datetime) -> datetime:
    """``moment`` (aware) cut to the start of its minute, in UTC."""
    return moment.astimezone(UTC).replace(second=0, microsecond=0)


class DurationSketch:
    """A mergeable quantile sketch of durations with 1 % relative accuracy (DDSketch)."""

    RELATIVE_ACCURACY = 0.01
    GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
    LOG_GAMMA = math.log(GAMMA)
    #: Durations at or below this (seconds) are counted as zero.
    MIN_VALUE = 1e-6

    __slots__ = ("bins", "zeros", "count", "min", "max")

    def __init__(self):
        self.bins: dict[int, int] = {}
        self.zeros = 0
        self.count = 0
        self.min: float | None = None
        self.max: float | None = None

    def add(self, seconds: float, count: int = 1) -> None:
        seconds = max(0.0, float(seconds))
        if seconds <= self.MIN_VALUE:
            self.zeros += count
        else:
            key = math.ceil(math.log(seconds) / self.LOG_GAMMA)
            self.bins[key] = self.bins.get(key, 0) + count
        self.count += count
        self.min = seconds if self.min is None else min(self.min, seconds)
        self.max = seconds if self.max is None else max(self.max, seconds)

    def merge(self, other: "DurationSketch | dict | None") -> "DurationSketch":
        """Add ``other`` (a sketch, or its JSON form) into this one; return self."""
        if isinstance(other, dict):
            other = DurationSketch.from_json(other)
        if not other or not other.count:
            return self
        for key, count in other.bins.items():
            self.bins[key] = self.bins.get(key, 0) + count
        self.zeros += other.zeros
        self.count += other.count
        self.min = other.min if self.min is None else min(self.min, other.min)
        self.max = other.max if self.max is None else max(self.max, other.max)
        return self

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (a fraction, or percent above 1); None when empty."""
        q = _fraction(q)
        if not self.count:
            return None
        if q in (0, 1):  # the extremes are known exactly
            return float(self.max if q else self.min)
        rank = q * (self.count - 1)
        cumulative = self.zeros
        if cumulative > rank:
            return 0.0
        value = self.max
        for key in sorted(self.bins):
            cumulative += self.bins[key]
            if cumulative > rank:
                value = 2 * self.GAMMA**key / (self.GAMMA + 1)
                break
        # The bin's value is within 1 % of the durations it holds; never report beyond the extremes seen.
        return float(min(max(value, self.min), self.max))

    def to_json(self) -> dict:
        return {
            "bins": {str(key): count for key, count in sorted(self.bins.items())},
            "zeros": self.zeros,
            "count": self.count,
            "min": self.min,
            "max": self.max,
        }

    @classmethod
    def from_json(cls, data) -> "DurationSketch":
        """A sketch from its JSON form; anything unreadable gives an empty sketch."""
        sketch = cls()
        try:
            bins = {int(key): int(count) for key, count in (data.get("bins") or {}).items()}
            zeros = int(data.get("zeros") or 0)
            low, high = data.get("min"), data.get("max")
            count = sum(bins.values()) + zeros
            if count and (low is None or high is None):
                return sketch
            sketch.bins, sketch.zeros, sketch.count = bins, zeros, count
            sketch.min = float(low) if count else None
            sketch.max = float(high) if count else None
        except (AttributeError, TypeError, ValueError):
            return cls()
        return sketch

    def __bool__(self) -> bool:
        return self.count > 0

    def __eq__(self, other) -> bool:
        return isinstance(other, DurationSketch) and self.to_json() == other.to_json()


def histogram_json(buckets: Sequence[int], sketch: DurationSketch) -> dict:
    """The stored form of a ``TaskMinute`` histogram field: coarse buckets and the sketch."""
    return {"buckets": list(buckets), "sketch": sketch.to_json()}


def histogram_parts(value) -> tuple[list[int], DurationSketch | None]:
    """Coarse buckets and sketch of a stored histogram field; the sketch is None in rows older than it."""
    if isinstance(value, dict):
        buckets = value.get("buckets")
        return (list(buckets) if isinstance(buckets, list) else []), DurationSketch.from_json(value.get("sketch"))
    return (list(value) if isinstance(value, list) else []), None


def _fraction(q: float) -> float:
    if q > 1:
        q = q / 100
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q!r} is outside 0..1 (or 0..100 as percent)")
    return q
