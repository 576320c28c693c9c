"""The monitor: one process that turns Celery's event stream into figures.

``manage.py taskcenter_monitor`` (``runner.Monitor``) consumes the events every
worker and publisher sends, and keeps

- the state of each worker in Redis (``redis_state``), written at most once per
  second per worker;
- per-minute aggregates per task type and queue in ``TaskMinute`` and running
  totals in ``TaskTotals`` (``aggregate`` counts in memory, ``store`` flushes
  every ~2 s in one transaction);
- queue depth and age samples in ``QueueSample`` every ~10 s, and deletes old
  rows.

Pages read all of it through ``taskcenter.selectors.monitoring``.
"""
