"""Queries over the run history, built to stay fast with millions of runs.

A run's state is its own indexed ``state`` column (kept true by the database, see
``Run.state``), so every filter reads ``taskcenter_run`` alone, through an index on
(filter, created_at, id). Pages are cut with keyset pagination on (created_at, id),
newest first: each page is one indexed range walk of ``page_size + 1`` rows, a time
range is walked in page order (never sorted), and no query counts the whole table.
The page's results are then read by their task ids (one query, a page of keys).

Filters that no single index covers together (say a user and a task: the user's
index does not hold the task) cannot be one range walk: the page walks the index of
one of them and checks the others on each row, which at millions of runs could mean
walking all of that user's runs to find none. Such a page walks at most
``TASKCENTER_HISTORY_SCAN_LIMIT`` rows of that index; when it stops there, the page
says so (``RunPage.scan_limited``) and its cursor continues the walk from the last row
it looked at, so no run is skipped and none is shown twice.

Task and queue filters match names case-insensitively: what was typed is looked up
in the catalogue, the tasks the app registers and the configured queues first (an
exact name, else every name containing it, at most ``MAX_NAME_MATCHES``), and the
runs are then read by those names on the name's index, one walk per name merged in
page order. A name found nowhere is matched exactly (a task another client sent).

The text search (``RunFilters.text``) reads the full-text index of migration 0023
(SQLite FTS5, PostgreSQL GIN over ``to_tsvector``): the newest
``TASKCENTER_HISTORY_SCAN_LIMIT`` runs (by id) whose arguments, result or exception hold
every word (as a word or the start of one). The page is cut from those runs alone, so it
reads at most that many rows by key; when the index holds more, the page says so
(``RunPage.search_capped``). A task id prefix is read the same way, by key.
"""

import itertools
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection
from django.db.models import F, Q, QuerySet
from django_celery_results.models import TaskResult

from taskcenter import catalogue, search_index
from taskcenter.models import READY_STATES, REVOKED, SENT_BY_SCHEDULE, TAKEN_BY_A_WORKER, Batch, Run, Workflow
from taskcenter.search_text import SQL_FUNCTION, word_pieces

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 50
#: The page order: newest first, by creation time then id (the cursor's tie-break).
PAGE_ORDER = ("-created_at", "-id")


@dataclass(frozen=True)
class RunFilters:
    state: str = ""
    task_name: str = ""
    queue: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    periodic_task_name: str = ""
    worker: str = ""  # the worker that ran it (hostname, as recorded on the run)
    launched_by: str = ""  # the username of whoever launched it
    source: str = ""  # a RunSource value
    task_id: str = ""  # exact, or the start of an id
    text: str = ""  # words in the arguments, result or exception
    sort: str = ""  # "" newest first; "runtime": longest first, among the newest matching runs


@dataclass
class RunPage:
    runs: list[Run]
    newer_cursor: int | None = None  # pass as ``after`` to see the newer page
    older_cursor: int | None = None  # pass as ``before`` to see the older page
    filters: RunFilters = field(default_factory=RunFilters)
    #: True when the page stopped walking after ``scanned`` runs of ``scan_index`` before it
    #: was full: older (``before``) or newer (``after``) runs may still match, and the page's
    #: cursor in that direction continues the walk from the last run it looked at.
    scan_limited: bool = False
    scanned: int = 0
    #: The filter whose index the page walked, in words ("launched by alice"; "" for every run).
    scan_index: str = ""
    #: With ``scan_limited``: "before" or "after", the cursor that continues the walk.
    scan_direction: str = ""
    #: True when the text search (or an id prefix) found more runs than it reads: only the
    #: newest ``scanned`` of them are in these pages.
    search_capped: bool = False
    #: With ``sort="runtime"``: how many of the newest matching runs were compared.
    sorted_among: int = 0

    @property
    def scan_cursor(self) -> int | None:
        """The run id that continues a limited walk (as ``scan_direction``), or None."""
        if not self.scan_limited:
            return None
        return self.newer_cursor if self.scan_direction == "after" else self.older_cursor


#: Sets of equality filters (model fields) that one index covers, each followed by
#: (created_at, id): a page with exactly these filters is one range walk.
COVERED = {
    frozenset(),
    frozenset({"recorded_state"}),
    frozenset({"task_name"}),
    frozenset({"task_name", "recorded_state"}),
    frozenset({"queue"}),
    frozenset({"worker"}),
    frozenset({"launched_by_id"}),
    frozenset({"periodic_task_name"}),
}
#: Which covered filter drives the walk when the filters are not covered together, first
#: choice first (the usually narrowest); the others are checked on each row walked.
DRIVING_ORDER = [
    frozenset({"task_result_id"}),
    frozenset({"task_name", "recorded_state"}),
    frozenset({"periodic_task_name"}),
    frozenset({"launched_by_id"}),
    frozenset({"worker"}),
    frozenset({"recorded_state"}),
    frozenset({"task_name"}),
    frozenset({"queue"}),
    frozenset(),
]


#: At most this many known names match what was typed in a task or queue filter.
MAX_NAME_MATCHES = 20
#: At most this many runs match the start of a task id.
MAX_ID_PREFIX_MATCHES = 50
#: The words of a text search (letters and digits), at most this many.
MAX_SEARCH_WORDS = 8
WORD = re.compile(r"[^\W_]+")
#: The expression the PostgreSQL search index of migration 0025 is on (queries must repeat it exactly).
_SEARCHED_TEXT = "args::text || ' ' || kwargs::text || ' ' || outcome"
POSTGRESQL_SEARCH_DOCUMENT = f"to_tsvector('simple'::regconfig, {SQL_FUNCTION}({_SEARCHED_TEXT}))"
#: Filters whose value is a set of keys: the page reads those runs by key (see ``_keyed_page``).
KEYED = ("id", "task_result_id")


def known_task_names() -> list[str]:
    """Task names to match a typed task filter against: the catalogue's and the app's registered tasks."""
    from celery import current_app

    names = {entry.name for entry in catalogue.all_entries()}
    names.update(name for name in current_app.tasks if not name.startswith("celery."))
    return sorted(names)


def names_matching(typed: str, known) -> tuple[str, ...]:
    """The known names ``typed`` stands for: itself when known, else those containing it (any case)."""
    if typed in known:
        return (typed,)
    folded = typed.casefold()
    found = [name for name in known if folded in name.casefold()]
    starts = [name for name in found if name.casefold().startswith(folded)]
    found = starts + [name for name in found if name not in starts]
    return tuple(found[:MAX_NAME_MATCHES]) or (typed,)


def task_ids_starting(prefix: str) -> tuple[str, ...]:
    """The task id itself when a run has it, else the ids that start with it (a range walk of the unique index)."""
    if Run.objects.filter(task_result_id=prefix).exists():
        return (prefix,)
    ids = (
        Run.objects.filter(task_result_id__gte=prefix, task_result_id__lt=prefix + "\U0010ffff")
        .order_by("task_result_id")
        .values_list("task_result_id", flat=True)[:MAX_ID_PREFIX_MATCHES]
    )
    return tuple(ids)


def search_words(text: str) -> list[str]:
    """The words of a text search as the index splits them (letters and digits), lower case."""
    return [word.lower() for word in WORD.findall(text)][:MAX_SEARCH_WORDS]


def runs_matching_text(text: str, *, limit: int) -> list[int]:
    """Ids of the newest ``limit`` runs (by id) whose arguments, result or exception hold every word of ``text``.

    Each word matches a word of the run's text or its start. Reads the index of
    migration 0023 only (FTS5 on SQLite, a GIN index on PostgreSQL).
    """
    # A word with CJK characters is a phrase of its pieces (see taskcenter.search_text); the
    # last piece of each word may be the start of a longer word.
    phrases = [word_pieces(word) for word in search_words(text)]
    if not phrases:
        return []
    if connection.vendor == "sqlite":
        _index_noted_runs()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"SELECT id FROM taskcenter_run WHERE {POSTGRESQL_SEARCH_DOCUMENT}"
                " @@ to_tsquery('simple'::regconfig, %s) ORDER BY id DESC LIMIT %s",
                [" & ".join(f"({' <-> '.join(pieces)}:*)" for pieces in phrases), limit],
            )
        else:
            cursor.execute(
                "SELECT rowid FROM taskcenter_run_search WHERE taskcenter_run_search MATCH %s"
                " ORDER BY rowid DESC LIMIT %s",
                [" ".join(f'"{" ".join(pieces)}"*' for pieces in phrases), limit],
            )
        return [row[0] for row in cursor.fetchall()]


def _index_noted_runs() -> None:
    """Bring SQLite's text index up to date first (migration 0028), so a search misses no run.

    The monitor does it every second; this is for the runs of the last second and for a
    deployment with no monitor running. When another write holds the database longer than
    ``SEARCH_CATCH_UP_WAIT_MS``, the index is read as it is: the search may then miss runs
    of the last second (logged).
    """
    try:
        search_index.search_index_catch_up(
            limit=search_index.SEARCH_CATCH_UP_LIMIT, wait_ms=search_index.SEARCH_CATCH_UP_WAIT_MS
        )
    except DatabaseError as exc:
        logger.warning("Text index not brought up to date before a search: %s", exc)


def _equalities(filters: RunFilters) -> dict | None:
    """The filters as model field -> value, or None when nothing can match (an unknown user, no text match).

    Task and queue names and the task id may stand for several values: a tuple then.
    """
    fields = {
        "recorded_state": filters.state,
        "periodic_task_name": filters.periodic_task_name,
        "worker": filters.worker,  # the result's worker is copied into the run (see Run.state)
        "source": filters.source,
    }
    found = {name: value for name, value in fields.items() if value}
    if filters.task_name:
        found["task_name"] = _one_or_many(names_matching(filters.task_name, known_task_names()))
    if filters.queue:
        found["queue"] = _one_or_many(names_matching(filters.queue, settings.TASKCENTER_QUEUES))
    if filters.task_id:
        ids = task_ids_starting(filters.task_id)
        if not ids:
            return None
        found["task_result_id"] = ids
    if filters.text.strip():
        ids = runs_matching_text(filters.text, limit=settings.TASKCENTER_HISTORY_SCAN_LIMIT)
        if not ids:
            return None
        found["id"] = tuple(ids)
    if filters.launched_by:
        # The user's id first (one indexed read), so the runs are walked on their own index.
        user_id = get_user_model().objects.filter(username=filters.launched_by).values_list("pk", flat=True).first()
        if user_id is None:
            return None
        found["launched_by_id"] = user_id
    return found


def _one_or_many(values: tuple):
    return values[0] if len(values) == 1 else values


#: Filters whose index holds only runs with a value (``WHERE NOT (column = '')``): SQLite uses such
#: an index only if the query repeats that condition.
PARTIAL_INDEXED = {"periodic_task_name": SENT_BY_SCHEDULE, "worker": TAKEN_BY_A_WORKER}


def _where(equalities: dict) -> Q:
    """``equalities`` as a filter: ``field__in`` for a tuple, with the condition of a partial index."""
    lookups = Q(**{(f"{name}__in" if isinstance(value, tuple) else name): value for name, value in equalities.items()})
    for name, condition in PARTIAL_INDEXED.items():
        if name in equalities:
            lookups &= condition
    return lookups


def _keyed(equalities: dict) -> bool:
    """Whether the page reads its runs by key: a text search, or task ids."""
    return any(name in equalities for name in KEYED)


def _in_time_range(runs: QuerySet[Run], filters: RunFilters) -> QuerySet[Run]:
    if filters.created_from:
        runs = runs.filter(created_at__gte=filters.created_from)
    if filters.created_to:
        runs = runs.filter(created_at__lt=filters.created_to)
    return runs


def runs_filtered(filters: RunFilters) -> QuerySet[Run]:
    """Runs matching ``filters``, newest first, read from the run table alone (no join)."""
    return _matching(filters, _equalities(filters))


def _matching(filters: RunFilters, equalities: dict | None) -> QuerySet[Run]:
    if equalities is None:
        return Run.objects.none()
    return _in_time_range(Run.objects.filter(_where(equalities)), filters).order_by(*PAGE_ORDER)


def state_is(state: str) -> Q:
    """Runs whose ``Run.state`` is ``state``, as a filter on the indexed column."""
    return Q(recorded_state=state)


def state_expression() -> F:
    """``Run.state`` as an SQL expression (for a subquery's "last state")."""
    return F("recorded_state")


def state_in(states) -> Q:
    """Runs whose ``Run.state`` is one of ``states`` (e.g. ``ACTIVE_STATES``), as a filter."""
    return Q(recorded_state__in=list(states))


def _cursor_position(cursor: int):
    """The (created_at, id) a cursor id stands for; a deleted run's place is taken by the next lower id."""
    created = Run.objects.filter(pk=cursor).values_list("created_at", flat=True).first()
    if created is None:
        created = Run.objects.filter(pk__lt=cursor).order_by("-id").values_list("created_at", flat=True).first()
    return created


def _older_than(runs: QuerySet[Run], created, pk: int) -> QuerySet[Run]:
    """Runs after (``created``, ``pk``) in page order: the bound an index walk starts from, ties by id."""
    return runs.filter(created_at__lte=created).exclude(created_at=created, id__gte=pk)


def _newer_than(runs: QuerySet[Run], created, pk: int) -> QuerySet[Run]:
    return runs.filter(created_at__gte=created).exclude(created_at=created, id__lte=pk)


def with_results(runs: list[Run]) -> list[Run]:
    """Attach each run's result row (or its absence), read in one query by the page's task ids."""
    results = {r.task_id: r for r in TaskResult.objects.filter(task_id__in=[run.task_id for run in runs]).order_by()}
    for run in runs:
        Run.task_result.field.set_cached_value(run, results.get(run.task_result_id))
    return runs


def runs_page(
    filters: RunFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> RunPage:
    """One page of runs: older than ``before``, newer than ``after``, or the newest.

    A cursor is a run id; the page continues from that run's (created_at, id). The
    bound ``created_at <= c`` is what the index walk starts from; the tie on ``c``
    is settled by id.

    Filters that no index covers together walk at most ``TASKCENTER_HISTORY_SCAN_LIMIT``
    runs (see the module's docstring and ``_scan_limited_page``). A text search or a task
    id reads its runs by key (``_keyed_page``); ``sort="runtime"`` orders the newest
    matching runs by run time (``_runtime_page``).
    """
    equalities = _equalities(filters)
    if filters.sort == "runtime":
        return _runtime_page(filters, equalities, page_size=page_size)
    if equalities is not None and _keyed(equalities):
        return _keyed_page(filters, equalities, before=before, after=after, page_size=page_size)
    if equalities is not None and frozenset(equalities) not in COVERED:
        return _scan_limited_page(filters, equalities, before=before, after=after, page_size=page_size)
    newer = after is not None
    cursor = after if newer else before
    created = _cursor_position(cursor) if cursor is not None else None
    rows = []
    for one in _each_name(equalities):
        runs = _matching(filters, one).select_related("launched_by")
        if cursor is not None and created is None:
            runs = runs if newer else runs.none()
        elif cursor is not None:
            runs = _newer_than(runs, created, cursor) if newer else _older_than(runs, created, cursor)
        # After a cursor: walk up from it, then show the page newest first.
        rows += runs.order_by(*(("created_at", "id") if newer else PAGE_ORDER))[: page_size + 1]
    rows.sort(key=lambda run: (run.created_at, run.id), reverse=not newer)  # the walks of several names, merged
    more = len(rows) > page_size
    rows = rows[:page_size]
    if newer:
        rows.reverse()
    with_results(rows)
    has_newer, has_older = (more, True) if newer else (before is not None, more)
    return RunPage(
        runs=rows,
        newer_cursor=rows[0].id if rows and has_newer else None,
        older_cursor=rows[-1].id if rows and has_older else None,
        filters=filters,
    )


def _each_name(equalities: dict | None) -> list[dict | None]:
    """``equalities`` once per task or queue name it stands for (a covered set has one of them at most)."""
    if equalities is None:
        return [None]
    names = [name for name in ("task_name", "queue") if isinstance(equalities.get(name), tuple)]
    choices = [[(name, value) for value in equalities[name]] for name in names]
    return [equalities | dict(chosen) for chosen in itertools.product(*choices)]


def _matches(row_values, rest: dict) -> bool:
    for name, value in zip(rest, row_values, strict=True):
        wanted = rest[name]
        if not (value in wanted if isinstance(wanted, tuple) else value == wanted):
            return False
    return True


def _keyed_candidates(filters: RunFilters, equalities: dict) -> list[tuple]:
    """(id, created_at) of the runs read by key (text search, task ids) that match every other filter.

    One query by key (at most ``TASKCENTER_HISTORY_SCAN_LIMIT`` ids, or a few task ids),
    reading only the columns of the other filters, which are checked here: the database
    never chooses another index to walk, whatever the statistics say.
    """
    key = next(name for name in KEYED if name in equalities)
    rest = {name: value for name, value in equalities.items() if name != key}
    values = equalities[key] if isinstance(equalities[key], tuple) else (equalities[key],)
    rows = Run.objects.filter(**{f"{key}__in": list(values)}).order_by().values_list("id", "created_at", *rest)
    found = []
    for row in rows:
        if filters.created_from and row[1] < filters.created_from:
            continue
        if filters.created_to and row[1] >= filters.created_to:
            continue
        if _matches(row[2:], rest):
            found.append((row[0], row[1]))
    return found


def _keyed_page(filters: RunFilters, equalities: dict, *, before, after, page_size: int) -> RunPage:
    """A page cut from the runs read by key, in page order, with the same cursors as any page."""
    found = _keyed_candidates(filters, equalities)
    newer = after is not None
    cursor = after if newer else before
    if cursor is not None:
        created = _cursor_position(cursor)
        if created is None:
            found = found if newer else []
        elif newer:
            found = [(pk, at) for pk, at in found if (at, pk) > (created, cursor)]
        else:
            found = [(pk, at) for pk, at in found if (at, pk) < (created, cursor)]
    found.sort(key=lambda row: (row[1], row[0]), reverse=not newer)
    more = len(found) > page_size
    ids = [pk for pk, _ in found[:page_size]]
    by_id = Run.objects.select_related("launched_by").in_bulk(ids) if ids else {}
    rows = [by_id[pk] for pk in ids if pk in by_id]
    if newer:
        rows.reverse()
    with_results(rows)
    has_newer, has_older = (more, True) if newer else (before is not None, more)
    capped = "id" in equalities and len(equalities["id"]) >= settings.TASKCENTER_HISTORY_SCAN_LIMIT
    return RunPage(
        runs=rows,
        newer_cursor=rows[0].id if rows and has_newer else None,
        older_cursor=rows[-1].id if rows and has_older else None,
        filters=filters,
        search_capped=capped,
        scanned=len(equalities["id"]) if capped else 0,
    )


def _newest_matching_ids(filters: RunFilters, equalities: dict | None, *, limit: int) -> list[int]:
    """Ids of the newest ``limit`` runs matching the filters, each way bounded (see ``runs_page``)."""
    if equalities is None:
        return []
    if _keyed(equalities):
        found = sorted(_keyed_candidates(filters, equalities), key=lambda row: (row[1], row[0]), reverse=True)
        return [pk for pk, _ in found[:limit]]
    if frozenset(equalities) not in COVERED:
        return _walk(filters, equalities, cursor=None, newer=False, want=limit)[0]
    found = []
    for one in _each_name(equalities):
        found += _matching(filters, one).values_list("created_at", "id")[:limit]
    return [pk for _, pk in sorted(found, reverse=True)[:limit]]


def run_runtime(*, started, finished) -> timedelta | None:
    """Run time from start to finish, None when either is unknown."""
    return finished - started if started is not None and finished is not None else None


def _runtime_page(filters: RunFilters, equalities: dict | None, *, page_size: int) -> RunPage:
    """The longest-running of the newest ``TASKCENTER_HISTORY_SCAN_LIMIT`` runs matching ``filters``.

    Bounded like any page: the newest matching runs are found as a page finds them, their
    times read by key (runs, then their results), and sorted here. One page, no cursors.
    """
    limit = settings.TASKCENTER_HISTORY_SCAN_LIMIT
    ids = _newest_matching_ids(filters, equalities, limit=limit)
    times = {
        pk: (task_id, state, started, finished)
        for pk, task_id, state, started, finished in Run.objects.filter(id__in=ids)
        .order_by()
        .values_list("id", "task_result_id", "recorded_state", "recorded_started_at", "recorded_finished_at")
    }
    results = {
        task_id: (status, started, done)
        for task_id, status, started, done in TaskResult.objects.filter(
            task_id__in=[task_id for task_id, *_ in times.values()]
        )
        .order_by()
        .values_list("task_id", "status", "date_started", "date_done")
    }
    runtimes = []
    for pk, (task_id, state, started, finished) in times.items():
        status, result_started, done = results.get(task_id, (None, None, None))
        started = result_started or started  # as Run.started_at and Run.finished_at read them
        if status is not None and status == state and done is not None and state in READY_STATES:
            finished = done
        runtime = run_runtime(started=started, finished=finished if state in READY_STATES else None)
        if runtime is not None:
            runtimes.append((runtime, pk))
    runtimes.sort(reverse=True)
    top = [pk for _, pk in runtimes[:page_size]]
    by_id = Run.objects.select_related("launched_by").in_bulk(top) if top else {}
    rows = with_results([by_id[pk] for pk in top if pk in by_id])
    return RunPage(runs=rows, filters=filters, sorted_among=len(ids))


def _scan_limited_page(filters: RunFilters, equalities: dict, *, before, after, page_size: int) -> RunPage:
    """A page for filters no index covers together, walking at most ``TASKCENTER_HISTORY_SCAN_LIMIT`` runs.

    The walk follows the index of the first covered filter in ``DRIVING_ORDER`` (with the
    time range and the cursor, as any page), reading only the columns of the other
    filters, which are checked here; it reads in growing chunks, so that a page whose
    filters often match together reads little more than a page. Then the page's runs are
    read by id. When the limit stops the walk before the page is full, the cursor in the
    walk's direction is the last run looked at, whether it matched or not.
    """
    newer = after is not None
    walked = _walk(filters, equalities, cursor=after if newer else before, newer=newer, want=page_size + 1)
    matched, scanned, last, exhausted, driving = walked
    limit = settings.TASKCENTER_HISTORY_SCAN_LIMIT
    more = len(matched) > page_size
    limited = not more and not exhausted and scanned >= limit
    ids = matched[:page_size]
    by_id = Run.objects.select_related("launched_by").in_bulk(ids) if ids else {}
    rows = [by_id[pk] for pk in ids if pk in by_id]
    with_results(rows)
    if newer:
        rows.reverse()
    continue_from = last[0] if limited and last is not None else None
    if newer:
        newer_cursor = continue_from if limited else (rows[0].id if rows and more else None)
        older_cursor = rows[-1].id if rows else None
    else:
        older_cursor = continue_from if limited else (rows[-1].id if rows and more else None)
        newer_cursor = rows[0].id if rows and before is not None else None
    return RunPage(
        runs=rows,
        newer_cursor=newer_cursor,
        older_cursor=older_cursor,
        filters=filters,
        scan_limited=limited,
        scanned=scanned,
        scan_index=_describe(driving, filters),
        scan_direction="after" if newer else "before",
    )


def _walk(filters: RunFilters, equalities: dict, *, cursor: int | None, newer: bool, want: int):
    """Walk the driving filter's index from ``cursor`` and keep the ids of runs matching the others.

    Stops at ``want`` matches, at the end of the index, or after
    ``TASKCENTER_HISTORY_SCAN_LIMIT`` runs, reading chunks of 4x, 16x, ... ``want`` rows.
    Returns (matched ids, runs looked at, the last row looked at, whether the index
    ended, the driving filter).
    """
    limit = settings.TASKCENTER_HISTORY_SCAN_LIMIT
    single = {name for name, value in equalities.items() if not isinstance(value, tuple)}
    driving = next(d for d in DRIVING_ORDER if d <= single)  # a walk of one index, in page order
    rest = {name: value for name, value in equalities.items() if name not in driving}
    base = _in_time_range(Run.objects.filter(_where({name: equalities[name] for name in driving})), filters)
    walk = base
    if cursor is not None:
        created = _cursor_position(cursor)
        if created is None:
            walk = base if newer else base.none()
        else:
            walk = _newer_than(base, created, cursor) if newer else _older_than(base, created, cursor)
    order = ("created_at", "id") if newer else PAGE_ORDER
    columns = ["id", "created_at", *rest]
    matched, scanned, last, exhausted = [], 0, None, False
    chunk = 4 * want
    while scanned < limit and len(matched) < want:
        step = walk if last is None else (_newer_than if newer else _older_than)(base, last[1], last[0])
        take = min(chunk, limit - scanned)
        rows = list(step.order_by(*order).values_list(*columns)[:take])
        for row in rows:
            scanned += 1
            last = row
            if _matches(row[2:], rest):
                matched.append(row[0])
                if len(matched) >= want:
                    break
        if len(rows) < take:
            exhausted = True
            break
        chunk *= 4
    return matched, scanned, last, exhausted, driving


def _describe(driving: frozenset, filters: RunFilters) -> str:
    """The driving filter in words, for the page's "searched N runs of ..." notice."""
    words = [
        ("task_name", "task", filters.task_name),
        ("recorded_state", "state", filters.state),
        ("queue", "queue", filters.queue),
        ("worker", "worker", filters.worker),
        ("periodic_task_name", "schedule", filters.periodic_task_name),
        ("launched_by_id", "launched by", filters.launched_by),
    ]
    return ", ".join(f"{label} {value}" for name, label, value in words if name in driving)


def runs_count(filters: RunFilters, *, limit: int) -> tuple[int, bool]:
    """How many runs match ``filters``, counting at most ``limit``: ``(count, capped)``.

    The count reads at most ``limit + 1`` rows, so it stays cheap with millions of runs.
    Filters that share no index look at most at ``TASKCENTER_HISTORY_SCAN_LIMIT`` runs of
    one index, as a page does: when that stops the count, it is capped too (at least so many).
    """
    equalities = _equalities(filters)
    if equalities is not None and _keyed(equalities):
        found = len(_keyed_candidates(filters, equalities))
        capped = len(equalities.get("id", ())) >= settings.TASKCENTER_HISTORY_SCAN_LIMIT
        return min(found, limit), found > limit or capped
    if equalities is not None and frozenset(equalities) in COVERED and len(_each_name(equalities)) > 1:
        names = _each_name(equalities)  # one bounded count per name, on its index
        counted = sum(_matching(filters, one).order_by().values("pk")[: limit + 1].count() for one in names)
        return min(counted, limit), counted > limit
    if equalities is not None and frozenset(equalities) not in COVERED:
        matched, scanned, _, exhausted, _ = _walk(filters, equalities, cursor=None, newer=False, want=limit + 1)
        stopped = not exhausted and scanned >= settings.TASKCENTER_HISTORY_SCAN_LIMIT
        return min(len(matched), limit), len(matched) > limit or stopped
    counted = runs_filtered(filters).order_by().values("pk")[: limit + 1].count()
    return min(counted, limit), counted > limit


def run_by_task_id(task_id: str) -> Run | None:
    """The run with this Celery task id, with its result, or None.

    Not ``select_related("task_result")``: a filter on the link column makes Django
    turn the LEFT JOIN into an INNER JOIN, which would hide runs with no result yet.
    """
    run = Run.objects.select_related("launched_by").filter(task_result_id=task_id).first()
    if run is not None:
        # Cache the result (or its absence) without touching the task id column.
        Run.task_result.field.set_cached_value(run, TaskResult.objects.filter(task_id=task_id).first())
    return run


def runs_by_task_ids(task_ids: list[str]) -> list[Run]:
    """The runs with these task ids, with their results (two queries, whatever the count)."""
    runs = list(Run.objects.filter(task_result_id__in=task_ids))
    results = {r.task_id: r for r in TaskResult.objects.filter(task_id__in=task_ids)}
    for run in runs:
        Run.task_result.field.set_cached_value(run, results.get(run.task_result_id))
    return runs


def runs_for_retry(*, task_ids: list[str], filters: RunFilters, limit: int) -> list[Run]:
    """Finished runs to re-run: the ``task_ids`` given, or else those matching ``filters``."""
    runs = runs_filtered(filters)
    if task_ids:
        runs = runs_filtered(RunFilters()).filter(task_result_id__in=task_ids)
    return with_results(list(runs.filter(state_in(READY_STATES))[:limit]))


@dataclass
class Progress:
    total: int
    done: int
    failed: int
    running: int

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 0


def _progress(runs) -> Progress:
    states = [run.state for run in runs]
    return Progress(
        total=len(states),
        done=states.count("SUCCESS"),
        failed=sum(state in ("FAILURE", REVOKED) for state in states),
        running=states.count("STARTED"),
    )


def batch_progress(batch: Batch) -> dict:
    """Counts of a batch's runs by outcome, and the runs themselves."""
    runs = list(batch.runs.select_related("task_result").order_by("id"))
    return {"batch": batch, "runs": runs, "progress": _progress(runs)}


def workflow_graph(workflow: Workflow) -> dict:
    """The workflow's stages with each node's run (and state), for drawing the graph."""
    runs = {run.task_id: run for run in workflow.runs.select_related("task_result")}
    stages = [[runs.get(task_id) or task_id for task_id in stage] for stage in workflow.stages]
    return {"workflow": workflow, "stages": stages, "progress": _progress(runs.values())}


def run_lineage(run: Run, *, limit: int = 50) -> list[str]:
    """Task ids of the runs ``run`` repeats, from the first one to ``run`` itself (at most ``limit``)."""
    task_ids, current = [run.task_id], run
    while current.retry_of_id and len(task_ids) < limit:
        current = Run.objects.only("task_result_id", "retry_of_id").filter(pk=current.retry_of_id).first()
        if current is None:
            break
        task_ids.append(current.task_id)
    return list(reversed(task_ids))
