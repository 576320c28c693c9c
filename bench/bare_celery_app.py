"""A minimal Celery app for ``bench/worker_drain.py``: bare Celery, not the project's app.

Its broker is ``BARE_BROKER_URL``; results are ignored and no result backend is set.
``BARE_ACKS_LATE=1`` adds the delivery guarantees taskcenter runs with
(``task_acks_late`` and ``task_reject_on_worker_lost``); everything else is Celery's default.

    BARE_BROKER_URL=redis+socket:///tmp/x/redis.sock celery -A bench.bare_celery_app worker -c 2
"""

import os

from celery import Celery

# Not the current app: the benchmark imports it beside the project's app.
app = Celery("bare", broker=os.environ.get("BARE_BROKER_URL", "redis://localhost:6379/0"), set_as_current=False)
app.conf.task_ignore_result = True
app.conf.result_backend = None
if os.environ.get("BARE_ACKS_LATE") == "1":
    app.conf.task_acks_late = True
    app.conf.task_reject_on_worker_lost = True


@app.task(name="bare.noop")
def noop(x, y):
    return x + y
