"""Duration histograms over ``DURATION_BUCKETS`` and minute arithmetic; pure functions.

A histogram is a list of ``len(DURATION_BUCKETS) + 1`` counts: bucket ``i``
counts durations ``d`` with ``DURATION_BUCKETS[i - 1] < d <= DURATION_BUCKETS[i]``
(as Prometheus' ``le`` buckets, but not cumulative), the last one counts
durations above the largest bound.
"""

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
    if q > 1:
        q = q / 100
    if not 0 <= q <= 1:
        raise ValueError(f"quantile {q!r} is outside 0..1 (or 0..100 as percent)")
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
