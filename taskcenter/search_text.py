"""History's text search in Chinese, Japanese and Korean text, which has no spaces between words.

Both search indexes split text into words at spaces and punctuation, so ``订单已发货`` would
be one word, found by ``订单`` (its start) but never by ``发货``. The indexed text is therefore
*spaced*: each CJK character becomes a word of its own, and a search for ``已发货`` asks for
the words 已, 发, 货 next to each other (a phrase), which finds it anywhere in the text.

Results are stored as JSON with ``\\uXXXX`` escapes for non-ASCII text (kombu's JSON), and an
outcome cut at 500 characters is no longer valid JSON: the escapes are decoded first, so
``库存不足`` is found in any result.

- SQLite: the FTS5 triggers of migration 0025 call ``taskcenter_search_text`` (this module's
  ``searchable``), registered on every Django connection by ``register_sqlite_function``.
  A connection without it (the ``sqlite3`` shell) cannot write runs: write them through Django.
- PostgreSQL: migration 0025 defines an SQL function of the same name and rule, and the
  search index is on it.
"""

import re

#: Hiragana, katakana, CJK ideographs (with extension A and compatibility) and Hangul syllables.
CJK_CLASS = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uac00-\ud7af"
CJK = re.compile(f"([{CJK_CLASS}])")
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
SQL_FUNCTION = "taskcenter_search_text"


def _unescaped(match: re.Match) -> str:
    code = int(match[1], 16)
    return match[0] if code == 0 or 0xD800 <= code <= 0xDFFF else chr(code)


def searchable(text: str | None) -> str | None:
    """The text the index reads: JSON escapes decoded, CJK characters spaced (None stays None)."""
    if text is None:
        return None
    return spaced(ESCAPE.sub(_unescaped, text) if "\\u" in text else text)


def spaced(text: str | None) -> str | None:
    """``text`` with a space on each side of every CJK character (None stays None)."""
    if text is None:
        return None
    return CJK.sub(r" \1 ", text)


def word_pieces(word: str) -> list[str]:
    """The index's words in one search word: each CJK character alone, other runs whole."""
    return (spaced(word) or "").split()


def register_sqlite_function(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: give each SQLite connection the function the triggers call."""
    if connection.vendor == "sqlite":
        connection.connection.create_function(SQL_FUNCTION, 1, searchable, deterministic=True)
