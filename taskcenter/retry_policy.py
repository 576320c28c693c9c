"""Retry policies: how a catalogued task's failures are retried, and the task class that applies them.

A policy is declared in code with the task (``launchable_task(..., retry=RetryPolicy(...))``);
an operator may override it on the task's page. Overrides are kept in the database
(``RetryPolicyOverride``) and copied by the service that saves them to one Redis hash,
``OVERRIDES_KEY``, field = task name, value = the policy as JSON. A worker reads only that
field, and only when a task raised: the success path costs nothing, a failure one Redis read,
and a saved override applies to the next failure of every running worker, without a restart.

Rules, in order, for an exception raised by a task with a policy:

1. Celery's own control exceptions (``Retry``, ``Ignore``, ``Reject``) and anything that is
   not an ``Exception`` (``SystemExit``, a terminated worker) pass through untouched;
2. an instance of a class in ``never_retry`` fails the run at once;
3. when ``retry_on`` is not empty, an exception that is an instance of none of its classes
   fails the run at once; an empty ``retry_on`` retries every other exception;
4. otherwise the task is retried with ``self.retry(countdown=..., max_retries=...)``: a
   separate attempt of the same task id. After ``max_retries`` retries the exception fails the run.

Countdown of retry ``n`` (0 for the first): ``delay`` when ``backoff`` is fixed,
``delay * 2**n`` when exponential, capped at ``max_delay`` and at ``TASKCENTER_MAX_COUNTDOWN``
(the longest delay a launch may have; a waiting retry is held in taskcenter's scheduled
set, ``taskcenter.scheduled_set``, not on a worker). With
``jitter`` the countdown is drawn uniformly from 0 to that value ("full jitter").
"""

import json
import logging
import random
import sys
from dataclasses import dataclass, field, replace

from celery import Task
from celery.exceptions import Ignore, Reject, Retry
from django.conf import settings
from django.core.exceptions import AppRegistryNotReady
from django.utils.module_loading import import_string
from django.utils.translation import gettext, gettext_noop

from taskcenter.broker import pooled_broker_client

logger = logging.getLogger(__name__)

#: Redis hash of the operators' overrides: task name -> policy JSON.
OVERRIDES_KEY = "taskcenter:retry-policies"
BACKOFFS = ("fixed", "exponential")
#: Most retries a policy may ask for.
MAX_RETRIES_LIMIT = 100
#: Celery's control exceptions, never retried by a policy.
PASS_THROUGH = (Retry, Ignore, Reject)


class InvalidPolicy(ValueError):
    """A policy or an exception path that cannot be used; the message says why."""


def exception_path(cls: type) -> str:
    """The dotted path of an exception class (``builtins.ValueError`` is written ``ValueError``)."""
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def exception_class(path: str) -> type[BaseException]:
    """The exception class named by ``path`` (``ValueError``, ``redis.exceptions.TimeoutError``).

    Only modules already imported are looked in. Raises ``InvalidPolicy``.
    """
    path = path.strip()
    if not path or len(path) > 200 or not all(part.isidentifier() for part in path.split(".")):
        raise InvalidPolicy(_said(gettext_noop("%(path)r is not a dotted path of a class."), path=path[:60]))
    path = path if "." in path else f"builtins.{path}"
    module = path.rpartition(".")[0]
    if module not in sys.modules:
        # Never import a module because an operator typed its name (imports run code);
        # the exceptions a task raises come from modules its code has imported already.
        raise InvalidPolicy(
            _said(
                gettext_noop("%(path)s cannot be imported: %(module)s is not a module the tasks import."),
                path=path,
                module=module,
            )
        )
    try:
        cls = import_string(path)
    except ImportError as exc:
        raise InvalidPolicy(_said(gettext_noop("%(path)s cannot be imported."), path=path)) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseException)):
        raise InvalidPolicy(_said(gettext_noop("%(path)s is not an exception class."), path=path))
    return cls


@dataclass(frozen=True)
class RetryPolicy:
    """How failures of one task type are retried (see the module's rules)."""

    max_retries: int = 3
    backoff: str = "exponential"  # or "fixed"
    delay: float = 2.0  # seconds: the fixed delay, or the first delay of an exponential backoff
    max_delay: float = 60.0  # seconds: no retry waits longer
    jitter: bool = True  # draw each countdown uniformly from 0 to the computed one
    retry_on: tuple[type[BaseException], ...] = field(default=(ConnectionError, TimeoutError))
    never_retry: tuple[type[BaseException], ...] = field(default=(ValueError,))

    def __post_init__(self):
        object.__setattr__(self, "retry_on", _classes(self.retry_on))
        object.__setattr__(self, "never_retry", _classes(self.never_retry))
        if not isinstance(self.max_retries, int) or isinstance(self.max_retries, bool):
            raise InvalidPolicy(_said(gettext_noop("max_retries must be a whole number.")))
        if not 0 <= self.max_retries <= MAX_RETRIES_LIMIT:
            raise InvalidPolicy(
                _said(gettext_noop("max_retries must be between 0 and %(most)s."), most=MAX_RETRIES_LIMIT)
            )
        if self.backoff not in BACKOFFS:
            raise InvalidPolicy(_said(gettext_noop("backoff must be one of %(values)s."), values=", ".join(BACKOFFS)))
        for name in ("delay", "max_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
                raise InvalidPolicy(_said(gettext_noop("%(name)s must be a number of seconds, 0 or more."), name=name))

    def should_retry(self, exc: BaseException) -> bool:
        """Whether ``exc`` may be retried (rules 1 to 3); the retry count is Celery's to check."""
        if not isinstance(exc, Exception) or isinstance(exc, PASS_THROUGH):
            return False
        if isinstance(exc, self.never_retry):
            return False
        return not self.retry_on or isinstance(exc, self.retry_on)

    def ceiling(self) -> float:
        """The longest countdown: ``max_delay``, never beyond ``TASKCENTER_MAX_COUNTDOWN``."""
        return float(min(self.max_delay, settings.TASKCENTER_MAX_COUNTDOWN))

    def countdown(self, retries: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retries`` (0 for the first retry)."""
        base = self.delay if self.backoff == "fixed" else self.delay * 2 ** min(max(retries, 0), 64)
        capped = min(float(base), self.ceiling())
        return (rng or random).uniform(0, capped) if self.jitter else capped

    def as_json(self) -> dict:
        """The policy as JSON values (exceptions as dotted paths), as stored in an override."""
        return {
            "max_retries": self.max_retries,
            "backoff": self.backoff,
            "delay": self.delay,
            "max_delay": self.max_delay,
            "jitter": self.jitter,
            "retry_on": [exception_path(cls) for cls in self.retry_on],
            "never_retry": [exception_path(cls) for cls in self.never_retry],
        }

    @classmethod
    def from_json(cls, data: dict) -> "RetryPolicy":
        """A policy from ``as_json`` values; raises ``InvalidPolicy``."""
        if not isinstance(data, dict):
            raise InvalidPolicy(_said(gettext_noop("A policy is a JSON object.")))
        known = {key: data[key] for key in cls().as_json() if key in data}
        for key in ("retry_on", "never_retry"):
            if key in known:
                if not isinstance(known[key], list) or not all(isinstance(p, str) for p in known[key]):
                    raise InvalidPolicy(_said(gettext_noop("%(name)s must be a list of dotted paths."), name=key))
                known[key] = tuple(exception_class(path) for path in known[key])
        if "jitter" in known and not isinstance(known["jitter"], bool):
            raise InvalidPolicy(_said(gettext_noop("jitter must be true or false.")))
        try:
            return replace(cls(), **known)
        except TypeError as exc:
            raise InvalidPolicy(str(exc)) from exc


def _said(message: str, **values) -> str:
    """``message`` in the active language; in English while Django is still loading (a policy in task code)."""
    try:
        text = gettext(message)
    except AppRegistryNotReady:
        text = message
    return text % values if values else text


def _classes(value) -> tuple:
    classes = (value,) if isinstance(value, type) else tuple(value)
    for cls in classes:
        if not (isinstance(cls, type) and issubclass(cls, BaseException)):
            raise InvalidPolicy(_said(gettext_noop("%(path)s is not an exception class."), path=repr(cls)))
    return classes


def override_read(app, task_name: str) -> RetryPolicy | None:
    """The operator's override of ``task_name`` from Redis (one HGET), or None when there is none.

    A broker that does not answer, or an override that no longer reads (a class removed
    from the code), gives None: the worker then applies the policy in the code.
    """
    try:
        with pooled_broker_client(app) as client:
            raw = client.hget(OVERRIDES_KEY, task_name)
    except Exception:  # noqa: BLE001 (the broker's errors vary; a failing task must still fail or retry)
        logger.warning("Could not read the retry policy override of %s; using the code's", task_name, exc_info=True)
        return None
    if raw is None:
        return None
    try:
        return RetryPolicy.from_json(json.loads(raw))
    except (ValueError, TypeError) as exc:
        logger.warning("Ignoring the retry policy override of %s: %s", task_name, exc)
        return None


class PolicyTask(Task):
    """Base class of catalogued tasks: retries their failures by their retry policy.

    The policy in code is the class attribute ``retry_policy`` (None: failures are not
    retried); an operator's override in Redis wins. Only a failure reads Redis.
    """

    retry_policy: RetryPolicy | None = None

    def current_retry_policy(self) -> RetryPolicy | None:
        return override_read(self.app, self.name) or self.retry_policy

    def __call__(self, *args, **kwargs):
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:
            if self.request.called_directly or isinstance(exc, PASS_THROUGH):
                raise
            policy = self.current_retry_policy()
            if policy is None or not policy.should_retry(exc):
                raise
            retries = self.request.retries or 0
            if retries >= policy.max_retries:
                raise
            countdown = policy.countdown(retries)
            logger.info(
                "%s[%s] failed (%s); retry %d of %d in %.1fs",
                self.name, self.request.id, type(exc).__name__, retries + 1, policy.max_retries, countdown,
            )  # fmt: skip
            raise self.retry(exc=exc, countdown=countdown, max_retries=policy.max_retries) from exc
