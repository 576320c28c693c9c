"""Two languages (issue 13, part 1): the language follows the browser, a switcher remembers the choice,
and the catalogues compile on a fresh machine without GNU gettext."""

import gettext
import re

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

pytestmark = pytest.mark.django_db


def test_a_chinese_browser_gets_the_pages_in_simplified_chinese(client):
    page = client.get("/login/", headers={"accept-language": "zh-CN,zh;q=0.9,en;q=0.5"})
    assert page.status_code == 200
    html = page.content.decode()
    assert '<html lang="zh-hans">' in html
    assert "语言" in html and 'value="zh-hans" lang="zh-hans" selected' in html


def test_an_english_browser_gets_english(client):
    html = client.get("/login/", headers={"accept-language": "en-GB,en;q=0.8"}).content.decode()
    assert '<html lang="en">' in html and ">Language<" in html


def test_the_switcher_remembers_the_choice_over_the_browser_language(client):
    answer = client.post("/i18n/setlang/", {"language": "zh-hans", "next": "/login/"})
    assert answer.status_code == 302 and answer["Location"] == "/login/"
    html = client.get("/login/", headers={"accept-language": "en"}).content.decode()
    assert '<html lang="zh-hans">' in html
    client.post("/i18n/setlang/", {"language": "en", "next": "/login/"})
    assert '<html lang="en">' in client.get("/login/", headers={"accept-language": "zh-CN"}).content.decode()


@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(language=st.text(max_size=40), next_url=st.text(max_size=80))
def test_the_switcher_never_fails_on_any_input(client, language, next_url):
    answer = client.post("/i18n/setlang/", {"language": language, "next": next_url})
    assert answer.status_code in (200, 302, 400)


def test_every_catalogue_entry_is_translated_and_compiles():
    call_command("compiletranslations", "--check", verbosity=0)
    call_command("compiletranslations", verbosity=0)


def _catalogue_folder(tmp_path, settings, entries: str):
    """A zh_Hans catalogue of ``entries`` (.po text) in the only locale folder; returns its folder."""
    folder = tmp_path / "zh_Hans" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    header = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n\n'
    (folder / "django.po").write_text(header + entries, encoding="utf-8")
    settings.LOCALE_PATHS = [tmp_path]
    return folder


def test_an_untranslated_entry_fails_the_check_and_a_compiled_catalogue_is_read_by_gettext(tmp_path, settings):
    folder = _catalogue_folder(tmp_path, settings, 'msgid "Queues"\nmsgstr "队列"\n\nmsgid "Workers"\nmsgstr ""\n')
    with pytest.raises(CommandError, match="1 message"):
        call_command("compiletranslations", "--check", verbosity=0)
    call_command("compiletranslations", verbosity=0)
    with (folder / "django.mo").open("rb") as compiled:
        catalogue = gettext.GNUTranslations(compiled)
    assert catalogue.gettext("Queues") == "队列"
    assert catalogue.gettext("Workers") == "Workers"  # untranslated: falls back to the English


def test_a_fuzzy_entry_fails_the_check(tmp_path, settings):
    _catalogue_folder(tmp_path, settings, '#, fuzzy\nmsgid "%(size)s byte"\nmsgstr "%(since)s前"\n')
    with pytest.raises(CommandError, match="1 message"):
        call_command("compiletranslations", "--check", verbosity=0)


def test_the_template_audit_finds_unmarked_text_and_accepts_marked_text():
    from tests.i18n_audit import unmarked_text

    source = """{% load i18n %}<h1>Queues</h1><p title="Paused queue">{% translate "Workers" %}</p>
    {% blocktranslate count n=runs %}One run{% plural %}{{ n }} runs{% endblocktranslate %}
    {% comment %}Not shown{% endcomment %}<script>const label = "Not text";</script>
    <input type="submit" value="Save"><input type="hidden" value="keep">{{ run.task_name }} UTC · 42 ms"""
    assert unmarked_text(source) == ["Queues", "Paused queue", "Save"]


def test_the_language_switcher_is_fully_marked_for_translation():
    from pathlib import Path

    from django.conf import settings

    from tests.i18n_audit import unmarked_text

    source = (Path(settings.BASE_DIR) / "templates" / "_language_switch.html").read_text()
    assert unmarked_text(source) == []


# --- Every text marked, every marked text translated ------------------------------------

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent
KEYWORDS = {"_": None, "gettext": None, "gettext_lazy": None, "ngettext": (1, 2), "ngettext_lazy": (1, 2),
            "pgettext": ((1, "c"), 2), "pgettext_lazy": ((1, "c"), 2), "npgettext": ((1, "c"), 2, 3),
            "npgettext_lazy": ((1, "c"), 2, 3)}  # fmt: skip


#: A Python string literal, as ``templatize`` writes them (``repr``, after a ``u``).
LITERAL = r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")"""
TEMPLATIZED_CALL = re.compile(rf"\b(n?p?gettext)\(u?{LITERAL}(?:\s*,\s*u?{LITERAL})?")


def marked_messages() -> dict[str, list[str]]:
    """Every message marked in taskcenter's Python files and templates -> where, without GNU gettext.

    Python files are read by Babel's extractor; templates go through Django's own
    ``templatize`` (what makemessages does), whose ``gettext('...')`` calls are read here.
    """
    import ast
    import io

    from babel.messages.extract import extract_python
    from django.utils.translation.template import templatize

    found: dict[str, list[str]] = {}
    for path in sorted((ROOT / "taskcenter").rglob("*.py")):
        if "migrations" in path.parts:
            continue
        for _line, _function, message, _comments in extract_python(io.BytesIO(path.read_bytes()), KEYWORDS, [], {}):
            first = message[0] if isinstance(message, tuple) else message
            if isinstance(first, str) and first:
                found.setdefault(first, []).append(str(path.relative_to(ROOT)))
    for path in sorted((ROOT / "templates").rglob("*.html")):
        for call in TEMPLATIZED_CALL.finditer(templatize(path.read_text(encoding="utf-8"), origin=str(path))):
            function, first, second = call.groups()
            message = ast.literal_eval(second if function.startswith(("pgettext", "npgettext")) else first)
            found.setdefault(message, []).append(str(path.relative_to(ROOT)))
    return found


def test_every_template_marks_its_visible_text_for_translation():
    from tests.i18n_audit import unmarked_text

    unmarked = {str(path.relative_to(ROOT)): found for path in sorted((ROOT / "templates").rglob("*.html"))
                if (found := unmarked_text(path.read_text(encoding="utf-8")))}  # fmt: skip
    assert not unmarked, unmarked


def test_every_marked_message_has_a_simplified_chinese_translation():
    from babel.messages.pofile import read_po

    with open(ROOT / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po", "rb") as po:
        catalogue = read_po(po)
    translated = {
        (message.id[0] if isinstance(message.id, tuple) else message.id)
        for message in catalogue
        if message.id
        and not message.fuzzy  # a guess by makemessages, never compiled
        and all(message.string if isinstance(message.string, tuple) else [message.string])
    }
    marked = marked_messages()
    assert len(marked) > 500  # the extraction itself works
    missing = {message: where for message, where in marked.items() if message not in translated}
    assert not missing, f"{len(missing)} marked messages have no zh-Hans translation (make messages): {missing}"
