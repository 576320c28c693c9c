"""The refusals and reports of the launch, schedule, dead-letter, recovery, notification and
scheduled-run services, the alert texts and ``manage.py tc``'s help, in Simplified Chinese
under zh-hans and unchanged in English (issue 13, part 1).

The audit (``unmarked_service_text``) walks the service modules marked so far and reports a
literal with words passed as the message of a raised error (``raise X("...")``), added to a
``FieldErrors`` (``errors.add(field, "...")``), or listed as a field's messages in a dict
(``{"field": ["..."]}``, the ``errors`` of ``InvalidInput`` and its kind). Log lines are not
user-facing and are not looked at.
"""

import ast
import re
from pathlib import Path

import pytest
from django.utils import translation

from tests.i18n_audit import CJK, literal_text

pytestmark = pytest.mark.usefixtures("compiled_catalogue")

ROOT = Path(__file__).resolve().parent.parent
AUDITED_SERVICES = [
    "taskcenter/services/launch.py",
    "taskcenter/services/batches.py",
    "taskcenter/services/workflows.py",
    "taskcenter/services/schedules.py",
    "taskcenter/services/deadletters.py",
    "taskcenter/services/recovery.py",
    "taskcenter/services/notifications.py",
    "taskcenter/services/saved_filters.py",
    "taskcenter/services/retry_policy.py",
    "taskcenter/services/scheduled.py",
    "taskcenter/services/api_tokens.py",
    "taskcenter/safe_input.py",
]
#: Raised for a caller's mistake, never shown to an operator.
PROGRAMMING_ERRORS = {"ValueError", "TypeError", "NotImplementedError", "AssertionError"}


def unmarked_service_text(source: str) -> list[tuple[int, str]]:
    """(line, text) of each literal a service shows without gettext (see the module docstring)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        candidates = []
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            if getattr(node.exc.func, "id", "") not in PROGRAMMING_ERRORS:
                candidates += node.exc.args[:1]
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "add":
            if isinstance(node.func.value, ast.Name) and node.func.value.id == "errors":
                candidates += node.args[1:2]
        if isinstance(node, ast.Dict):
            for value in node.values:
                if isinstance(value, ast.List):
                    candidates += value.elts
        for candidate in candidates:
            text = literal_text(candidate)
            if text is not None:
                found.append((candidate.lineno, text))
    return found


def test_the_service_audit_finds_unmarked_refusals_and_passes_marked_ones():
    source = (
        "from django.utils.translation import gettext\n"
        "def f(errors, name):\n"
        "    errors.add('name', 'Give a name.')\n"
        "    errors.add('name', gettext('Give a name.'))\n"
        "    raise InvalidInput(errors={'name': [f'No task {name}.'], 'x': [gettext('Fine.')]})\n"
        "def g(name):\n"
        "    raise NotLaunchable(f'No launchable task is named {name!r}.')\n"
        "def h():\n"
        "    raise Refused(gettext('Marked.'))\n"
        "    raise ValueError('unknown action')\n"
    )
    assert sorted(text for _, text in unmarked_service_text(source)) == [
        "Give a name.",
        "No launchable task is named .",
        "No task .",
    ]


def test_the_translated_services_pass_every_refusal_through_gettext():
    unmarked = []
    for relative in AUDITED_SERVICES:
        for line, text in unmarked_service_text((ROOT / relative).read_text(encoding="utf-8")):
            unmarked.append(f"{relative}:{line}: {text!r}")
    assert unmarked == []


def _refusal(language: str, call) -> str:
    from taskcenter.services.errors import ServiceError

    with translation.override(language), pytest.raises(ServiceError) as refusal:
        call()
    return str(refusal.value)


@pytest.mark.django_db
def test_a_refused_launch_is_in_chinese_under_zh_hans_and_unchanged_in_english():
    from taskcenter.services.launch import launch_prepare

    def unknown():
        launch_prepare(task_name="no.such.task")

    def bad_countdown():
        launch_prepare(task_name="examples.add", args=[1, 2], countdown=-1)

    assert _refusal("en", unknown) == "No launchable task is named 'no.such.task'."
    assert _refusal("zh-hans", unknown) == "没有名为 'no.such.task' 的可启动任务。"
    assert "Countdown cannot be negative." in _refusal("en", bad_countdown)
    assert "倒计时不能为负数。" in _refusal("zh-hans", bad_countdown)


@pytest.mark.django_db
def test_a_refused_schedule_is_in_chinese_under_zh_hans():
    from taskcenter.services.schedules import ScheduleSpec, schedule_save

    def bad_cron():
        schedule_save(spec=ScheduleSpec(name="nightly", task="examples.add", kind="crontab", cron="0 2 *"), actor=None)

    assert "A crontab has five fields" in _refusal("en", bad_cron)
    chinese = _refusal("zh-hans", bad_cron)
    assert "crontab 有五个字段" in chinese and "A crontab" not in chinese


def test_a_bad_json_argument_is_explained_in_chinese():
    from taskcenter.safe_input import JSONInputError, parse_json

    for language, expected in (("en", "Not valid JSON"), ("zh-hans", "不是有效的 JSON")):
        with translation.override(language), pytest.raises(JSONInputError) as error:
            parse_json("[1, ")
        assert str(error.value).startswith(expected)


@pytest.mark.django_db
def test_a_notification_channel_refusal_is_in_chinese():
    from taskcenter.services.notifications import channel_save

    def nameless():
        channel_save(name=" ", kind="webhook", url="https://example.com/hook", actor=None)

    assert "Enter a name." in _refusal("en", nameless)
    assert "请输入名称。" in _refusal("zh-hans", nameless)


def test_the_alert_thresholds_are_described_in_chinese():
    from taskcenter.selectors.alerts import thresholds

    with translation.override("zh-hans"):
        described = {threshold.alert: str(threshold.meaning) for threshold in thresholds()}
    assert CJK.search(described["QueueBacklogHigh"]), described
    assert all(CJK.search(text) for text in described.values()), described


def test_the_command_line_help_is_in_chinese_under_zh_hans():
    from taskcenter.management.commands.tc import Command

    with translation.override("zh-hans"):
        parser = Command().create_parser("manage.py", "tc")
        task = parser._subparsers._group_actions[0].choices["task"]
        text = task._subparsers._group_actions[0].choices["create"].format_help()
    assert "立即（或稍后）启动一个任务目录中的任务" in text, text
    assert "Launch a catalogued task now" not in text


def unmarked_audit_messages(source: str) -> list[tuple[int, str]]:
    """(line, text) of each literal passed as ``message=`` (an audit entry, a dead letter, ...) without gettext."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "message" and (text := literal_text(keyword.value)) is not None:
                    found.append((keyword.value.lineno, text))
    return found


def test_the_message_audit_finds_unmarked_messages():
    source = (
        "audit_record(message=f'Terminated with {signal}.')\n"
        "audit_record(message=gettext('Terminated with %(signal)s.') % {'signal': signal})\n"
        "audit_record(message='Taken out.' if held else gettext('Revoked.'))\n"
        "audit_record(message=str(error))\n"
    )
    assert sorted(text for _, text in unmarked_audit_messages(source)) == ["Taken out.", "Terminated with ."]


def test_every_audit_entry_and_dead_letter_message_passes_through_gettext():
    """What the audit trail and the dead letters record reads in the language it was written in."""
    examples = ROOT / "taskcenter" / "examples"  # task code: its progress messages are the task author's
    unmarked = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for path in sorted((ROOT / "taskcenter").rglob("*.py"))
        if "migrations" not in path.parts and examples not in path.parents
        for line, text in unmarked_audit_messages(path.read_text(encoding="utf-8"))
    ]
    assert unmarked == []


def test_an_argument_type_error_is_described_in_chinese():
    import inspect

    from taskcenter.arguments import check_arguments

    def task(count: int, names: list[str], limits: dict[str, float] | None = None): ...

    signature = inspect.signature(task)
    hints = {"count": int, "names": list[str], "limits": dict[str, float] | None}
    with translation.override("zh-hans"):
        problems = dict(check_arguments(signature, hints, ["x", ["a", 2]], {"limits": {"a": "fast"}}))
    assert problems["count"] == "参数 'count' 必须是 整数（int），实际为 \"x\"。", problems
    assert "第 1 项必须是 字符串（str），实际为 2" in problems["names"], problems
    assert "JSON 对象（值：数字（float）） 或 null" in problems["limits"], problems
    with translation.override("en"):
        problems = dict(check_arguments(signature, hints, ["x", ["a", 2]], {}))
    assert problems["count"] == "Argument 'count' must be a whole number (int), got \"x\".", problems
    assert problems["names"].endswith("item 1 must be a string (str), got 2."), problems


def test_a_schedule_refused_at_send_time_is_explained_in_chinese():
    from types import SimpleNamespace

    from taskcenter.scheduler import send_refusal

    entry = SimpleNamespace(task="examples.add", args=[], kwargs={}, options={"queue": "nowhere"})
    with translation.override("zh-hans"):
        assert send_refusal(entry).startswith("其队列 'nowhere' 不是已配置的队列之一")
    with translation.override("en"):
        assert send_refusal(entry).startswith("its queue 'nowhere' is not one of the configured queues")


#: Literals of three words or more that stay English on purpose: (file, start of the text).
INTENTIONALLY_ENGLISH = {
    ("taskcenter/failures.py", "Traceback (most recent"),  # parsed, not shown
    ("taskcenter/management/commands/compiletranslations.py", ""),  # a developer's tool
    ("taskcenter/management/commands/embedded_redis.py", ""),  # the development server's log line
    ("taskcenter/management/commands/tc.py", "examples:"),  # command lines
    ("taskcenter/models.py", "Can "),  # permission names: stored in the database when migrating
    ("taskcenter/models.py", "retry policy of "),  # a model's __str__
    ("taskcenter/monitor/runner.py", ""),  # a lock holder's description in a log line
    ("taskcenter/rows.py", ""),  # a programming error
    ("taskcenter/scheduled_set.py", ""),  # exception texts recorded as the run's result
    ("taskcenter/services/control.py", "cancelled before it started"),  # Celery's revoke reason
    ("taskcenter/services/recovery.py", ""),  # the WorkerLostError text recorded as the run's result
    ("taskcenter/views/health.py", ""),  # /metrics answers Prometheus, in plain text
    ("taskcenter/worker.py", ""),  # replies of worker control commands and exception texts
    ("taskcenter/metrics.py", ""),  # Prometheus HELP texts
}
#: SQL, Lua and regular expressions are not text.
CODE = re.compile(r"redis\.call|SELECT |DO UPDATE|ORDER BY| WHERE ")
GETTEXT_CALLS = {"gettext", "_", "gettext_lazy", "ngettext", "gettext_noop", "pgettext", "_said"}
NOT_SHOWN_CALLS = {"debug", "info", "warning", "error", "exception", "critical", "log", "add_argument", "warn"}
NOT_SHOWN_CALLS |= {"RuntimeError", "ValueError", "TypeError", "ImproperlyConfigured", "KeyError", "AssertionError"}
NOT_SHOWN_CALLS |= {"Error", "Warning"}  # Django system checks, for developers
PHRASE = re.compile(r"[A-Za-z]+ [A-Za-z]+ [A-Za-z]+")


def untranslated_phrases(relative: str, source: str) -> list[tuple[int, str]]:
    """(line, text) of each literal of three words or more that is not a docstring, a log line, a
    programming error or marked for translation."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str) and PHRASE.search(node.value)):
            continue
        if CODE.search(node.value):
            continue
        parent = node.parent.parent if isinstance(node.parent, ast.JoinedStr) else node.parent
        if isinstance(parent, ast.Expr):
            continue  # a docstring
        if isinstance(parent, ast.keyword) and parent.arg in ("help_text", "verbose_name", "examples", "help"):
            continue
        outer = parent
        while isinstance(outer, ast.BinOp | ast.IfExp | ast.keyword):
            outer = outer.parent
        if isinstance(outer, ast.Call):
            name = outer.func.attr if isinstance(outer.func, ast.Attribute) else getattr(outer.func, "id", "")
            if name in GETTEXT_CALLS or name in NOT_SHOWN_CALLS:
                continue
        if any(relative == path and node.value.startswith(start) for path, start in INTENTIONALLY_ENGLISH):
            continue
        found.append((node.lineno, node.value))
    return found


def test_the_phrase_audit_finds_an_unmarked_sentence():
    source = (
        '"""A docstring with many words."""\n'
        "logger.info('Sent the task again')\n"
        "message = 'Moved to dead letters by hand.'\n"
        "marked = gettext('Moved to dead letters by hand.')\n"
        "query = 'SELECT id FROM taskcenter_run WHERE x'\n"
    )
    assert [text for _, text in untranslated_phrases("x.py", source)] == ["Moved to dead letters by hand."]


def test_no_sentence_outside_the_api_and_the_command_line_is_left_untranslated():
    """The API's own errors stay English (machine-facing, docs/api.md); the command line has its own audit."""
    unmarked = []
    for path in sorted((ROOT / "taskcenter").rglob("*.py")):
        relative = str(path.relative_to(ROOT))
        if any(part in path.parts for part in ("migrations", "examples", "api", "cli")):
            continue
        unmarked += [f"{relative}:{line}: {text!r}" for line, text in untranslated_phrases(relative, path.read_text())]
    assert unmarked == []


@pytest.mark.django_db
def test_the_health_checks_and_a_refused_message_read_in_chinese():
    from types import SimpleNamespace

    from taskcenter.retry_policy import InvalidPolicy, RetryPolicy
    from taskcenter.selectors.health import check_celery_settings, check_database
    from taskcenter.worker import message_problem

    with translation.override("zh-hans"):
        assert check_database().message.startswith("数据库（")
        assert all(CJK.search(result.message) for result in check_celery_settings())
        odd = SimpleNamespace(headers=None)
        assert message_problem(odd) == "消息没有消息头"
        with pytest.raises(InvalidPolicy, match="max_retries 必须是整数"):
            RetryPolicy(max_retries="3")
    with translation.override("en"):
        assert message_problem(odd) == "message has no headers"
