"""``tc deadletters``: list dead letters, replay them (same or edited arguments) or discard them.

One letter or several are named by id; every unresolved letter matching a filter is
chosen with filter options, and then ``--yes`` must confirm: without it the command only
says how many match and does nothing (like the page's confirmation step).
"""

from django.conf import settings
from django.utils.translation import gettext_lazy as _

from taskcenter import permissions
from taskcenter.cli.base import (
    Cli,
    add_common,
    add_parser,
    iso,
    json_option,
    moment_option,
    refused,
    service_errors,
    short_time,
    usage_error,
)
from taskcenter.cli.tasks import launch_what
from taskcenter.models import DeadLetter, RunSource
from taskcenter.selectors.deadletters import (
    DeadLetterFilters,
    deadletter_by_id,
    deadletters_for_action,
    deadletters_page,
)
from taskcenter.services import deadletters as service

#: Most letters ``list`` prints at once (page on with ``--before``).
MAX_LIST = 1000
STATUSES = ("open", "replayed", "discarded", "all")


def register(groups) -> None:
    group = add_parser(
        groups,
        "deadletters",
        help=_("List, replay and discard dead letters (runs that will not run again by themselves)."),
        examples="  manage.py tc deadletters list --task examples.fail\n"
        '  manage.py tc deadletters replay 42 --kwargs \'{"message": "fixed"}\'\n'
        "  manage.py tc deadletters discard --reason expired            # shows the count, does nothing\n"
        "  manage.py tc deadletters discard --reason expired --yes      # discards them",
    )
    actions = group.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = add_parser(
        actions,
        "list",
        help=_("List dead letters, newest first (unresolved ones unless --status says otherwise)."),
        examples="  manage.py tc deadletters list\n"
        "  manage.py tc deadletters list --status all --since 2026-12-01 --json",
    )
    _add_filters(listing)
    listing.add_argument("--status", choices=STATUSES, default="open", help=_("Resolution (default: open)."))
    listing.add_argument(
        "--limit", type=int, default=50, help=_("How many (1..%(most)s, default 50).") % {"most": MAX_LIST}
    )
    listing.add_argument("--before", type=int, help=_("Only letters older than this cursor (next_before of a page)."))
    add_common(listing)
    listing.set_defaults(handler=deadletters_list)

    replay = add_parser(
        actions,
        "replay",
        help=_("Launch dead letters' tasks again (each linked to its original run), by id or by filter."),
        examples="  manage.py tc deadletters replay 42\n"
        "  manage.py tc deadletters replay 42 --args '[1, 2]'     # edited arguments (one letter)\n"
        "  manage.py tc deadletters replay 42 43 44 --user alice\n"
        "  manage.py tc deadletters replay --task examples.flaky --since 2026-12-01 --yes",
    )
    replay.add_argument(
        "--args", dest="task_args", help=_("Replay with these positional arguments (JSON list; one letter only).")
    )
    replay.add_argument(
        "--kwargs", dest="task_kwargs", help=_("Replay with these keyword arguments (JSON object; one letter only).")
    )
    discard = add_parser(
        actions,
        "discard",
        help=_("Mark dead letters discarded (nothing is run), by id or by filter."),
        examples="  manage.py tc deadletters discard 42 43\n  manage.py tc deadletters discard --reason expired --yes",
    )
    for parser, handler in ((replay, deadletters_replay), (discard, deadletters_discard)):
        parser.add_argument("ids", metavar="ID", type=int, nargs="*", help=_("Dead letter ids (or filter options)."))
        _add_filters(parser)
        parser.add_argument("--yes", action="store_true", help=_("Act on every unresolved letter matching the filter."))
        add_common(parser)
        parser.set_defaults(handler=handler)


def _add_filters(parser) -> None:
    parser.add_argument("--task", default="", help=_("Only letters of this task."))
    parser.add_argument("--reason", choices=DeadLetter.Reason.values, help=_("Only letters dead for this reason."))
    parser.add_argument("--exception", default="", help=_("Only letters whose exception has this type."))
    parser.add_argument("--since", help=_("Only letters created at or after this ISO date (and time)."))
    parser.add_argument("--until", help=_("Only letters created before this ISO date (and time)."))


def _filters(cli: Cli, status: str = "open") -> DeadLetterFilters:
    options = cli.options
    return DeadLetterFilters(
        task_name=options["task"],
        reason=options["reason"] or "",
        exception_type=options["exception"],
        status="" if status == "all" else status,
        created_from=moment_option(options["since"], "--since"),
        created_to=moment_option(options["until"], "--until"),
    )


def _has_filter(cli: Cli) -> bool:
    return any(cli.options[name] for name in ("task", "reason", "exception", "since", "until"))


def letter_document(letter: DeadLetter) -> dict:
    return {
        "id": letter.pk,
        "task_id": letter.task_id,
        "task": letter.task_name,
        "queue": letter.queue or None,
        "reason": letter.reason,
        "exception_type": letter.exception_type or None,
        "message": letter.message or None,
        "args": letter.args,
        "kwargs": letter.kwargs,
        "worker": letter.worker or None,
        "created_at": iso(letter.created_at),
        "status": letter.resolution or "open",
        "replayed_as": letter.replayed_as or None,
        "resolved_at": iso(letter.resolved_at),
    }


# --- handlers ----------------------------------------------------------------------------


def deadletters_list(cli: Cli) -> None:
    cli.require_view()
    limit = cli.options["limit"]
    if not 1 <= limit <= MAX_LIST:
        raise usage_error(_("--limit must be between 1 and %(most)s.") % {"most": MAX_LIST})
    page = deadletters_page(_filters(cli, cli.options["status"]), before=cli.options["before"], page_size=limit)
    if cli.as_json:
        cli.json({"dead_letters": [letter_document(x) for x in page.letters], "next_before": page.older_cursor})
        return
    if not page.letters:
        cli.line(_("No dead letters."))
        return
    cli.table(
        (_("ID"), _("TASK"), _("REASON"), _("EXCEPTION"), _("CREATED"), _("STATUS"), _("TASK ID")),
        [(x.pk, x.task_name, x.reason, x.exception_type, short_time(x.created_at), x.resolution or "open", x.task_id)
         for x in page.letters],
    )  # fmt: skip
    if page.older_cursor is not None:
        cli.line(_("More: %(option)s") % {"option": f"--before {page.older_cursor}"})


def deadletters_replay(cli: Cli) -> None:
    _act(cli, "replay")


def deadletters_discard(cli: Cli) -> None:
    _act(cli, "discard")


def _act(cli: Cli, action: str) -> None:
    options = cli.options
    ids = options["ids"]
    edited = action == "replay" and (options["task_args"] is not None or options["task_kwargs"] is not None)
    if ids and _has_filter(cli):
        raise usage_error(_("Give dead letter ids or filter options, not both."))
    if edited and len(ids) != 1:
        raise usage_error(_("--args and --kwargs replay one dead letter: give exactly one id."))
    what = {"replay": _("replay dead letters (needs 'manage dead letters')"),
            "discard": _("discard dead letters (needs 'manage dead letters')")}[action]  # fmt: skip
    cli.require(permissions.can_manage_deadletters, what)
    if edited or len(ids) == 1:
        _act_on_one(cli, action, _letter(ids[0]))
        return
    limit = settings.TASKCENTER_BULK_RETRY_LIMIT
    if ids:
        for pk in ids:
            _letter(pk)  # an unknown id is a mistake in the command line: nothing is done
    letters = deadletters_for_action(ids=ids, filters=None if ids else _filters(cli), limit=limit + 1)
    if len(letters) > limit:
        raise refused(
            _("More than %(limit)s dead letters match; narrow the filter. Nothing was done.") % {"limit": limit}
        )
    if not ids and not options["yes"]:
        _preview(cli, action, letters)
        return
    if action == "discard":
        result = service.deadletters_discard_bulk(letters=letters, actor=cli.actor)
        forbidden = []
    else:
        allowed = [x for x in letters if cli.allows(lambda user, x=x: permissions.can_launch(user, x.task_name))]
        forbidden = [
            (x, _("You may not launch %(task)s.") % {"task": x.task_name}) for x in letters if x not in allowed
        ]
        result = service.deadletters_replay_bulk(letters=allowed, actor=cli.actor, source=RunSource.CLI)
    refused_rows = [*forbidden, *result.refused]
    if cli.as_json:
        cli.json(
            {
                "action": action,
                "matched": len(letters),
                "done": [letter_document(_fresh(x)) for x in result.done],
                "refused": [{"id": x.pk, "reason": reason} for x, reason in refused_rows],
            }
        )
    else:
        said = (
            _("Discarded %(done)s dead letter(s); %(refused)s refused.")
            if action == "discard"
            else _("Replayed %(done)s dead letter(s); %(refused)s refused.")
        )
        cli.line(said % {"done": len(result.done), "refused": len(refused_rows)})
        for letter, reason in refused_rows[:20]:
            cli.line(f"  {letter.pk} ({letter.task_name}): {reason}")
    if refused_rows:
        raise refused(_("%(count)s dead letter(s) refused.") % {"count": len(refused_rows)})


def _act_on_one(cli: Cli, action: str, letter: DeadLetter) -> None:
    if action == "discard":
        with service_errors():
            service.deadletter_discard(letter=letter, actor=cli.actor)
        document = letter_document(_fresh(letter))
        text = _("Discarded dead letter %(id)s.") % {"id": letter.pk}
    else:
        cli.require(lambda user: permissions.can_launch(user, letter.task_name), launch_what(letter.task_name))
        args = json_option(cli.options["task_args"], "--args", list, "'[1, 2]'")
        kwargs = json_option(cli.options["task_kwargs"], "--kwargs", dict, "'{\"x\": 1}'")
        with service_errors(broker_consequence=_("the dead letter was not replayed")):
            run = service.deadletter_replay(letter=letter, actor=cli.actor, args=args, kwargs=kwargs,
                                            source=RunSource.CLI)  # fmt: skip
        document = letter_document(_fresh(letter))
        text = _("Replayed dead letter %(id)s as %(task_id)s.") % {"id": letter.pk, "task_id": run.task_id}
    if cli.as_json:
        cli.json({"action": action, "matched": 1, "done": [document], "refused": []})
    else:
        cli.line(text)


def _preview(cli: Cli, action: str, letters: list) -> None:
    if cli.as_json:
        cli.json({"action": action, "matched": len(letters), "dry_run": True, "ids": [x.pk for x in letters]})
        return
    said = (
        _("%(count)s unresolved dead letter(s) match. Nothing was done: add --yes to discard them.")
        if action == "discard"
        else _("%(count)s unresolved dead letter(s) match. Nothing was done: add --yes to replay them.")
    )
    cli.line(said % {"count": len(letters)})
    for letter in letters[:20]:
        cli.line(f"  {letter.pk}  {letter.task_name}  {letter.reason}  {letter.exception_type}")
    if len(letters) > 20:
        cli.line("  " + _("... and %(count)s more") % {"count": len(letters) - 20})


def _letter(pk: int) -> DeadLetter:
    letter = deadletter_by_id(pk)
    if letter is None:
        raise usage_error(_("No dead letter %(id)s.") % {"id": pk})
    return letter


def _fresh(letter: DeadLetter) -> DeadLetter:
    return deadletter_by_id(letter.pk) or letter
