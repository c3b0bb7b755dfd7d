"""The history list as the page shows it: conversations grouped by day (Today, Yesterday,
Previous 7 days, Previous 30 days, then by month), each with its title, when it was last
written to, and under a search result the words around the match, the query's words marked.

`listed` makes the list's value, plain data; static/conversation_list.html draws it (its
template escapes every word) and static/sidebar.js makes it work (a click or Enter opens
a conversation, the arrow keys go through the list).
"""

from __future__ import annotations

import time
from collections import Counter
from datetime import date, datetime

from ..i18n import say
from ..store import ConversationSummary
from ..store.search import marked


def listed(summaries: list[ConversationSummary], open_id: str | None, language: str, *, query: str = "",
           hint: str = "", now: float | None = None) -> dict:
    """The list's value: {"label", "hint", "groups": [{"heading", "items": [...]}]}, each item
    {"id", "title", "when", "datetime", "current", "snippet"}; `title` and `snippet` are pieces
    [{"text", "mark"}] (mark: one of the query's words)."""
    today = datetime.fromtimestamp(time.time() if now is None else now).date()
    whens = distinct_whens(summaries, language, today)
    titles = _distinct_titles(summaries, whens)
    groups: list[dict] = []
    for summary, title, when in zip(summaries, titles, whens):
        written = datetime.fromtimestamp(summary.updated)
        heading = day_group(written.date(), today, language)
        if not groups or groups[-1]["heading"] != heading:
            groups.append({"heading": heading, "items": []})
        groups[-1]["items"].append({
            "id": summary.id,
            "title": _pieces(title, query),
            "when": when,
            "datetime": written.isoformat(timespec="minutes"),
            "current": summary.id == open_id,
            "snippet": _pieces(summary.snippet, query) or None,
        })
    return {"label": say("conversations", language), "hint": hint, "groups": groups}


def day_group(day: date, today: date, language: str) -> str:
    """The heading a conversation last written to on `day` is listed under."""
    days = (today - day).days
    if days <= 0:
        return say("group_today", language)
    if days == 1:
        return say("group_yesterday", language)
    if days < 7:
        return say("group_week", language)
    if days < 30:
        return say("group_month", language)
    month = say("months", language).split()[day.month - 1]
    return say("group_month_of", language, month=month, year=day.year)


def distinct_whens(summaries: list[ConversationSummary], language: str, today: date) -> list[str]:
    """When each was last written to, as the list shows it: the time for today and yesterday
    (their headings say the day), "Nov 30" earlier this year, "2025-11-30" before. Where two of
    the same title would show the same, the time is added, then the seconds, to tell them apart."""
    whens = [_when(datetime.fromtimestamp(summary.updated), today, language) for summary in summaries]
    for finer in (_with_time, _with_seconds):
        seen = Counter((summary.title, when) for summary, when in zip(summaries, whens))
        whens = [finer(datetime.fromtimestamp(summary.updated), when) if seen[(summary.title, when)] > 1 else when
                 for summary, when in zip(summaries, whens)]
    return whens


def _when(written: datetime, today: date, language: str) -> str:
    if (today - written.date()).days <= 1:
        return f"{written:%H:%M}"
    if written.year == today.year:
        month = say("months_short", language).split()[written.month - 1]
        return say("day_of_month", language, month=month, day=written.day)
    return f"{written:%Y-%m-%d}"


def _with_time(written: datetime, when: str) -> str:
    return when if ":" in when else f"{when} {written:%H:%M}"


def _with_seconds(written: datetime, when: str) -> str:
    return f"{when}:{written:%S}" if when.count(":") == 1 else when


def _distinct_titles(summaries: list[ConversationSummary], whens: list[str]) -> list[str]:
    """The titles, and where two of the same title were written in the same second, " (2)"
    after the later one's (the list is newest first: the older keeps its title as it is)."""
    seen: Counter = Counter()
    total = Counter((summary.title, when) for summary, when in zip(summaries, whens))
    titles = []
    for summary, when in reversed(list(zip(summaries, whens))):
        seen[(summary.title, when)] += 1
        count = seen[(summary.title, when)]
        titles.append(summary.title if total[(summary.title, when)] == 1 or count == 1 else f"{summary.title} ({count})")
    return titles[::-1]


def _pieces(text: str, query: str) -> list[dict]:
    return [{"text": piece, "mark": mark} for piece, mark in marked(text, query)]
