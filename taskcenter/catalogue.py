"""The catalogue: the allowlist of tasks operators may launch.

A task is launchable only when it is registered with Celery *and* entered in
this catalogue, so the UI can never be used to send an arbitrary task name
(``celery.*`` built-ins included). Declare a task with ``launchable_task``::

    @launchable_task(name="billing.send_invoices", queue="low", priority=Priority.LOW)
    def send_invoices(day: str) -> int:
        "Send the invoices of one day."

The decorator creates a Celery ``shared_task`` whose messages go to the
declared queue with the declared priority, whoever sends them. Arguments named
in ``secret=(...)`` reach the worker but are masked everywhere they are stored
or shown (see ``taskcenter.secret_arguments``). ``retry=RetryPolicy(...)`` retries
its failures by that policy; operators may override it, or give one to a task that
declares none (see ``taskcenter.retry_policy``).
"""

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

from celery import shared_task
from django.conf import settings
from django.utils.crypto import salted_hmac

from taskcenter.priorities import Priority
from taskcenter.retry_policy import PolicyTask, RetryPolicy
from taskcenter.strategies import Strategy


@dataclass(frozen=True)
class CatalogueEntry:
    """What the catalogue knows about one launchable task."""

    name: str
    func: Callable
    description: str
    queue: str | None  # None: the default queue at launch time
    priority: Priority
    bound: bool = False  # bind=True tasks take ``self`` first; operators never fill it
    dedup: bool = False  # derive a de-duplication key from the arguments of every launch
    batch_argument: str | None = None  # parameter that takes a list of items in a batch launch
    secret: tuple[str, ...] = ()  # parameters whose values are masked outside the worker
    retry: RetryPolicy | None = None  # retry policy in code; operators may override it
    recovery: str | None = None  # recovery strategy after a final failure (taskcenter.strategies); None: none

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().splitlines()[0] if self.description.strip() else self.name

    @property
    def default_queue(self) -> str:
        return self.queue or settings.TASKCENTER_DEFAULT_QUEUE

    @cached_property
    def signature(self) -> inspect.Signature:
        """The call signature operators fill in (computed once: every launch checks its arguments against it)."""
        signature = inspect.signature(self.func)
        if self.bound:
            signature = signature.replace(parameters=list(signature.parameters.values())[1:])
        return signature

    @cached_property
    def type_hints(self) -> dict:
        """The function's resolved type hints (``taskcenter.arguments.type_hints``), computed once."""
        from taskcenter.arguments import type_hints

        return type_hints(self.func)

    @property
    def signature_text(self) -> str:
        return f"{self.func.__name__}{self.signature}"

    def dedup_key_for(self, args: list, kwargs: dict) -> str:
        """A key equal for every launch with the same arguments, however they are passed.

        Keyed with ``SECRET_KEY`` so that a key shown on a page cannot be used to
        guess a secret argument.
        """
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        canonical = json.dumps(bound.arguments, sort_keys=True, separators=(",", ":"), default=str)
        digest = salted_hmac("taskcenter.dedup", canonical, algorithm="sha256").hexdigest()
        return f"{self.name}:{digest[:32]}"


_entries: dict[str, CatalogueEntry] = {}


def register(
    name: str,
    func: Callable,
    *,
    description: str | None = None,
    queue: str | None = None,
    priority: Priority = Priority.NORMAL,
    bound: bool = False,
    dedup: bool = False,
    batch_argument: str | None = None,
    secret: tuple[str, ...] = (),
    retry: RetryPolicy | None = None,
    recovery: str | None = None,
) -> CatalogueEntry:
    """Add a task, already registered with Celery under ``name``, to the catalogue."""
    secret = (secret,) if isinstance(secret, str) else tuple(secret)
    if recovery is not None and recovery not in Strategy.values:
        raise ValueError(f"{name}: unknown recovery strategy {recovery!r}; use one of {', '.join(Strategy.values)}")
    entry = CatalogueEntry(
        name=name,
        func=func,
        description=inspect.cleandoc(description or func.__doc__ or ""),
        queue=queue,
        priority=Priority(priority),
        bound=bound,
        dedup=dedup,
        batch_argument=batch_argument,
        secret=secret,
        retry=retry,
        recovery=recovery,
    )
    parameters = entry.signature.parameters
    takes_any_keyword = any(p.kind == inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [s for s in secret if s not in parameters and not takes_any_keyword]
    if unknown:
        raise ValueError(f"{name}: secret names no parameter of {entry.signature_text}: {', '.join(unknown)}")
    _entries[name] = entry
    return entry


def launchable_task(
    *,
    name: str | None = None,
    queue: str | None = None,
    priority: Priority = Priority.NORMAL,
    description: str | None = None,
    dedup: bool = False,
    batch_argument: str | None = None,
    secret: tuple[str, ...] = (),
    retry: RetryPolicy | None = None,
    recovery: str | None = None,
    **task_options,
):
    """Declare a Celery task and enter it in the catalogue in one step.

    ``dedup=True`` refuses a launch while a run with the same arguments waits or
    runs; ``batch_argument`` names the list parameter a batch launch fills;
    ``secret`` names parameters whose values are masked outside the worker;
    ``retry`` is the task's retry policy (its failures are retried by ``PolicyTask``, the
    base class of every catalogued task unless ``base=`` names another).
    ``recovery`` is the strategy applied after a final failure (RETRY, RESUME, ...).
    """

    def decorate(func: Callable):
        task_name = name or f"{func.__module__}.{func.__name__}"
        options = dict(task_options, priority=Priority(priority).broker_priority)
        if queue:
            options["queue"] = queue
        # Every catalogued task can be given a retry policy by an operator, with one in its code or not.
        options.setdefault("base", PolicyTask)
        options["retry_policy"] = retry
        task = shared_task(name=task_name, **options)(func)
        register(
            task_name,
            func,
            description=description,
            queue=queue,
            priority=priority,
            bound=bool(task_options.get("bind")),
            dedup=dedup,
            batch_argument=batch_argument,
            secret=secret,
            retry=retry,
            recovery=recovery,
        )
        return task

    return decorate


def get_entry(name: str) -> CatalogueEntry | None:
    """Return the catalogue entry for ``name``, or None when it is not launchable."""
    return _entries.get(name)


def all_entries() -> list[CatalogueEntry]:
    """Every launchable task, sorted by name."""
    return sorted(_entries.values(), key=lambda entry: entry.name)
