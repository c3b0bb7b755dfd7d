"""Which script a piece of text is written in, so it can be read by a voice that knows it."""

from __future__ import annotations

# (first, last) code points of the scripts a Latin-alphabet voice cannot read.
_HAN = ((0x3400, 0x4DBF), (0x4E00, 0x9FFF), (0xF900, 0xFAFF), (0x20000, 0x2FA1F))
_KANA = ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F))
_HANGUL = ((0x1100, 0x11FF), (0x3130, 0x318F), (0xAC00, 0xD7AF))


def _in(ranges: tuple[tuple[int, int], ...], ch: str) -> bool:
    code = ord(ch)
    return any(first <= code <= last for first, last in ranges)


def is_cjk(ch: str) -> bool:
    """A Chinese, Japanese or Korean character (not punctuation)."""
    return _in(_HAN, ch) or _in(_KANA, ch) or _in(_HANGUL, ch)


def script_language(text: str) -> str | None:
    """'zh', 'ja' or 'ko' when the text is mainly written in that script, else None.

    One CJK character carries about as much speech as a short Latin word, so a Chinese
    sentence with a brand name in it ("我用 iPhone 拍的") still counts as Chinese.
    """
    han = kana = hangul = latin = 0
    for ch in text:
        if _in(_HAN, ch):
            han += 1
        elif _in(_KANA, ch):
            kana += 1
        elif _in(_HANGUL, ch):
            hangul += 1
        elif ch.isalpha():
            latin += 1
    cjk = han + kana + hangul
    if cjk == 0 or cjk * 4 < latin:
        return None
    if kana:
        return "ja"
    if hangul > han:
        return "ko"
    return "zh"
