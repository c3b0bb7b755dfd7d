"""Streaming sentence splitter: the model's text deltas in, units worth speaking out.

Speech starts when the first sentence is complete, so a sentence is released as soon as
its end is certain: usually one character after the full stop. The splitter loses no
text: joined together, its units are the reply (whitespace aside). What is not to be
read aloud (markdown, code) is dropped later, by `speakable`.

A unit is one of:
- a sentence (Latin ". ! ? ...", or Chinese / Japanese "。！？", which need no space after);
- a line: every newline ends a unit, so headings, list items and table rows stand alone;
- a fenced code block, whole, from its opening to its closing fence;
- a clause of a very long sentence, cut after a comma, semicolon, colon or dash (or
  "，；：、") so the voice does not wait for the end of a 60-word sentence;
- with `first_clause_chars`, the first clause of the reply's first sentence, as soon as
  its comma (or semicolon, colon, dash) is seen: what the listener waits for is the first
  audio, and the rest of the sentence arrives while that clause is being spoken.

Decisions depend only on the text, never on how it was cut into deltas: where the next
character is needed to decide (is "Dr." or "3." an end?), the splitter waits for it.
"""

from __future__ import annotations

import re

from mmchat.tts.language import is_cjk

_SENTENCE_END = ".!?…"
_CJK_SENTENCE_END = "。！？"
# What may follow a full stop and still belong to the sentence: quotes, brackets, the
# closing "**" of bold text.
_CLOSERS = "\"'”’)]}»」』）】*_`"
_CLAUSE_END = ",;:"  # followed by a space
_CJK_CLAUSE_END = "，；：、"
_EM_DASH = "—"  # ends a clause with or without spaces ("red—or orange"); "——" is one dash
_EN_DASH = "–"  # only between spaces (" – "): "1990–1995" is a range
# Enumeration commas separate list items ("苹果、香蕉"), not clauses that can stand alone.
_NOT_FIRST_CLAUSE = "、"
# The first clause the speech worker releases early must be at least this long (Chinese
# counts three): a short one ("Yes," "Well,") saves a token or two, sounds clipped, and is
# over before the rest of the sentence has been written and synthesized.
FIRST_CLAUSE_CHARS = 40
_WORD_OPENERS = "([{\"'“‘*_`"

# A period after these never ends a sentence: each introduces what follows (a name, a number, an example).
_NEVER_FINAL = frozenset(
    {"dr", "mr", "mrs", "ms", "prof", "st", "mt", "vs", "e.g", "i.e", "cf", "approx", "fig"}
)
# Initials and dotted acronyms: "J." "U.S." "a.m."
_INITIALS = re.compile(r"(?:[A-Za-z]\.)*[A-Za-z]")
_FENCE_OPENERS = ("```", "~~~")
_FENCE_CLOSERS = {
    "`": re.compile(r"\n[ \t]*`{3,}[ \t]*(?=\n|\Z)"),
    "~": re.compile(r"\n[ \t]*~{3,}[ \t]*(?=\n|\Z)"),
}


def _weight(text: str) -> int:
    """Rough length in speech: one CJK character says about as much as three letters."""
    return sum(3 if is_cjk(ch) else 1 for ch in text)


class SentenceSplitter:
    """Feed text deltas, get complete units back; `flush()` at the end of the reply.

    A sentence longer than `max_chars` (Chinese characters count three) is cut after
    its last clause. The first unit is cut sooner, past `first_max_chars`, because it
    decides how soon the voice starts; it is never cut mid-clause, which sounds wrong.

    With `first_clause_chars` (None: off), the first unit goes sooner still: at its first
    clause end that lies at least that far in, without waiting to see whether the sentence
    is long. Only the first unit of a reply: later ones are written while earlier ones are
    still being heard, and cutting them would only break their intonation.
    """

    def __init__(
        self, max_chars: int = 200, first_max_chars: int = 80, first_clause_chars: int | None = None
    ) -> None:
        self._max_chars = max_chars
        self._first_max_chars = first_max_chars
        self._first_clause_chars = first_clause_chars
        self._reset()

    def _reset(self) -> None:
        self._buffer = ""
        self._before = "\n"  # the character before the buffer: the reply starts a line
        self._released_any = False

    def feed(self, delta: str) -> list[str]:
        """The units completed by this delta (often none)."""
        self._buffer += delta
        return self._drain(final=False)

    def flush(self) -> list[str]:
        """The rest of the reply; the splitter is then ready for the next one."""
        units = self._drain(final=True)
        self._reset()
        return units

    def _drain(self, final: bool) -> list[str]:
        units = []
        while (end := self._next_end(final)) is not None:
            units.append(self._buffer[:end].strip())
            self._before = self._buffer[end - 1]
            self._buffer = self._buffer[end:]
            self._released_any = True
        return units

    def _next_end(self, final: bool) -> int | None:
        """Where the next unit ends in the buffer, or None until more text is needed."""
        text = self._buffer
        start = len(text) - len(text.lstrip())
        if start == len(text):
            return None
        if self._starts_line(text, start):
            head = text[start : start + 3]
            if head in _FENCE_OPENERS:
                return self._fence_end(text, start, final)
            if not final and len(head) < 3 and any(fence.startswith(head) for fence in _FENCE_OPENERS):
                return None  # "`" or "``" may still become a fence
        # Past `clause_limit` a sentence is cut at its last clause; past `max_chars`, at a
        # space if it has no clause at all; both are tracked while scanning.
        clause_limit = self._max_chars if self._released_any else self._first_max_chars
        first_clause = None if self._released_any else self._first_clause_chars
        last_clause = last_space = None
        weight = 0
        i = start
        while i < len(text):
            if weight >= clause_limit and last_clause is not None:
                return last_clause
            if weight >= self._max_chars and last_space is not None:
                return last_space
            if weight >= 4 * self._max_chars:
                return i  # a run-on blob (base64, Chinese with no punctuation): cut anywhere
            ch = text[i]
            if ch == "\n":
                return i
            if ch in _SENTENCE_END or ch in _CJK_SENTENCE_END:
                end = i + 1
                while end < len(text) and (text[end] in _SENTENCE_END + _CJK_SENTENCE_END + _CLOSERS):
                    end += 1
                ends = self._ends_sentence(text, start, i, end, final)
                if ends is None:
                    return None
                if ends:
                    return end
                weight += _weight(text[i:end])
                i = end
                continue
            if self._ends_clause(text, start, i):
                last_clause = i + 1
                if first_clause is not None and ch not in _NOT_FIRST_CLAUSE and weight + _weight(ch) >= first_clause:
                    return last_clause
            elif ch.isspace():
                last_space = i
            weight += _weight(ch)
            i += 1
        return len(text) if final else None

    @staticmethod
    def _ends_clause(text: str, start: int, i: int) -> bool:
        """Does a clause end right after text[i]? Decided by the text up to text[i + 1] only."""
        ch = text[i]
        if ch in _CJK_CLAUSE_END:
            return True
        if i + 1 >= len(text):
            return False  # "," may be "3,000"; "—" may be the first half of "——"
        after = text[i + 1]
        if ch in _CLAUSE_END:
            return after.isspace()
        if ch == _EM_DASH:
            return after != _EM_DASH
        if ch == _EN_DASH:
            return i > start and text[i - 1] == " " and after.isspace()
        return False

    def _ends_sentence(self, text: str, start: int, stop: int, end: int, final: bool) -> bool | None:
        """Does the run of full stops and closers text[stop:end] end a sentence?"""
        if end == len(text):
            return True if final else None
        if text[stop] in _CJK_SENTENCE_END:
            return True
        if not text[end].isspace():
            # "3.14", "example.com", "e.g" go on; Chinese right after "?" starts anew.
            return is_cjk(text[end])
        after = end
        while after < len(text) and text[after].isspace():
            after += 1
        if "\n" in text[end:after]:
            return True
        if after == len(text):
            return True if final else None
        if text[after].islower():
            return False  # "etc. and", "wait... what": the sentence goes on
        if text[stop] == "." and text[stop + 1] not in _SENTENCE_END:
            word_start = stop
            while word_start > start and not (text[word_start - 1].isspace() or text[word_start - 1] in _WORD_OPENERS):
                word_start -= 1
            word = text[word_start:stop]
            if word.lower() in _NEVER_FINAL or _INITIALS.fullmatch(word):
                return False
            if word.isdigit() and self._starts_line(text, word_start):
                return False  # "1. First": a numbered list item
        return True

    def _starts_line(self, text: str, index: int) -> bool:
        """Is text[index] the first character of a line (indentation aside)?"""
        j = index - 1
        while j >= 0 and text[j] in " \t":
            j -= 1
        return text[j] == "\n" if j >= 0 else self._before == "\n"

    def _fence_end(self, text: str, start: int, final: bool) -> int | None:
        """The end of the fenced code block opening at `start` (the whole block is one unit)."""
        opening_line_end = text.find("\n", start)
        if opening_line_end < 0:
            return len(text) if final else None
        closing = _FENCE_CLOSERS[text[start]].search(text, opening_line_end)
        if closing is None:
            return len(text) if final else None
        if closing.end() == len(text) and not final:
            return None  # the closing line may go on ("````")
        return closing.end()
