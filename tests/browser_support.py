"""What the browser tests share about languages: each test runs once per interface language.

The browser asks for the language as a user's would (``Accept-Language`` from the context's
``locale``); ``in_language`` gives the text a page shows in that language, from the same
catalogue the pages use, so a test reads the same whether it runs in English or in Chinese.
"""

import pytest
from django.utils import translation

#: Each language of the interface, as a browser asks for it (Accept-Language from the locale).
LANGUAGES = {"en": "en-US", "zh-hans": "zh-CN"}


def in_language(language: str, text: str, **values) -> str:
    """``text`` (a msgid) as the interface shows it in ``language``, with ``values`` put in."""
    with translation.override(language):
        shown = translation.gettext(text)
    return shown % values if values else shown


@pytest.fixture(params=list(LANGUAGES))
def language(request) -> str:
    """The interface language of the test's browser: every browser test runs in each."""
    return request.param


def assert_page_in(page, language: str) -> None:
    """The page came in ``language``: its ``<html lang>`` says so."""
    assert page.locator("html").get_attribute("lang") == language, page.url
