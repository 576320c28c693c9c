"""Live progress of long tasks: percent, message, items done and total, speed and ETA.

A task reports with ``report_progress`` (one Redis write, throttled); pages read
it with ``progress_of``. Progress lives in Redis with an expiry, not in the
database, so reporting costs the task no database round-trip.

    @launchable_task(name="imports.load", bind=True)
    def load(self, rows: list):
        for done, row in enumerate(rows, 1):
            ...
            report_progress(self, done=done, total=len(rows), message=f"row {done}")
"""

import logging
import time
from dataclasses import dataclass

from taskcenter.broker import broker_client

logger = logging.getLogger(__name__)

KEY = "taskcenter:progress:{}"
#: How long progress is kept after its last update.
TTL_SECONDS = 24 * 3600
#: Updates closer together than this are skipped (except the final one).
MIN_INTERVAL = 0.25

_last_write: dict[str, float] = {}


@dataclass(frozen=True)
class Progress:
    percent: float
    done: int | None
    total: int | None
    message: str
    started_at: float
    updated_at: float

    @property
    def rate(self) -> float | None:
        """Items per second since the first report."""
        elapsed = self.updated_at - self.started_at
        if self.done is None or elapsed <= 0:
            return None
        return self.done / elapsed

    @property
    def eta_seconds(self) -> float | None:
        """Seconds left at the current rate, when items are counted."""
        rate = self.rate
        if not rate or self.total is None or self.done is None:
            return None
        return max(0.0, (self.total - self.done) / rate)

    def as_dict(self) -> dict:
        return {
            "percent": round(self.percent, 1),
            "done": self.done,
            "total": self.total,
            "message": self.message,
            "rate": round(self.rate, 3) if self.rate is not None else None,
            "eta_seconds": round(self.eta_seconds) if self.eta_seconds is not None else None,
            "updated_at": self.updated_at,
        }


def report_progress(task, *, done: int | None = None, total: int | None = None, percent: float | None = None,
                    message: str = "") -> None:  # fmt: skip
    """Record the progress of the running task (``self`` of a bound task, or a task id).

    Give ``done`` and ``total`` (items) or ``percent``. Never raises: a task must not
    fail because its progress could not be shown.
    """
    task_id = task if isinstance(task, str) else getattr(getattr(task, "request", None), "id", None)
    if not task_id:
        return
    if percent is None:
        percent = 100.0 * done / total if done is not None and total else 0.0
    now = time.time()
    final = percent >= 100 or (total is not None and done == total)
    if not final and now - _last_write.get(task_id, 0) < MIN_INTERVAL:
        return
    _last_write[task_id] = now
    if final:
        _last_write.pop(task_id, None)
    fields = {"percent": min(max(percent, 0.0), 100.0), "message": message[:500], "updated_at": now}
    if done is not None:
        fields["done"] = done
    if total is not None:
        fields["total"] = total
    try:
        with broker_client() as client:
            key = KEY.format(task_id)
            pipe = client.pipeline()
            pipe.hsetnx(key, "started_at", now)
            pipe.hset(key, mapping=fields)
            pipe.expire(key, TTL_SECONDS)
            pipe.execute()
    except Exception:
        logger.warning("Could not record progress of %s", task_id, exc_info=True)


def progress_of(task_ids: list[str]) -> dict[str, Progress]:
    """The latest progress of each task that reported any (one round-trip)."""
    if not task_ids:
        return {}
    with broker_client() as client:
        pipe = client.pipeline()
        for task_id in task_ids:
            pipe.hgetall(KEY.format(task_id))
        rows = pipe.execute()
    found = {}
    for task_id, row in zip(task_ids, rows, strict=True):
        if not row:
            continue
        row = {k.decode() if isinstance(k, bytes) else k: v.decode() if isinstance(v, bytes) else v
               for k, v in row.items()}  # fmt: skip
        found[task_id] = Progress(
            percent=float(row.get("percent", 0)),
            done=int(row["done"]) if "done" in row else None,
            total=int(row["total"]) if "total" in row else None,
            message=row.get("message", ""),
            started_at=float(row.get("started_at", row.get("updated_at", 0))),
            updated_at=float(row.get("updated_at", 0)),
        )
    return found
