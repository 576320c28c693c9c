"""Every ``manage.py tc`` subcommand has --help with examples, and the common --json and --user options."""

import argparse

from taskcenter.management.commands.tc import Command


def leaves(parser: argparse.ArgumentParser, path=()):
    """(path, parser) of every subcommand that runs something."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(leaves(sub, (*path, name)))
    return found or [(path, parser)]


def test_every_subcommand_has_examples_and_the_common_options():
    parser = Command().create_parser("manage.py", "tc")
    found = {" ".join(path): sub for path, sub in leaves(parser)}
    expected = {
        "status",
        *(f"task {a}" for a in ("create", "info", "list", "cancel", "terminate", "retry", "wait")),
        *(f"schedule {a}" for a in ("add", "list", "show", "enable", "disable", "run", "remove")),
        "scheduled list", "scheduled run-now",
        "monitor health", "monitor progress",
        "recovery checkpoints", "recovery resume", "recovery apply",
        "deadletters list", "deadletters replay", "deadletters discard",
        "token create", "token list", "token revoke",
    }  # fmt: skip
    assert set(found) == expected
    for path, sub in found.items():
        options = {option for action in sub._actions for option in action.option_strings}
        assert {"--json", "--user", "--help"} <= options, path
        assert "examples:\n  manage.py tc " + path.split()[0] in sub.format_help(), path
    assert "Exit codes: 0 done, 1 refused or failed, 2 wrong command line" in parser.format_help()
