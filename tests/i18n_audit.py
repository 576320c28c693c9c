"""Find user-visible text that is not marked for translation, in templates and in Python.

``unmarked_text`` is used by tests/test_i18n.py and the pages' tests; ``literal_text``,
``WORDS`` and ``CJK`` by the Python audits (tests/test_i18n_python.py, _services.py, _cli.py).

A template's text tokens (what lies outside ``{% %}`` and
``{{ }}``) are read with an HTML parser: text between tags, and the attributes a user
reads (``title``, ``placeholder``, ``aria-label``, ``alt``, a button's ``value``), with
letters in them, are unmarked unless they sit inside ``{% translate %}`` /
``{% blocktranslate %}``, a ``{% comment %}``, or a ``<script>``/``<style>`` element.
"""

import ast
import re
from html.parser import HTMLParser
from pathlib import Path

from django.template.base import Lexer, TokenType

VISIBLE_ATTRIBUTES = {"title", "placeholder", "aria-label", "alt"}
LETTERS = re.compile(r"[A-Za-z]{2,}")
#: A Python literal "has words" when it holds two Latin letters in a row (format strings and symbols do not).
WORDS = LETTERS
#: A Chinese character: a translated text holds one.
CJK = re.compile(r"[\u4e00-\u9fff]")
#: Text that is the same in every language (names, units, symbols).
NEUTRAL = re.compile(r"^(taskcenter|JSON|API|UTC|ID|PID|CSV|Redis|Celery|OK|cron|ms|s|[A-Z]{1,5}\d*)$")


class _TextCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        attributes = dict(attrs)
        for name, value in attrs:
            visible = name in VISIBLE_ATTRIBUTES or (
                name == "value" and tag == "input" and attributes.get("type") in ("submit", "button")
            )
            if visible and value:
                self.found.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self.found.append(data)


def unmarked_text(source: str) -> list[str]:
    """The pieces of user-visible text in a template source that are not marked for translation."""
    inside = []  # open blocks whose text is not checked: translate blocks, comments, verbatim
    html = []
    for token in Lexer(source).tokenize():
        if token.token_type == TokenType.BLOCK:
            name = token.contents.split()[0] if token.contents.split() else ""
            if name in ("blocktranslate", "blocktrans", "comment", "verbatim"):
                inside.append(name)
            elif name in ("endblocktranslate", "endblocktrans", "endcomment", "endverbatim") and inside:
                inside.pop()
            elif name == "plural":
                pass
            html.append(" ")
        elif token.token_type == TokenType.TEXT and not inside:
            html.append(token.contents)
        else:
            html.append(" ")  # a variable or a marked string: never unmarked text
    collector = _TextCollector()
    collector.feed("".join(html))
    collector.close()
    pieces = []
    for text in collector.found:
        text = " ".join(text.split())
        words = [w for w in re.split(r"[^A-Za-z0-9_]+", text) if w]
        if LETTERS.search(text) and not all(NEUTRAL.match(w) or not LETTERS.search(w) for w in words):
            pieces.append(text)
    return pieces


def templates_unmarked(folder: Path) -> dict[str, list[str]]:
    """Every template under ``folder`` with its unmarked text (templates with none are left out)."""
    found = {}
    for path in sorted(folder.rglob("*.html")):
        pieces = unmarked_text(path.read_text(encoding="utf-8"))
        if pieces:
            found[str(path.relative_to(folder))] = pieces
    return found


def literal_text(node) -> str | None:
    """The words a Python expression ``node`` shows as written, or None when translated, computed or wordless.

    A string, the fixed parts of an f-string, and either side of an operator (``"..." + x``,
    ``"..." % x``) or of a conditional expression.
    """
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value if WORDS.search(node.value) else None
    if isinstance(node, ast.JoinedStr):
        text = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
        return text if WORDS.search(text) else None
    if isinstance(node, ast.BinOp):
        return literal_text(node.left) or literal_text(node.right)
    if isinstance(node, ast.IfExp):
        return literal_text(node.body) or literal_text(node.orelse)
    return None
