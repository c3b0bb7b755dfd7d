"""The history sidebar: the user's conversations, to find, open, rename, delete and import.

It is a gr.Sidebar, so it folds away (on a phone it opens over the chat and closes
again). The list (conversation_list.py) is a navigation list of buttons grouped by day,
the open conversation marked as the current one. Choosing one opens it; the next question
goes into it, and the page's saved id follows, so a reload reopens it too.

Every store call names `session.owner`: the store holds everyone's conversations.
The list follows the page's announcements (view.py numbers each one): a finished answer,
a new chat, a refusal are all announced, and are the moments the list can change.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .. import transfer
from ..conversation import Conversation
from ..errors import UserFacingError
from ..i18n import say
from ..store import SQLiteStore
from ..turn.session import ChatSession
from .chat import ChatHandlers
from .conversation_list import listed
from .labels import t
from .view import STILL_LOADING, TurnView, cleared_box, next_announcement, plain, turn_view

SKIP = gr.skip()
LIST_LENGTH = 100  # the newest; search reaches the others
LIST_TEMPLATE = (Path(__file__).resolve().parent / "static" / "conversation_list.html").read_text(encoding="utf-8")

# The sidebar's behaviour is static/sidebar.js; these are its hooks.
SETUP_JS = "() => window.mmchatSidebar.setup()"
LIST_JS = "window.mmchatSidebar.list(element, trigger)"  # the list's js_on_load: its clicks and keys
TO_CHAT_JS = "() => window.mmchatSidebar.toChat?.()"
FOCUS_UNDO_JS = "() => window.mmchatSidebar.focusUndo()"
SILENCE_JS = "() => window.mmchat.silence()"
DOWNLOAD_JS = "() => window.mmchat.download('#export-file')"


@dataclass
class Deleted:
    """A conversation just deleted, as Undo puts it back (with its times, so it returns to its place)."""

    conversation: Conversation
    title: str
    custom_title: bool
    created: float
    updated: float
    at: float  # time.monotonic() of the delete


@dataclass
class SidebarParts:
    """The sidebar's components, for `connect` to wire to the chat."""

    new_chat: gr.Button
    search: gr.Textbox
    conversations: gr.HTML  # its value: conversation_list.listed
    title: gr.Textbox
    rename: gr.Button
    delete: gr.Button
    undo: gr.Button
    export: gr.Button  # pressable while the chat has turns (view.turn_view); writes the .zip when pressed
    export_file: gr.DownloadButton  # hidden: the .zip just written, which the page's script downloads
    import_button: gr.UploadButton
    deleted: gr.State  # a Deleted while Undo can bring it back
    shown_title: gr.State  # the title last put in the title box, to tell what the user typed there

    @property
    def listing(self) -> list:
        """What every refresh of the list updates."""
        return [self.conversations, self.title, self.shown_title]


class SidebarHandlers:
    """The sidebar's event handlers, as plain methods so tests can call them directly.

    Those that change the open conversation return `chat`'s turn view (build_ui's
    `turn_outputs`) followed by the listing (list, title box, shown title); the others
    return what they say.
    """

    def __init__(self, chat: ChatHandlers) -> None:
        self.chat = chat

    def on_new_chat(self, session: ChatSession) -> tuple:
        return self.chat.on_new_chat(session).outputs()

    # --- the list ---

    def listing(self, session: ChatSession | None, query: str = "", typed_title: str | None = None,
                shown_title: str | None = None):
        """The list (filtered by `query`), the open conversation marked; and the title
        box, unless the user has typed a new title there that is not saved yet. (The page
        redraws only what changed in the list, so a refresh leaves the focus where it is.)"""
        if session is None:
            return SKIP, SKIP, SKIP
        store: SQLiteStore = session.store
        query = (query or "").strip()
        summaries = store.list_conversations(session.owner, query=query or None, limit=LIST_LENGTH)
        if summaries:
            hint = say("most_recent", session.language, count=LIST_LENGTH) if len(summaries) == LIST_LENGTH else ""
        else:
            hint = say("none_holds", session.language, query=query) if query else say("nothing_yet", session.language)
        conversations = listed(summaries, session.conversation.id, session.language, query=query, hint=hint)
        title = self._title_of_open(session)
        if typed_title is not None and typed_title != (shown_title or ""):
            return conversations, SKIP, SKIP  # the user is writing a title: leave it alone
        return conversations, title, title

    def _title_of_open(self, session: ChatSession) -> str:
        summary = session.store.summary(session.conversation.id, session.owner)
        return summary.title if summary is not None else ""

    # --- opening ---

    def on_choose(self, session: ChatSession | None, query: str, editing: bool, evt: gr.EventData):
        """A conversation chosen in the list (static/sidebar.js sends its id with the event): on_open.
        A call without the id (an API client's) opens nothing."""
        try:
            conversation_id = evt.id
        except (AttributeError, TypeError):  # no data at all: Gradio's EventData then fails with TypeError
            conversation_id = None
        return self.on_open(session, conversation_id if isinstance(conversation_id, str) else None, query, editing)

    def on_open(self, session: ChatSession | None, conversation_id: str | None, query: str = "",
                editing: bool = False):
        """Open the conversation chosen in the list (stopping an answer being written).
        A message being written stays in the box, for the conversation opened; one being
        edited goes, since the message it edits is in the conversation left."""
        _check_loaded(session)
        if not conversation_id or conversation_id == session.conversation.id:
            # Already open: nothing changes (and a running turn keeps writing into it).
            return (*TurnView.unchanged(), *self.listing(session, query))
        conversation = session.store.load(conversation_id, session.owner)
        if conversation is None:  # deleted meanwhile, in another tab
            message = say("gone", session.language)
            gr.Warning(message)
            return (*turn_view(session, announcement=message).outputs(), *self.listing(session, query))
        self._switch_to(session, conversation)
        title = self._title_of_open(session)
        # An update to the box would focus it (autofocus): only when it must change, so
        # that the focus stays in the list for a keyboard user going through it.
        box = cleared_box() if editing else SKIP
        return (*self._opened(session, say("opened", session.language, title=title), box), *self.listing(session, query))

    def _switch_to(self, session: ChatSession, conversation: Conversation) -> None:
        with session.lock:
            session.cancel_scope.cancel()  # an answer being written stops (and is kept, marked stopped)
            session.conversation = conversation

    def _opened(self, session: ChatSession, announcement: str, box=None):
        return turn_view(session, box=cleared_box() if box is None else box, announcement=announcement,
                         export=bool(session.conversation.turns), reviewed=None).outputs()

    # --- rename ---

    def on_rename(self, session: ChatSession | None, title: str, query: str = ""):
        """Rename the open conversation; an empty title brings back the one from its first
        question. Returns the announcement, its number, and the listing."""
        _check_loaded(session)
        if not session.store.rename(session.conversation.id, title, session.owner):
            message = say("rename_first", session.language)
            gr.Warning(message)
            return (message, next_announcement(), *self.listing(session, query))
        now = self._title_of_open(session)
        if (title or "").strip():
            message = say("renamed", session.language, title=now)
        else:
            message = say("title_back", session.language, title=now)
        return (message, next_announcement(), *self.listing(session, query))

    # --- delete and undo ---

    def on_delete(self, session: ChatSession | None, query: str = ""):
        """Delete the open conversation, and start a new chat. Returns the turn view, the
        listing, what Undo brings back, and the Undo button."""
        _check_loaded(session)
        store = session.store
        with session.lock:
            conversation = session.conversation
            summary = store.summary(conversation.id, session.owner)
            if summary is None:
                message = say("nothing_to_delete", session.language)
                gr.Warning(message)
                return (*turn_view(session, announcement=message).outputs(), *self.listing(session, query), SKIP, SKIP)
            session.cancel_scope.cancel()
            kept = Deleted(conversation.copy(), summary.title, summary.custom_title, summary.created,
                           summary.updated, time.monotonic())
            # Emptied, so that the save at the end of an answer being stopped deletes it
            # rather than bringing it back (ChatSession.save deletes a conversation without turns).
            conversation.turns.clear()
            store.delete(conversation.id, session.owner)
            session.conversation = Conversation()
        message = say("deleted", session.language, title=summary.title)
        undo = gr.update(visible=True, value=say("undo_title", session.language, title=summary.title))
        view = turn_view(session, box=cleared_box(), announcement=message, export=False, reviewed=None)
        return (*view.outputs(), *self.listing(session, query), kept, undo)

    def on_undo(self, session: ChatSession | None, deleted: Deleted | None, query: str = ""):
        """Bring back the conversation just deleted, and open it. Returns the turn view,
        the listing, what Undo still holds, and the Undo button."""
        _check_loaded(session)
        hidden = gr.update(visible=False)
        if deleted is None:
            return (*turn_view(session).outputs(), *self.listing(session, query), None, hidden)
        if time.monotonic() - deleted.at > session.store.media_grace:
            # Its photos and recordings are gone by now; text alone would be a damaged copy.
            minutes = round(session.store.media_grace / 60)
            message = say("too_late", session.language, minutes=minutes)
            gr.Warning(message)
            return (*turn_view(session, announcement=message).outputs(), *self.listing(session, query), None, hidden)
        conversation = deleted.conversation
        session.store.import_conversation(conversation, session.owner, created=deleted.created,
                                          updated=deleted.updated)
        if deleted.custom_title:
            session.store.rename(conversation.id, deleted.title, session.owner)
        restored = session.store.load(conversation.id, session.owner) or conversation
        self._switch_to(session, restored)
        return (*self._opened(session, say("brought_back", session.language, title=deleted.title)), *self.listing(session, query),
                None, hidden)

    # --- import ---

    def on_import(self, session: ChatSession | None, path: str | None, query: str = ""):
        """Import an exported conversation (.zip or .json) and open it. Returns the turn
        view and the listing."""
        _check_loaded(session)
        if not path:
            return (*turn_view(session).outputs(), *self.listing(session, query))
        try:
            conversation = transfer.import_file(path, session.store, session.owner, language=session.language)
        except UserFacingError as exc:
            message = plain(exc.message_in(session.language))
            gr.Warning(message)
            return (*turn_view(session, announcement=message).outputs(), *self.listing(session, query))
        self._switch_to(session, conversation)
        title = self._title_of_open(session)
        return (*self._opened(session, say("imported", session.language, title=title)), *self.listing(session, query))


def _check_loaded(session: ChatSession | None) -> None:
    if session is None:  # an error rather than a warning: there is no view to return yet
        raise gr.Error(STILL_LOADING)


def build_sidebar() -> SidebarParts:
    """The history's components (call inside the page's gr.Sidebar, which page.py lays out); `connect` wires them."""
    new_chat = gr.Button(t("new_chat"), variant="primary", size="sm", elem_id="new-chat")
    search = gr.Textbox(label=t("search"), placeholder=t("search_placeholder"),
                        elem_id="conversation-search", type="text", max_lines=1)
    # Filled by `listing` once the page has loaded, in the session's language (its heading and
    # hint too: words the page itself translated would come back each time the language changes).
    conversations = gr.HTML(None, html_template=LIST_TEMPLATE, js_on_load=LIST_JS, apply_default_css=False,
                            elem_id="conversation-list")
    with gr.Accordion(t("this_conversation"), open=True):
        title = gr.Textbox(label=t("title"), placeholder=t("title_placeholder"), max_lines=1,
                           info=t("title_info"),
                           elem_id="conversation-title")
        rename = gr.Button(t("rename"), size="sm", elem_id="rename-conversation")
        delete = gr.Button(t("delete"), variant="stop", size="sm",
                           elem_id="delete-conversation")
        undo = gr.Button(t("undo"), visible=False, size="sm", elem_id="undo-delete")
        # Nothing to export until the chat has a turn (view.turn_view enables it).
        export = gr.Button(t("export"), interactive=False, size="sm", elem_id="export-conversation")
        export_file = gr.DownloadButton("Download the export", value=None, visible="hidden",
                                        elem_id="export-file")
    import_button = gr.UploadButton(t("import"), file_types=[".zip", ".json"],
                                    file_count="single", size="sm", elem_id="import-conversation")
    deleted = gr.State(None)
    shown_title = gr.State("")
    return SidebarParts(new_chat, search, conversations, title, rename, delete, undo, export, export_file, import_button,
                        deleted, shown_title)


def connect(parts: SidebarParts, handlers: SidebarHandlers, *, session_state, turn_outputs: list, loaded,
            announcer, announcement_number, editing) -> None:
    """Wire the sidebar: `loaded` is the page-load event that fills `session_state`;
    `editing`: the message box's edit-mode flag."""
    listing = parts.listing
    quick = dict(concurrency_limit=None, show_progress="hidden")  # store calls only; never behind an answer
    list_inputs = [session_state, parts.search, parts.title, parts.shown_title]
    opened = [*turn_outputs, *listing]

    loaded.then(handlers.listing, inputs=list_inputs, outputs=listing, **quick)
    loaded.then(None, js=SETUP_JS)
    announcement_number.change(handlers.listing, inputs=list_inputs, outputs=listing, **quick)
    parts.search.change(handlers.listing, inputs=list_inputs, outputs=listing, **quick)  # only the user changes it

    parts.new_chat.click(handlers.on_new_chat, inputs=[session_state], outputs=turn_outputs,
                         js=SILENCE_JS, **quick).then(None, js=TO_CHAT_JS)
    parts.export.click(handlers.chat.on_export, inputs=[session_state], outputs=[parts.export_file], **quick).then(
        None, js=DOWNLOAD_JS)
    # The speech stops in the page at once. A listener of its own: an event's `js` that returns
    # nothing would take the place of the event's inputs.
    parts.conversations.select(None, js=SILENCE_JS)
    parts.conversations.select(handlers.on_choose, inputs=[session_state, parts.search, editing],
                               outputs=opened, trigger_mode="always_last", api_name="on_open", **quick).then(
        None, js=TO_CHAT_JS)

    rename_outputs = [announcer, announcement_number, *listing]
    for trigger in (parts.rename.click, parts.title.submit):
        trigger(handlers.on_rename, inputs=[session_state, parts.title, parts.search], outputs=rename_outputs,
                **quick)
    parts.delete.click(None, js=SILENCE_JS)
    parts.delete.click(handlers.on_delete, inputs=[session_state, parts.search],
                       outputs=[*opened, parts.deleted, parts.undo], **quick).then(None, js=FOCUS_UNDO_JS)
    parts.undo.click(handlers.on_undo, inputs=[session_state, parts.deleted, parts.search],
                     outputs=[*opened, parts.deleted, parts.undo], **quick).then(None, js=TO_CHAT_JS)
    parts.import_button.upload(None, js=SILENCE_JS)
    parts.import_button.upload(handlers.on_import, inputs=[session_state, parts.import_button, parts.search],
                               outputs=opened, **quick).then(None, js=TO_CHAT_JS)
