"""The interface's two languages: every English text has its Chinese one, and messages follow the page's language."""

from __future__ import annotations

import string

from mmchat.i18n import CHINESE, ENGLISH, TABLES, language_of, missing_translations, say


def test_every_text_has_its_chinese_translation():
    assert missing_translations() == []


def test_translations_keep_their_placeholders():
    fields = lambda text: {name for _, name, _, _ in string.Formatter().parse(text) if name}  # noqa: E731
    for key, english in TABLES[ENGLISH].items():
        assert fields(TABLES[CHINESE][key]) == fields(english), key


def test_the_browsers_language_picks_the_table():
    assert [language_of(tag) for tag in ("zh-CN", "zh-TW", "zh", "en-GB", "de", None)] == \
        [CHINESE, CHINESE, CHINESE, ENGLISH, ENGLISH, ENGLISH]
    assert say("waiting_many", "zh-CN", count=3) == "正在排队：前面还有 3 人…"
    assert say("waiting_many", "fr", count=3) == "Waiting for a free place: 3 people ahead of you…"
