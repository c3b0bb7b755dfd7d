"""The history sidebar's handlers, called as plain functions on the real SQLite store and a fixture model."""

from __future__ import annotations

import json
import re
import zipfile
from datetime import datetime

import gradio as gr
import pytest

from mmchat.i18n import say
from mmchat.turn.session import ChatSession
from mmchat.web.sidebar import SidebarHandlers
from mmchat.web.chat import ChatHandlers
from mmchat.web.view import render

QUIET = (12, 0.0, False, "auto", 1.0)  # max tokens, temperature, speak, voice, rate
LONG = (400, 0.0, False, "auto", 1.0)


@pytest.fixture
def chat(services):
    return ChatHandlers(services)


@pytest.fixture
def sidebar(chat):
    return SidebarHandlers(chat)


def _last(generator):
    result = None
    for result in generator:
        pass
    return result


def _ask(chat, session, text, files=(), settings=QUIET):
    return _last(chat.on_submit(session, {"text": text, "files": [str(f) for f in files]}, False, None, *settings,
                                progress=None))


def _listed(listing) -> list[tuple[str, str]]:
    """(title, id) of each conversation in the list, top first (the list's value: conversation_list.listed)."""
    return [("".join(piece["text"] for piece in item["title"]), item["id"])
            for group in listing[0]["groups"] for item in group["items"]]


def _current(listing) -> str | None:
    """The id of the conversation the list marks as the open one."""
    marked = [item["id"] for group in listing[0]["groups"] for item in group["items"] if item["current"]]
    assert len(marked) <= 1
    return marked[0] if marked else None


def _three_chats(chat, session):
    ids = []
    for text in ("Chat about cats", "Chat about dogs", "Chat about birds"):
        chat.on_new_chat(session)
        _ask(chat, session, text)
        ids.append(session.conversation.id)
    return ids


def test_each_chat_is_listed_after_its_first_question_newest_first_and_new_chat_keeps_it(chat, sidebar):
    session, *_ = chat.on_load("")
    listing = sidebar.listing(session)
    assert _listed(listing) == [] and _current(listing) is None
    assert listing[0]["hint"] == say("nothing_yet", session.language)  # "Your conversations appear here after ..."

    ids = _three_chats(chat, session)
    listing = sidebar.listing(session)
    assert _listed(listing) == [("Chat about birds", ids[2]), ("Chat about dogs", ids[1]), ("Chat about cats", ids[0])]
    assert _current(listing) == ids[2]  # the open one is marked
    assert listing[1] == listing[2] == "Chat about birds"  # the title box shows its title

    chat.on_new_chat(session)  # the new, empty chat is not listed yet; the old ones stay
    listing = sidebar.listing(session)
    assert [i for _, i in _listed(listing)] == ids[::-1] and _current(listing) is None
    assert listing[1] == ""


def test_opening_a_conversation_continues_it_and_the_page_remembers_it(chat, sidebar, services):
    session, *_ = chat.on_load("")
    first, _, third = _three_chats(chat, session)
    view = sidebar.on_open(session, first)
    chat_view, box, announcement, export, _editing, saved_id = view[:6]
    assert saved_id == first == session.conversation.id
    assert chat_view == render(session.conversation) and chat_view[0]["content"] == ["Chat about cats"]
    assert announcement == "Opened “Chat about cats”." and box == gr.skip()  # a message being written stays
    assert chat.on_export(session)["value"].endswith(".zip") and export["interactive"]  # Export writes its .zip
    conversations, title, shown = view[-3:]
    assert _current([conversations]) == first and title == shown == "Chat about cats"

    assert sidebar.on_open(session, third, "", True)[1]["value"] is None  # an edit under way is left
    sidebar.on_open(session, first)
    _ask(chat, session, "And their whiskers?")  # the next question goes into the opened conversation
    stored = services.open_store().load(first)
    assert [t.text for t in stored.turns if t.role == "user"] == ["Chat about cats", "And their whiskers?"]
    listing = sidebar.listing(session)
    assert _listed(listing)[0] == ("Chat about cats", first)  # continued: now the most recent
    # A reload (a new session from the browser's saved id) reopens it.
    reloaded, *_ = chat.on_load(saved_id)
    assert reloaded.conversation.turns == session.conversation.turns and third != first


def test_opening_another_conversation_stops_the_answer_being_written_and_keeps_it(chat, sidebar, services):
    session, *_ = chat.on_load("")
    first, _, third = _three_chats(chat, session)
    updates = chat.on_submit(session, {"text": "Tell me a long story", "files": []}, False, None, *LONG,
                             progress=None)
    for _ in range(4):  # the question, and the answer under way
        next(updates)
    view = sidebar.on_open(session, first)
    assert view[5] == first
    _last(updates)  # the stopped turn ends and saves the conversation it belongs to
    story = services.open_store().load(third)
    assert story.turns[-2].text == "Tell me a long story"
    assert story.turns[-1].status == "interrupted" and story.turns[-1].text
    assert session.conversation.id == first and len(session.conversation.turns) == 2


def test_rename_then_an_empty_title_brings_back_the_automatic_one(chat, sidebar):
    session, *_ = chat.on_load("")
    _three_chats(chat, session)
    announcement, number, conversations, title, shown = sidebar.on_rename(session, "  Birds   I saw ")
    assert announcement == "Renamed to “Birds I saw”." and isinstance(number, int)
    assert _listed([conversations])[0][0] == "Birds I saw" and title == shown == "Birds I saw"
    announcement, second_number, conversations, title, *_ = sidebar.on_rename(session, "")
    assert title == "Chat about birds" and "again" in announcement and second_number != number

    chat.on_new_chat(session)  # nothing saved yet: nothing to rename
    announcement, *_ = sidebar.on_rename(session, "Too soon")
    assert announcement.startswith("Ask a question first")


def test_the_sidebar_speaks_the_page_language(chat, sidebar):
    session, *_ = chat.on_load("")
    _three_chats(chat, session)
    session.language = "zh-CN"  # a Chinese browser, or Settings → Language
    announcement, *_ = sidebar.on_rename(session, "鸟")
    assert announcement == "已重命名为“鸟”。"
    view = sidebar.on_delete(session)
    assert view[2] == "已删除“鸟”。撤销可以恢复。" and view[-1]["value"] == "撤销：恢复“鸟”"
    conversations, *_ = sidebar.listing(session, "不存在的词")
    assert conversations["hint"] == "没有对话包含“不存在的词”。"


def test_a_title_being_typed_is_not_overwritten_when_the_list_refreshes(chat, sidebar):
    session, *_ = chat.on_load("")
    _three_chats(chat, session)
    conversations, title, shown = sidebar.listing(session, "", "My new ti", "Chat about birds")
    assert title == shown == gr.skip()  # left as the user typed it
    assert _listed([conversations])[0][0] == "Chat about birds"
    _, title, shown = sidebar.listing(session, "", "Chat about birds", "Chat about birds")
    assert title == shown == "Chat about birds"


def test_search_finds_conversations_by_their_words(chat, sidebar):
    session, *_ = chat.on_load("")
    cats, dogs, birds = _three_chats(chat, session)
    assert [i for _, i in _listed(sidebar.listing(session, "dogs"))] == [dogs]
    assert [i for _, i in _listed(sidebar.listing(session, "chat ABOUT"))] == [birds, dogs, cats]
    listing = sidebar.listing(session, "dogs")
    assert _current(listing) is None  # the open one (birds) is not among them
    none = sidebar.listing(session, "zebras")
    assert _listed(none) == [] and none[0]["hint"] == "No conversation holds “zebras”."
    # Opening from a search keeps the list searched.
    assert [i for _, i in _listed(sidebar.on_open(session, dogs, "dogs")[-3:])] == [dogs]


def test_delete_then_undo_brings_back_the_conversation_with_its_photo_title_and_place(chat, sidebar, services,
                                                                                      photos):
    store = services.open_store()
    session, *_ = chat.on_load("")
    chat.on_new_chat(session)
    _ask(chat, session, "What is in this photo?", [photos[0]])
    photo = session.conversation.turns[0].images[0].path
    sidebar.on_rename(session, "My red photo")
    photo_chat = session.conversation.id
    chat.on_new_chat(session)
    _ask(chat, session, "A later chat")
    sidebar.on_open(session, photo_chat)
    turns = list(session.conversation.turns)

    result = sidebar.on_delete(session)
    view, listing, kept, undo = result[:-5], result[-5:-2], result[-2], result[-1]
    assert view[0] == [] and view[2] == "Deleted “My red photo”. Undo brings it back."
    assert view[5] == session.conversation.id != photo_chat  # a new chat is open
    assert photo_chat not in [i for _, i in _listed(listing)] and store.load(photo_chat) is None
    assert undo["visible"] is True and "My red photo" in undo["value"]

    result = sidebar.on_undo(session, kept)
    view, listing, kept, undo = result[:-5], result[-5:-2], result[-2], result[-1]
    assert view[5] == photo_chat == session.conversation.id and view[2] == "Brought back “My red photo”."
    assert session.conversation.turns == turns
    restored = store.load(photo_chat)
    assert restored.turns == turns and open(restored.turns[0].images[0].path, "rb").read() == open(photo, "rb").read()
    # Its own title and its place among the others (by when it last changed) come back too.
    assert _listed(listing) == [(store.summary(i).title, i) for i in
                                [s.id for s in store.list_conversations()]]
    assert [t for t, _ in _listed(listing)] == ["A later chat", "My red photo"]
    assert kept is None and undo["visible"] is False


def test_delete_while_the_answer_is_written_does_not_come_back_when_it_stops(chat, sidebar, services):
    session, *_ = chat.on_load("")
    updates = chat.on_submit(session, {"text": "Tell me a long story", "files": []}, False, None, *LONG,
                             progress=None)
    for _ in range(4):
        next(updates)
    doomed = session.conversation.id
    kept = sidebar.on_delete(session)[-2]
    _last(updates)  # the stopped answer's final save must not write it back
    assert services.open_store().load(doomed) is None
    assert kept.conversation.turns[0].text == "Tell me a long story"


def test_undo_is_refused_once_the_photos_may_be_gone(chat, sidebar, services):
    session, *_ = chat.on_load("")
    _ask(chat, session, "Soon deleted")
    kept = sidebar.on_delete(session)[-2]
    kept.at -= services.open_store().media_grace + 1
    result = sidebar.on_undo(session, kept)
    assert "too late to undo" in result[2] and result[-1]["visible"] is False
    assert services.open_store().load(kept.conversation.id) is None


def test_nothing_to_delete_in_a_new_chat(chat, sidebar):
    session, *_ = chat.on_load("")
    result = sidebar.on_delete(session)
    assert result[2].startswith("There is nothing to delete") and result[-1] == gr.skip()


def test_import_opens_the_exported_conversation_as_a_copy_and_refuses_a_bad_file(chat, sidebar, services, photos,
                                                                                tmp_path):
    session, *_ = chat.on_load("")
    _ask(chat, session, "What is in this photo?", [photos[0]])
    sidebar.on_rename(session, "Exported chat")
    original = session.conversation
    export = chat.export(session)
    with zipfile.ZipFile(export) as archive:
        assert any(name.endswith("conversation.json") for name in archive.namelist())
    chat.on_new_chat(session)

    view = sidebar.on_import(session, export)
    assert view[2] == "Imported “Exported chat (imported)”; it is open."  # the copy says what it is
    imported = session.conversation
    assert view[5] == imported.id != original.id  # the original is still there, so the copy gets an id of its own
    assert [t.text for t in imported.turns] == [t.text for t in original.turns]
    assert [t.status for t in imported.turns] == [t.status for t in original.turns]
    assert open(imported.turns[0].images[0].path, "rb").read() == photos[0].read_bytes()
    listed = _listed(view[-3:])
    assert listed.count(("Exported chat (imported)", imported.id)) == 1 and ("Exported chat", original.id) in listed
    assert _current(view[-3:]) == imported.id

    bad = tmp_path / "not-an-export.json"
    bad.write_text(json.dumps({"hello": "world"}))
    view = sidebar.on_import(session, str(bad))
    assert view[2] and session.conversation is imported  # a message to the user, and nothing else changes


def test_each_person_sees_and_opens_only_their_own_conversations(chat, sidebar, store):
    mine, *_ = chat.on_load("")
    _ask(chat, mine, "My own question")
    theirs = ChatSession(store, owner="someone-else")
    _ask(chat, theirs, "Their question")
    assert [t for t, _ in _listed(sidebar.listing(mine))] == ["My own question"]
    assert [t for t, _ in _listed(sidebar.listing(theirs))] == ["Their question"]
    view = sidebar.on_open(theirs, mine.conversation.id)  # an id from a browser is not a key
    assert "no longer there" in view[2] and theirs.conversation.turns[0].text == "Their question"
    assert store.summary(mine.conversation.id, theirs.owner) is None


def test_a_handler_before_the_page_has_loaded_says_to_wait(sidebar):
    with pytest.raises(gr.Error, match="still starting"):
        sidebar.on_open(None, "0" * 32)


def _items(listing) -> list[dict]:
    return [item for group in listing[0]["groups"] for item in group["items"]]


def test_conversations_of_the_same_title_are_told_apart_by_when_they_were_written(chat, sidebar):
    session, *_ = chat.on_load("")
    for _ in range(2):
        chat.on_new_chat(session)
        _ask(chat, session, "What is this?")
    chat.on_new_chat(session)
    _ask(chat, session, "Something else")
    items = _items(sidebar.listing(session))
    shown = [("".join(piece["text"] for piece in item["title"]), item["when"]) for item in items]
    assert shown[0][0] == "Something else" and re.fullmatch(r"\d\d:\d\d", shown[0][1])  # today: the time
    assert len(set(shown)) == 3, shown  # the two "What is this?" differ in their seconds, or else by a number
    assert all(re.fullmatch(r"What is this\?( \(2\))?", title) and re.fullmatch(r"\d\d:\d\d(:\d\d)?", when)
               for title, when in shown[1:]), shown


def test_the_list_is_grouped_by_day_and_older_ones_are_dated():
    from mmchat.store import ConversationSummary
    from mmchat.web.conversation_list import listed

    now = datetime(2026, 12, 7, 15, 0).timestamp()
    written = [datetime(2026, 12, 7, 14, 5), datetime(2026, 12, 6, 9, 12), datetime(2026, 12, 4, 20, 0),
               datetime(2026, 11, 17, 8, 30), datetime(2026, 3, 2, 10, 0), datetime(2025, 11, 30, 18, 40)]
    summaries = [ConversationSummary(str(n), f"Chat {n}", when.timestamp(), when.timestamp())
                 for n, when in enumerate(written)]
    value = listed(summaries, "1", "en", now=now)
    assert [group["heading"] for group in value["groups"]] == [
        "Today", "Yesterday", "Previous 7 days", "Previous 30 days", "March 2026", "November 2025"]
    items = [item for group in value["groups"] for item in group["items"]]
    assert [item["when"] for item in items] == ["14:05", "09:12", "Dec 4", "Nov 17", "Mar 2", "2025-11-30"]
    assert [item["current"] for item in items] == [False, True, False, False, False, False]
    assert items[0]["datetime"] == "2026-12-07T14:05" and value["label"] == "Conversations"
    chinese = listed(summaries, None, "zh-CN", now=now)
    assert [group["heading"] for group in chinese["groups"]] == ["今天", "昨天", "过去 7 天", "过去 30 天", "2026年3月", "2025年11月"]
    assert chinese["groups"][2]["items"][0]["when"] == "12月4日" and chinese["label"] == "对话列表"
    # Two of one title on the same day: the time tells them apart.
    twins = [ConversationSummary(str(n), "Photo", when.timestamp(), when.timestamp())
             for n, when in enumerate([datetime(2026, 12, 3, 9, 0), datetime(2026, 12, 3, 8, 0)])]
    assert [item["when"] for item in listed(twins, None, "en", now=now)["groups"][0]["items"]] == ["Dec 3 09:00", "Dec 3 08:00"]


def test_a_search_result_shows_the_words_around_the_match_marked(chat, sidebar):
    session, *_ = chat.on_load("")
    chat.on_new_chat(session)
    _ask(chat, session, "Tell me about cats")
    _ask(chat, session, "And what about their long whiskers and soft paws?")
    chat.on_new_chat(session)
    _ask(chat, session, "Whiskers, a title of its own")
    items = _items(sidebar.listing(session, "WHISKERS"))
    assert len(items) == 2
    in_text = next(item for item in items if item["title"][0]["text"] == "Tell me about cats")
    snippet = "".join(piece["text"] for piece in in_text["snippet"])
    assert "their long whiskers and soft paws" in snippet
    assert [piece["text"] for piece in in_text["snippet"] if piece["mark"]] == ["whiskers"]  # as written, marked
    in_title = next(item for item in items if item is not in_text)
    assert in_title["title"][0] == {"text": "Whiskers", "mark": True}  # a title's match is marked there
    assert _items(sidebar.listing(session))[0]["snippet"] is None  # no search, no snippets
