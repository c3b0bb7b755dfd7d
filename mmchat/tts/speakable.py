"""Markdown in, words a voice can say out.

The model writes markdown for the chat view; a voice reading it would say "asterisk
asterisk" and spell out URLs. `to_speakable` cleans one unit from the `SentenceSplitter`.
It works per unit because the splitter has already done the part that needs context:
each line is its own unit and a fenced code block arrives whole, so a unit is either a
code block or one line (or part of one). A bold span or a link cut in two by a sentence
end leaves stray markers, which are dropped too.
"""

from __future__ import annotations

import re

from mmchat.tts.splitter import SentenceSplitter

# Said instead of a code block: the code itself is on screen, read aloud it is noise.
CODE_BLOCK_PHRASE = "Code omitted."

_CODE_FENCE = re.compile(r"\s*(```|~~~)")
_HORIZONTAL_RULE = re.compile(r"([-*_]\s*){3,}")
_TABLE_SEPARATOR = re.compile(r"\|?(\s*:?-+:?\s*\|)+\s*:?-*:?\s*")
_HEADING = re.compile(r"^#{1,6}\s+|\s+#+\s*$")
_QUOTE = re.compile(r"^(>\s*)+")
_BULLET = re.compile(r"^[-*+•]\s+(\[[ xX]\]\s+)?")
_NUMBERED = re.compile(r"^(\d+)[.)]\s+")  # "1. First" -> "1: First", not a sentence "1."
_IMAGE = re.compile(r"!\[([^\]]*)\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]*)\]\([^)\s]*\)")
_LINK_TAIL = re.compile(r"\]\([^)\s]*\)?")  # what a cut left of a link
# A URL; a full stop or comma right after it belongs to the sentence, not the URL.
_URL = re.compile(r"<?(?:https?://|www\.)[^\s<>()\]]*[^\s<>()\].,;:!?'\"]>?")
_HTML_TAG = re.compile(r"</?[A-Za-z][^<>]*>")
_TIMES = re.compile(r"(?<=\w) \* (?=\w)")  # "3 * 4" is arithmetic, not emphasis
_EMPHASIS = re.compile(r"[*~`]+|(?<!\w)_+|_+(?!\w)")
_BRACKETS = re.compile(r"[\[\]]")
_EMOJI = re.compile(
    "[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\uFE0E\uFE0F\u200D\u20E3\U000E0020-\U000E007F]"
)
_TITLE = re.compile(r"\b(Dr|Mr|Mrs|Ms|Prof)\.(?=\s+[A-Z])")
# espeak (Piper's phonemizer) ends a sentence after "Dr." and reads "Prof." as "prof".
_TITLES = {"Dr": "Doctor", "Mr": "Mister", "Mrs": "Missus", "Ms": "Miz", "Prof": "Professor"}
_MONEY = re.compile(r"([$€£])(\d[\d,]*)(?:\.(\d+))?(?:\s+(thousand|million|billion|trillion)\b)?")
# symbol -> (one, many, one hundredth, many hundredths); espeak reads "$4.50" as
# "dollar four point five zero".
_CURRENCIES = {
    "$": ("dollar", "dollars", "cent", "cents"),
    "€": ("euro", "euros", "cent", "cents"),
    "£": ("pound", "pounds", "penny", "pence"),
}
_SPACES = re.compile(r"\s+")
_SPACE_BEFORE_PUNCTUATION = re.compile(r"\s+([,.;:!?])")


def to_speakable(unit: str) -> str:
    """What to say for one unit of the reply; "" when there is nothing to say."""
    if _CODE_FENCE.match(unit):
        return CODE_BLOCK_PHRASE
    text = unit.strip()
    if _HORIZONTAL_RULE.fullmatch(text) or _TABLE_SEPARATOR.fullmatch(text):
        return ""
    text = _QUOTE.sub("", text)
    text = _HEADING.sub("", text)
    text = _BULLET.sub("", text)
    text = _NUMBERED.sub(r"\1: ", text)
    if text.startswith("|"):  # a table row: its cells, one after the other
        text = ", ".join(cell.strip() for cell in text.strip("|").split("|"))
    text = _IMAGE.sub(r"\1", text)
    text = _LINK.sub(r"\1", text)
    text = _URL.sub(_domain, text)
    text = _LINK_TAIL.sub("", text)
    text = _HTML_TAG.sub(" ", text)
    text = _TIMES.sub(" times ", text)
    text = _EMPHASIS.sub("", text)
    text = _BRACKETS.sub("", text)
    text = _EMOJI.sub("", text)
    text = _TITLE.sub(lambda m: _TITLES[m.group(1)], text)
    text = _MONEY.sub(_money, text)
    text = _SPACE_BEFORE_PUNCTUATION.sub(r"\1", _SPACES.sub(" ", text)).strip()
    return text if any(ch.isalnum() for ch in text) else ""


def _domain(match: re.Match[str]) -> str:
    """A URL is said as its site: "https://www.example.com/a?b=1" -> "example.com"."""
    url = match.group(0).strip("<>")
    url = re.sub(r"^(https?://)?(www\.)?", "", url)
    return re.split(r"[/?#:]", url, maxsplit=1)[0]


def _money(match: re.Match[str]) -> str:
    symbol, whole, fraction, scale = match.groups()
    one, many, hundredth, hundredths = _CURRENCIES[symbol]
    if scale or (fraction is not None and len(fraction) != 2):
        amount = whole + (f".{fraction}" if fraction else "")
        return f"{amount} {scale} {many}" if scale else f"{amount} {many}"
    main = f"{whole} {one if whole == '1' else many}"
    cents = int(fraction or 0)
    if cents == 0:
        return main
    small = f"{cents} {hundredth if cents == 1 else hundredths}"
    return small if whole == "0" else f"{main} {small}"


class SpeakableSentences:
    """The reply's text deltas in, sentences ready for `TextToSpeech.stream` out.

    A `SentenceSplitter` followed by `to_speakable`, dropping units with nothing to say.
    """

    def __init__(self, splitter: SentenceSplitter | None = None) -> None:
        self._splitter = splitter or SentenceSplitter()

    def feed(self, delta: str) -> list[str]:
        return self._speakable(self._splitter.feed(delta))

    def flush(self) -> list[str]:
        return self._speakable(self._splitter.flush())

    @staticmethod
    def _speakable(units: list[str]) -> list[str]:
        return [spoken for spoken in map(to_speakable, units) if spoken]
