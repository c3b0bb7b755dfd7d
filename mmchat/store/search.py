"""Search in the history: which conversations hold a query's words, and the piece of text
that shows where (the snippet under a search result in the list)."""

from __future__ import annotations

import re

SNIPPET_BEFORE = 40  # characters kept before the first match
SNIPPET_LENGTH = 120  # characters in all, at most


def search_condition(query: str) -> tuple[str, list]:
    """The WHERE condition on conversation_text for `query`'s words, and its values.

    Words of three characters or more go through the trigram index; shorter ones
    (which it can't index) are matched with LIKE, a scan, still fine for one person's
    history. The words are quoted: a query is never read as FTS5 syntax.
    """
    words = query.split()
    conditions, values = [], []
    indexed = [w for w in words if len(w) >= 3]
    if indexed:
        conditions.append("conversation_text MATCH ?")
        values.append(" ".join('"' + w.replace('"', '""') + '"' for w in indexed))
    for word in (w for w in words if len(w) < 3):
        pattern = "%" + re.sub(r"([\\%_])", r"\\\1", word) + "%"
        conditions.append("(title LIKE ? ESCAPE '\\' OR body LIKE ? ESCAPE '\\')")
        values += [pattern, pattern]
    return " AND ".join(conditions), values


def snippet(text: str, query: str, title: str = "") -> str:
    """The part of `text` (a conversation's words) around the first place one of `query`'s
    words is found, on one line, cut at word ends and marked "…" where cut; "" when none
    is found there. Where `text` begins with `title` (made from the first question), the
    search starts after it: the title is shown anyway, the snippet shows what it does not."""
    words = query.split()
    if not words or not text:
        return ""
    shown = title.removesuffix("…")
    after = len(shown) if shown and text.startswith(shown) else 0
    found = [match for match in (re.compile(re.escape(word), re.IGNORECASE).search(text, after) for word in words)
             if match]
    if not found:
        return ""
    at = min(match.start() for match in found)
    start = max(0, at - SNIPPET_BEFORE)
    if start > 0:  # begin at a word, not inside one (text without spaces, as Chinese, is cut where it is)
        space = text.find(" ", start, at)
        start = space + 1 if space != -1 else start
    end = min(len(text), start + SNIPPET_LENGTH)
    if end < len(text):
        space = text.rfind(" ", at, end)
        end = space if space > at else end
    piece = " ".join(text[start:end].split())
    return ("…" if start > 0 else "") + piece + ("…" if end < len(text) else "")


def marked(text: str, query: str) -> list[tuple[str, bool]]:
    """`text` in pieces, each with whether it is one of `query`'s words (any case), for the
    list to show them marked."""
    words = sorted({word for word in query.split() if word}, key=len, reverse=True)
    if not words or not text:
        return [(text, False)] if text else []
    pattern = re.compile("|".join(re.escape(word) for word in words), re.IGNORECASE)
    pieces, last = [], 0
    for match in pattern.finditer(text):
        if match.start() > last:
            pieces.append((text[last:match.start()], False))
        pieces.append((match.group(), True))
        last = match.end()
    if last < len(text):
        pieces.append((text[last:], False))
    return pieces
