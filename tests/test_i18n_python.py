"""Python's user-facing text in Simplified Chinese (issue 13, part 1): form errors, flash messages,
model names and service refusals come out translated under zh-hans and unchanged in English; an audit finds
text the forms and views would show without gettext.

The audit (``unmarked_python_text``) is a plain ``ast`` walk over taskcenter/forms/ and
taskcenter/views/ only. It reports a string literal (or an f-string with literal words, or
``"literal" + ...``) passed directly as:
- the message of ``messages.success/error/warning/info/debug(request, ...)`` and ``messages.add_message``;
- ``label=`` or ``help_text=`` of a call whose name ends in ``Field`` (``forms.CharField``, ``SafeDateTimeField``...);
- the label of a ``choices=[(value, label), ...]`` literal in such a call;
- the first argument of ``ValidationError``, ``Http404``, ``PermissionDenied``, ``HttpResponseBadRequest``
  and the message of ``form.add_error(field, ...)``.
It does not follow values through variables, helpers or constants, does not look at services,
selectors, admin, models or commands, and counts text without letters (ids, "---------", ": ") as
not user-facing. Templates have their own audit (tests/i18n_audit.py).
"""

import ast
import io
from pathlib import Path

import pytest
from django.contrib.messages import get_messages
from django.core.management import call_command
from django.http import QueryDict
from django.utils import translation

from tests.i18n_audit import literal_text

pytestmark = pytest.mark.usefixtures("compiled_catalogue")

ROOT = Path(__file__).resolve().parent.parent
AUDITED = ("taskcenter/forms", "taskcenter/views")
MESSAGE_CALLS = {"success", "error", "warning", "info", "debug"}
FIRST_ARGUMENT_CALLS = {"ValidationError", "Http404", "PermissionDenied", "HttpResponseBadRequest"}


def _name(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _shown_arguments(call: ast.Call):
    """The argument nodes of ``call`` that a user reads, per the module docstring."""
    func, name = call.func, _name(call.func)
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) and func.value.id == "messages":
        if name in MESSAGE_CALLS:
            yield from call.args[1:2]
        elif name == "add_message":
            yield from call.args[2:3]
        yield from (k.value for k in call.keywords if k.arg == "message")
    if name.endswith("Field"):
        yield from (k.value for k in call.keywords if k.arg in ("label", "help_text"))
        for keyword in call.keywords:
            if keyword.arg == "choices" and isinstance(keyword.value, ast.List | ast.Tuple):
                for choice in keyword.value.elts:
                    if isinstance(choice, ast.Tuple) and len(choice.elts) == 2:
                        yield choice.elts[1]
    if name in FIRST_ARGUMENT_CALLS:
        yield from call.args[:1]
    if name == "add_error":
        yield from call.args[1:2]


def unmarked_python_text(source: str) -> list[tuple[int, str]]:
    """(line, text) of each literal a user would read without gettext, in one module's source."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call):
            for argument in _shown_arguments(node):
                text = literal_text(argument)
                if text is not None:
                    found.append((argument.lineno, text))
    return found


def test_the_audit_finds_unmarked_text_and_passes_marked_text():
    source = (
        "from django import forms\n"
        "from django.contrib import messages\n"
        "from django.utils.translation import gettext as _\n"
        "class F(forms.Form):\n"
        "    a = forms.CharField(label='Name', help_text=_('Marked'))\n"
        "    b = forms.ChoiceField(choices=[('x', 'Shown'), ('', '---------'), ('y', _('Marked'))])\n"
        "def view(request, name):\n"
        "    messages.success(request, f'Saved {name}.')\n"
        "    messages.error(request, _('Saved %(name)s.') % {'name': name})\n"
        "    messages.info(request, 'Nothing done: ' + name)\n"
        "    messages.warning(request, f'{name}: {name}')\n"
        "    raise forms.ValidationError('Wrong.')\n"
    )
    assert [text for _, text in unmarked_python_text(source)] == [
        "Name",
        "Shown",
        "Saved .",
        "Nothing done: ",
        "Wrong.",
    ]


def test_forms_and_views_pass_every_shown_literal_through_gettext():
    unmarked = []
    for folder in AUDITED:
        for path in sorted((ROOT / folder).glob("*.py")):
            for line, text in unmarked_python_text(path.read_text(encoding="utf-8")):
                unmarked.append(f"{path.relative_to(ROOT)}:{line}: {text!r}")
    assert unmarked == []


def test_a_form_error_is_in_chinese_under_zh_hans_and_unchanged_in_english():
    from taskcenter.forms import BulkRetryForm

    def errors():
        form = BulkRetryForm(QueryDict("scope=selected"))
        assert not form.is_valid()
        return form.errors["__all__"]

    with translation.override("zh-hans"):
        assert errors() == ["请至少选择一个运行。"]
        assert str(BulkRetryForm().fields["scope"].label) == "范围"
    with translation.override("en"):
        assert errors() == ["Select at least one run."]
        assert str(BulkRetryForm().fields["scope"].label) == "Scope"


def test_a_json_field_error_is_in_chinese_with_its_example():
    from taskcenter.forms import RetryForm

    with translation.override("zh-hans"):
        form = RetryForm({"args": '{"x": 1}', "kwargs": ""})
        assert not form.is_valid()
        assert form.errors["args"] == ["必须是列表，例如 [1, 2]。"]
    with translation.override("en"):
        form = RetryForm({"args": '{"x": 1}', "kwargs": ""})
        assert not form.is_valid()
        assert form.errors["args"] == ["Must be a list, e.g. [1, 2]."]


@pytest.mark.django_db
def test_a_flash_message_follows_the_browser_language(staff_client):
    for language, expected in (
        ("zh-hans", "请选择一个操作和至少一个定时计划。"),
        ("en", "Choose an action and at least one schedule."),
    ):
        answer = staff_client.post("/schedules/actions/", {"action": ""}, headers={"accept-language": language})
        assert answer.status_code == 302
        assert [str(m) for m in get_messages(answer.wsgi_request)][-1] == expected


def test_model_names_and_choice_labels_are_in_chinese_under_zh_hans():
    from taskcenter.models import DeadLetter, Run, RunSource
    from taskcenter.priorities import Priority

    with translation.override("zh-hans"):
        assert str(Run._meta.verbose_name) == "运行"
        assert str(DeadLetter._meta.verbose_name_plural) == "死信"
        assert str(RunSource.SCHEDULE.label) == "定时计划"
        assert str(Priority.URGENT.label) == "紧急"
    with translation.override("en"):
        assert str(Run._meta.verbose_name_plural) == "runs"
        assert str(DeadLetter._meta.verbose_name_plural) == "dead letters"
        assert str(Priority.URGENT.label) == "Urgent"


@pytest.mark.django_db
def test_a_service_refusal_shown_on_a_page_is_in_chinese_under_zh_hans():
    from taskcenter.services.errors import ServiceError
    from taskcenter.services.workers import rate_limit_set

    for language, expected in (
        ("zh-hans", "'no.such.task' 不在任务目录中；速率限制只适用于任务目录中的任务。"),
        ("en", "'no.such.task' is not a catalogued task; rate limits apply to catalogued tasks only."),
    ):
        with translation.override(language), pytest.raises(ServiceError) as refusal:
            rate_limit_set(task_name="no.such.task", rate="1/s", actor=None)
        assert str(refusal.value) == expected


#: Labels that read the same in both languages.
SAME_IN_BOTH = {"URL"}


def test_every_field_of_every_taskcenter_model_has_a_chinese_label():
    """The admin's column headers, filters and form labels come from the fields' verbose names."""
    from django.apps import apps

    untranslated = []
    for model in apps.get_app_config("taskcenter").get_models():
        for field in model._meta.get_fields():
            if not hasattr(field, "verbose_name") or field.auto_created:
                continue
            with translation.override("en"):
                english = str(field.verbose_name)
            with translation.override("zh-hans"):
                chinese = str(field.verbose_name)
            if english == chinese and english not in SAME_IN_BOTH:
                untranslated.append(f"{model.__name__}.{field.name}: {english!r}")
    assert not untranslated, untranslated


@pytest.mark.django_db
def test_the_admin_lists_show_their_column_headers_in_chinese(admin_client):
    from taskcenter.models import AuditEntry, Run

    Run.objects.create(task_result_id="abc-123", task_name="examples.add", queue="default")
    AuditEntry.objects.create(action="launch", target="examples.add")
    runs = admin_client.get("/admin/taskcenter/run/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "任务名称" in runs and "发起人" in runs and "创建时间" in runs
    audit = admin_client.get("/admin/taskcenter/auditentry/", HTTP_ACCEPT_LANGUAGE="zh-hans").content.decode()
    assert "操作人" in audit and "对象" in audit
    english = admin_client.get("/admin/taskcenter/run/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Task name" in english and "Launched by" in english


@pytest.mark.django_db(transaction=True)  # SQLite's schema editor cannot run inside a test's transaction
def test_the_field_label_migration_changes_no_table():
    """Migration 0029 only sets verbose names: no SQL, so no table rebuild at a million runs on SQLite."""
    out = io.StringIO()
    call_command("sqlmigrate", "taskcenter", "0029", stdout=out)
    statements = [line for line in out.getvalue().splitlines() if line.strip() and not line.startswith("--")]
    assert statements in ([], ["BEGIN;", "COMMIT;"]), statements
