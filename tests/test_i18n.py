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


USER_FACING = {"UserFacingError", "InputError", "ModelUnavailableError"}  # mmchat.errors


def _keyed_refusals():
    """(file, line, key, blanks filled) of every refusal in mmchat/ made with a translation key:
    `InputError("English...", "key", name=...)`."""
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "mmchat"
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "id", "") in USER_FACING and len(node.args) >= 2
                    and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str)):
                named = {k.arg for k in node.keywords if k.arg}
                if any(k.arg is None for k in node.keywords):  # **_formats()
                    named |= {"formats", "formats_zh"}
                yield path.name, node.lineno, node.args[1].value, named


def test_every_refusal_with_a_key_has_its_chinese_words_and_fills_their_blanks():
    from mmchat.i18n import ERROR_KEYS

    fields = lambda text: {name for _, name, _, _ in string.Formatter().parse(text) if name}  # noqa: E731
    refusals = list(_keyed_refusals())
    assert len(refusals) >= 10  # the photo refusals at least
    for file, line, key, named in refusals:
        assert key in ERROR_KEYS, f"{file}:{line}: no Chinese for {key!r}"
        assert fields(TABLES[CHINESE][key]) <= named, f"{file}:{line}: {key!r} has blanks its call does not fill"


def test_a_refused_photo_is_explained_in_the_pages_language(tmp_path):
    from mmchat.errors import InputError
    from mmchat.events import InputRejected
    from mmchat.media.images import check_image

    broken = tmp_path / "cat.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)  # a PNG's signature, then nothing
    try:
        check_image(broken, max_pixels=10**7, max_bytes=10**7)
    except InputError as exc:
        refused = InputRejected.of(exc)
    assert refused.message_in("en").startswith("The photo cat.png is damaged")
    assert refused.message_in("zh-CN") == "照片 cat.png 已损坏或不完整（可能被截断），无法读取。请重新发送，或换一份。"
    text = tmp_path / "notes.png"
    text.write_text("just some words")
    try:
        check_image(text, max_pixels=10**7, max_bytes=10**7)
    except InputError as exc:
        assert exc.message_in("zh-CN").startswith("notes.png 不是照片") and "JPEG、PNG" in exc.message_in("zh-CN")
