"""Example tasks: quick, long, failing, failing then recovering, with a secret, and one that sends others."""

import hashlib
import time

from celery.utils.log import get_task_logger

from taskcenter.catalogue import launchable_task
from taskcenter.checkpoints import checkpoint_load, checkpoint_save
from taskcenter.priorities import Priority
from taskcenter.progress import report_progress
from taskcenter.retry_policy import RetryPolicy

logger = get_task_logger(__name__)


@launchable_task(name="examples.add", queue="high", priority=Priority.HIGH)
def add(x: int, y: int) -> int:
    """Add two numbers and return the sum.

    A quick task, handy to check that workers answer.
    """
    return x + y


@launchable_task(name="examples.process_items", queue="low", priority=Priority.LOW, bind=True, recovery="RESUME")
def process_items(self, items: int = 10, seconds_per_item: float = 1.0) -> dict:
    """Process a number of items, sleeping a while for each.

    A long task that reports its progress, for watching a run move from PENDING
    to STARTED to SUCCESS with a progress bar, speed and ETA. It saves a
    checkpoint after each item: resumed (strategy RESUME) after its worker died
    at item 11, it goes on at item 11, not 1.
    """
    done = int((checkpoint_load(self) or {}).get("done", 0))
    if done:
        logger.info("Resuming at item %s of %s", done + 1, items)
    report_progress(self, done=done, total=items, message="starting" if not done else f"resuming at item {done + 1}")
    first = done + 1
    for done in range(first, items + 1):
        time.sleep(seconds_per_item)
        checkpoint_save(self, {"done": done}, progress=f"{done} of {items}")
        report_progress(self, done=done, total=items, message=f"item {done} of {items}")
        logger.info("Processed item %s of %s", done, items)
    return {"processed": items, "first_item": first}


@launchable_task(name="examples.sum_batch", queue="default", batch_argument="numbers")
def sum_batch(numbers: list[int]) -> int:
    """Add up a list of numbers.

    Made for batch launches: each batch of items becomes one run.
    """
    return sum(numbers)


@launchable_task(name="examples.sync_account", queue="default", dedup=True)
def sync_account(account_id: int, seconds: float = 2.0) -> str:
    """Pretend to synchronise one account.

    De-duplicated: a second launch for the same account is refused while one waits or runs.
    """
    time.sleep(seconds)
    return f"account {account_id} synchronised"


@launchable_task(name="examples.connect", queue="default", secret=("password",))
def connect(host: str, user: str, password: str) -> str:
    """Pretend to log in to a server with a password.

    The password is a secret argument: the worker receives it, but History, the run
    page, the audit trail, stored results and worker logs show it as ********.
    """
    fingerprint = hashlib.sha256(password.encode()).hexdigest()[:12]
    logger.info("Connecting to %s as %s", host, user)
    return f"{user}@{host}: logged in (password fingerprint {fingerprint})"


class ExampleFailure(RuntimeError):
    """Raised on purpose by ``examples.fail``."""


@launchable_task(name="examples.fail")
def fail(message: str = "This task fails on purpose.") -> None:
    """Raise an error, to see how a failed run and its traceback are shown."""
    _check_input(message)


def _check_input(message: str) -> None:
    raise ExampleFailure(message)


@launchable_task(
    name="examples.flaky",
    queue="default",
    bind=True,
    retry=RetryPolicy(
        max_retries=3,
        backoff="exponential",
        delay=1,
        max_delay=10,
        jitter=False,
        retry_on=(ConnectionError, TimeoutError),
        never_retry=(ValueError,),
    ),
)
def flaky(self, failures: int = 2, error: str = "connection") -> dict:
    """Fail on the first attempts, then succeed: retried by its retry policy.

    Raises ``ConnectionError`` (retried) on its first ``failures`` attempts, or
    ``ValueError`` (never retried) when ``error`` is "value". Its policy: up to
    3 retries, exponential backoff 1 s, 2 s, 4 s, no jitter.
    """
    attempt = self.request.retries + 1
    if attempt <= failures:
        if error == "value":
            raise ValueError(f"attempt {attempt}: bad input, retrying will not help")
        raise ConnectionError(f"attempt {attempt}: the server did not answer")
    return {"attempt": attempt, "retries": self.request.retries}


@launchable_task(name="examples.fan_out", queue="default")
def fan_out(count: int = 2, depth: int = 1) -> list[str]:
    """Send ``count`` runs from inside this task and return their task ids.

    The children are runs of examples.add when ``depth`` is 1, else of examples.fan_out
    one level less deep. Each child records this run as its parent and the first run as
    its root, so the run pages link them.
    """
    if not 0 <= count <= 10 or not 1 <= depth <= 3:
        raise ValueError("count must be between 0 and 10 and depth between 1 and 3")
    if depth == 1:
        return [add.delay(i, i).id for i in range(count)]
    return [fan_out.delay(count, depth - 1).id for _ in range(count)]
