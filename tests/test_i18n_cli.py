"""``manage.py tc``'s output in Simplified Chinese (issue 13, part 1): its refusals, reports, table
headers and help under zh-hans, unchanged in English; tables stay aligned with Chinese text.

The audit (``unmarked_cli_text``) walks taskcenter/cli/ and reports a literal with words passed as:
the message of ``usage_error``, ``refused`` or ``CommandError``; a line of ``cli.line``; what a
refused user may not do (``cli.require``'s second argument); ``help=``/``description=`` of an
option or subcommand; a cell of a ``cli.table`` header; a ``broker_consequence=``. A subcommand's
name, its ``examples=`` (command lines) and the JSON output's keys and values are not text.
"""

import ast
import io
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import translation

from taskcenter.cli.base import display_width
from tests.i18n_audit import CJK, literal_text

pytestmark = pytest.mark.usefixtures("compiled_catalogue")

ROOT = Path(__file__).resolve().parent.parent
#: Calls whose positional arguments an operator reads.
SHOWN_CALLS = {"usage_error", "refused", "CommandError", "line", "require"}
SHOWN_KEYWORDS = {"help", "description", "broker_consequence"}


def unmarked_cli_text(source: str) -> list[tuple[int, str]]:
    """(line, text) of each literal the command line shows without gettext (see the module docstring)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        candidates = [keyword.value for keyword in node.keywords if keyword.arg in SHOWN_KEYWORDS]
        if name in SHOWN_CALLS:
            candidates += node.args
        if name == "table" and node.args and isinstance(node.args[0], ast.Tuple):
            candidates += node.args[0].elts
        found += [(candidate.lineno, text) for candidate in candidates if (text := literal_text(candidate)) is not None]
    return found


def test_the_cli_audit_finds_unmarked_output_and_passes_marked_output():
    source = (
        "def f(cli, name):\n"
        "    cli.line(f'Schedule {name!r} removed.')\n"
        "    cli.line(_('Schedule %(name)s removed.') % {'name': name})\n"
        "    cli.table(('NAME', _('TASK')), [])\n"
        "    cli.require(check, f'launch {name!r}')\n"
        "    raise usage_error('Give ids or filters.' if name else _('Fine.'))\n"
        "    with service_errors(broker_consequence='it was not sent'):\n"
        "        pass\n"
        "    parser.add_argument('--limit', help=f'How many (1..{name}).')\n"
        "    add_parser(actions, 'list', help=_('List.'), examples='  manage.py tc task list')\n"
    )
    assert sorted(text for _, text in unmarked_cli_text(source)) == [
        "Give ids or filters.",
        "How many (1..).",
        "NAME",
        "Schedule  removed.",
        "it was not sent",
        "launch ",
    ]


def test_every_command_line_text_passes_through_gettext():
    unmarked = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted((ROOT / "taskcenter" / "cli").glob("*.py"))
        for line, text in unmarked_cli_text(path.read_text(encoding="utf-8"))
    ]
    assert unmarked == []


def run_tc(language: str, *args) -> tuple[str, str]:
    """``manage.py tc ARGS`` in ``language``: (stdout, the CommandError's message or "")."""
    out = io.StringIO()
    with translation.override(language):
        try:
            call_command("tc", *args, stdout=out, stderr=io.StringIO())
        except CommandError as error:
            return out.getvalue(), str(error)
    return out.getvalue(), ""


@pytest.mark.django_db
def test_an_unknown_run_is_refused_in_chinese_and_in_english():
    _, chinese = run_tc("zh-hans", "task", "info", "no-such-run")
    _, english = run_tc("en", "task", "info", "no-such-run")
    assert chinese == "没有任务 ID 为“no-such-run”的运行。"
    assert english == "No run with task id 'no-such-run'."


@pytest.mark.django_db
def test_the_schedule_list_and_a_removal_are_reported_in_chinese():
    from taskcenter.services.schedules import ScheduleSpec, schedule_save

    spec = ScheduleSpec(name="夜间同步", task="examples.add", kind="interval", every=5, period="minutes",
                        kwargs={"x": 1, "y": 2})  # fmt: skip
    schedule_save(spec=spec, actor=None)
    listing, _ = run_tc("zh-hans", "schedule", "list")
    header, row = listing.splitlines()[:2]
    assert header.split() == ["名称", "任务", "计划", "已启用", "上次运行", "下次运行"]
    assert "夜间同步" in row and "是" in row
    # Columns line up on a terminal: the task column starts at the same screen column in both lines.
    assert display_width(header[: header.index("任务")]) == display_width(row[: row.index("examples.add")])
    removed, _ = run_tc("zh-hans", "schedule", "remove", "夜间同步")
    assert removed.strip() == "定时计划“夜间同步”已删除。"
    english, _ = run_tc("en", "schedule", "list")
    assert english.strip() == "No schedules."


@pytest.mark.django_db
def test_a_bad_json_option_and_a_bad_date_are_explained_in_chinese():
    _, bad_json = run_tc("zh-hans", "task", "create", "examples.add", "--args", "{nope")
    assert bad_json.startswith("--args 不是有效的 JSON"), bad_json
    _, wrong_kind = run_tc("zh-hans", "task", "create", "examples.add", "--args", '{"x": 1}')
    assert wrong_kind == "--args 必须是 JSON 列表，例如 '[1, 2]'。"
    _, bad_date = run_tc("zh-hans", "task", "list", "--since", "yesterday")
    assert bad_date == "--since “yesterday”不是 ISO 日期或日期时间，例如 2026-12-24T18:00。"


@pytest.mark.django_db
def test_a_user_without_the_right_is_refused_in_chinese(django_user_model):
    django_user_model.objects.create_user("viewer", password="x")
    _, refusal = run_tc("zh-hans", "task", "list", "--user", "viewer")
    assert refusal == "你无权查看 taskcenter（需要职员身份和“查看运行”权限）（以用户“viewer”身份执行）；未做任何操作。"


def test_a_table_pads_chinese_cells_by_their_width_on_screen():
    from django.core.management.base import OutputWrapper

    from taskcenter.cli.base import Cli

    written = io.StringIO()
    cli = Cli.__new__(Cli)  # only its output is used
    cli.stdout = OutputWrapper(written)
    cli.table(("名称", "TASK"), [("夜间同步", "a"), ("ab", "b")])
    lines = written.getvalue().splitlines()
    last_column = {display_width(line) - display_width(line.split()[-1]) for line in lines}
    assert len(last_column) == 1, lines
    assert display_width("夜间a") == 5


def test_every_subcommand_help_is_in_chinese():
    from taskcenter.management.commands.tc import Command

    with translation.override("zh-hans"):
        parser = Command().create_parser("manage.py", "tc")
        groups = parser._subparsers._group_actions[0].choices
        english_only = []
        for group_name, group in groups.items():
            actions = group._subparsers._group_actions[0].choices if group._subparsers else {group_name: group}
            for name, action in actions.items():
                description = str(action.description or "")
                if not CJK.search(description):
                    english_only.append(f"{group_name} {name}: {description!r}")
    assert english_only == []
