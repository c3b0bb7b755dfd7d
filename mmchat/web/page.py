"""The Gradio page: its layout and the wiring of its events to the handlers, nothing else.

The handlers live beside it (chat.py, describe.py, settings.py, voice_panel.py,
sidebar.py) and return named views (view.py); the page's own script and styles are
static/*.js and static/page.css. See README.md in this folder for where a change goes.
"""

from __future__ import annotations

import functools
import inspect
import json
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from ..i18n import ENGLISH, LANGUAGE_NAMES, PAGE_SCRIPT_WORDS
from ..turn import Services
from ..turn.session import ChatSession
from .chat import ChatHandlers
from .describe import Describer, task_choices, verbosity_choices
from .labels import I18N, t
from .settings import SettingsHandlers, language_choices, language_code, voice_choices
from .sidebar import SidebarHandlers, build_sidebar, connect
from .view import MESSAGE_LABEL, TurnView
from .voice_panel import VoiceMode, VoicePanel, VoiceParts, build_voice_panel, build_voice_switch, connect_voice_panel

ASSETS = Path(__file__).resolve().parents[2] / "assets"
STATIC = Path(__file__).resolve().parent / "static"
SCRIPTS = ("page.js", "voice.js", "record.js", "sidebar.js")  # in the page's <head>, in this order
# The microphone button beside the box (static/record.js): one press records, one sends.
RECORD_BUTTON = ('<button id="record-button" type="button" class="record-button" aria-pressed="false" '
                 'aria-label="Record a question" aria-keyshortcuts="Alt+Shift+R"><span aria-hidden="true">'
                 '<svg viewBox="0 0 24 24" width="20" height="20" fill="none" stroke="currentColor" stroke-width="2">'
                 '<rect x="9" y="2" width="6" height="12" rx="3"/><path d="M5 10a7 7 0 0 0 14 0M12 17v5"/></svg>'
                 '</span></button>')
EXAMPLES = [
    ("What is in this photo? Answer in one sentence.", "examples/chelsea.png"),
    ("Describe this scene for someone who cannot see it.", "examples/rocket.jpg"),
    ("Read the text on this page.", "examples/page.png"),
    ("这张照片里有什么？", "examples/coffee.png"),
]

# One-line hooks into the page's script (static/page.js).
SILENCE_JS = "() => window.mmchat.silence()"
ANNOUNCE_JS = "(text) => { window.mmchat.announce(text); return []; }"
LOG_OUT_JS = "() => window.mmchat.logOut()"
# The page's words change in the browser at once: the menu's entry to the language's code.
LANGUAGE_JS = "(entry) => { window.mmchat.setLanguage(%s[entry] || 'auto'); }" % json.dumps(
    {name: code for code, name in LANGUAGE_NAMES.items()}, ensure_ascii=False)


class PageHandlers:
    """Every handler of one page, sharing its services (and voice mode, when the server serves its socket)."""

    def __init__(self, services: Services, voice: VoiceMode | None = None) -> None:
        self.chat = ChatHandlers(services)
        self.settings = SettingsHandlers(services)
        self.voice = VoicePanel(services, self.chat, voice)
        self.describe = Describer(self.chat, voice)
        self.sidebar = SidebarHandlers(self.chat)

    def on_close(self, session: ChatSession | None) -> None:
        """The browser tab is gone: stop its answer and its voice mode."""
        self.chat.on_close(session)
        self.voice.on_close(session)


def streamed(handler):
    """A handler of TurnViews as Gradio takes it: each view as its outputs, in `TurnView.names()` order.
    (Gradio reads the handler's signature for what to pass, so the wrapper keeps it.)"""
    if inspect.isgeneratorfunction(handler):
        @functools.wraps(handler)
        def views(*args, **kwargs):
            for view in handler(*args, **kwargs):
                yield view.outputs() if isinstance(view, TurnView) else view
        return views

    @functools.wraps(handler)
    def view(*args, **kwargs):
        result = handler(*args, **kwargs)
        return result.outputs() if isinstance(result, TurnView) else result
    return view


@dataclass
class ChatParts:
    """The chat column's components."""

    status: gr.Markdown
    chatbot: gr.Chatbot
    speech: gr.Audio
    textbox: gr.MultimodalTextbox
    stop: gr.Button
    describe: gr.Button
    task: gr.Dropdown
    verbosity: gr.Dropdown
    edit: gr.Button
    account: gr.Markdown | None  # with --auth: who is logged in


@dataclass
class SettingsParts:
    timings: gr.Markdown
    max_tokens: gr.Slider
    temperature: gr.Slider
    speak: gr.Checkbox
    voice: gr.Dropdown
    rate: gr.Slider
    language: gr.Dropdown

    @property
    def answer_settings(self) -> list:
        """What every answer is asked with."""
        return [self.max_tokens, self.temperature, self.speak, self.voice, self.rate]


def build_ui(services: Services, handlers: PageHandlers | None = None, voice: VoiceMode | None = None) -> gr.Blocks:
    """The page; `handlers`: its event handlers, when the caller (a test) wants to drive them too;
    `voice`: every session's voice mode, whose socket the server serves (None: voice mode is off)."""
    handlers = handlers or PageHandlers(services, voice)
    # No analytics: Gradio's telemetry and version check would send word of every start to
    # outside servers, from a local assistant whose point is that nothing leaves the machine.
    with gr.Blocks(title="mmchat", fill_height=True, analytics_enabled=False) as demo:
        # The sidebar: the conversations (New chat, search, rename, delete, export, import),
        # then what is set once (settings) or looked at now and then (timings).
        with gr.Sidebar(label=t("history"), open=True, elem_id="history"):
            sidebar = build_sidebar()
            settings = _build_settings(services)
        # Filled by on_load: Gradio deep-copies initial state values, and a session holds locks.
        session_state = gr.State(None, delete_callback=handlers.on_close)
        saved_id = gr.BrowserState("", storage_key="mmchat-conversation-id")
        editing = gr.State(False)
        reviewed_audio = gr.State(None)  # the recording whose transcript is in the box
        # The main column, as chat apps have it: the conversation fills the window and
        # scrolls inside itself, the message box is pinned under it.
        chat, voice_parts = _build_chat(services)
        language_choice = gr.BrowserState("auto", storage_key="mmchat-language-choice")
        announcer = gr.Textbox(visible="hidden", elem_id="mmchat-announcement", label="Last announcement")
        announcement_number = gr.Number(0, visible="hidden", label="Announcements made", precision=0)
        timer = gr.Timer(1.0)

        timer.tick(handlers.settings.model_status, outputs=[chat.status, timer], show_progress="hidden")
        loaded = demo.load(handlers.chat.on_load, inputs=[saved_id],
                           outputs=[session_state, chat.chatbot, saved_id, sidebar.export, settings.timings])
        demo.load(handlers.settings.model_status, outputs=[chat.status, timer], show_progress="hidden")
        if chat.account is not None:
            demo.load(handlers.settings.account, outputs=[chat.account], show_progress="hidden")
        components = dict(chat=chat.chatbot, box=chat.textbox, announcement=announcer, export=sidebar.export,
                          editing=editing, conversation_id=saved_id, reviewed=reviewed_audio, speech=chat.speech,
                          announcement_number=announcement_number, timings=settings.timings, stop=chat.stop)
        turn_outputs = [components[name] for name in TurnView.names()]
        _wire_chat(handlers, chat, settings, session_state, turn_outputs, editing, reviewed_audio)
        announcement_number.change(None, inputs=[announcer], js=ANNOUNCE_JS)
        connect(sidebar, handlers.sidebar, session_state=session_state, turn_outputs=turn_outputs,
                loaded=loaded, announcer=announcer, announcement_number=announcement_number, editing=editing)
        connect_voice_panel(voice_parts, handlers.voice, session_state=session_state, turn_outputs=turn_outputs,
                            verbosity=chat.verbosity, streamed=streamed,
                            settings=dict(max_tokens=settings.max_tokens, temperature=settings.temperature,
                                          voice=settings.voice, rate=settings.rate))
        language_chosen = _wire_settings(demo, handlers, chat, settings, session_state, language_choice)
        # What the server says follows the new language too: the model's status, the history's hints.
        language_chosen.then(handlers.settings.model_status, outputs=[chat.status, timer], show_progress="hidden")
        language_chosen.then(handlers.sidebar.listing, inputs=[session_state, sidebar.search, sidebar.title,
                                                               sidebar.shown_title],
                             outputs=sidebar.listing, show_progress="hidden")
    return demo


def _build_chat(services: Services) -> tuple[ChatParts, VoiceParts]:
    config = services.config
    with gr.Row(elem_id="page-header"):
        gr.Markdown(t("tagline"), elem_id="tagline")  # the page's one h1
        status = gr.Markdown("⏳ Starting…", elem_id="model-status", container=False)
        account = None
        if config.auth:  # the gate's log-out is a POST (a plain link, any site could make); see mmchat/users
            account = gr.Markdown("", elem_id="account", container=False)  # "Signed in as alice" (on load)
            gr.Button(t("log_out"), size="sm", elem_id="log-out", scale=0).click(None, js=LOG_OUT_JS)
    chatbot = gr.Chatbot(label=t("conversation"), elem_id="conversation", editable="user", scale=1, height=None,
                         min_height=200, placeholder=t("chat_placeholder"), feedback_options=None, buttons=["copy"],
                         autoscroll=True, examples=_examples())
    speech = gr.Audio(label=t("spoken_answer"), elem_id="speech", streaming=True, autoplay=True, interactive=False,
                      visible=services.tts is not None and config.speak_answers)
    voice_panel, voice_token = build_voice_panel()  # voice mode's camera: a small preview by the box
    with gr.Row(elem_id="composer", equal_height=True):
        textbox = gr.MultimodalTextbox(
            label=MESSAGE_LABEL,
            elem_id="message",
            placeholder=t("message_placeholder"),  # short: a longer one wraps to lines on a phone
            file_types=None,  # any file: one it can't take is refused in mmchat's words (chat.refused_files)
            file_count="multiple",
            sources=["upload"],  # a spoken question: the microphone button beside it
            max_plain_text_length=max(config.max_text_chars * 10, 100_000),
            autofocus=True,
            scale=1,
            stop_btn=False,  # one Stop for every answer (typed, described, spoken): the button beside it
        )
        if services.stt is not None:
            gr.HTML(RECORD_BUTTON, elem_id="record", padding=False, container=False, min_height=0)
        # Shown while an answer is written (view.turn_view) or still spoken (static/page.js):
        # Send's place; Esc presses it.
        stop = gr.Button(t("stop"), variant="stop", size="sm", elem_id="stop-button", elem_classes=["idle"],
                         scale=0, min_width=80)
    # Describe mode: one key or button, about the box's photo, the camera or the last photo.
    with gr.Row(elem_id="describe-row"):
        describe = gr.Button(t("describe_button"), variant="primary", size="sm", min_width=170, scale=0,
                             elem_id="describe-button")
        task = gr.Dropdown(task_choices(), value=task_choices()[0], label=t("task"), elem_id="describe-task",
                           min_width=200)
        # Menus, not radio buttons: their words change with the page's language, and Gradio
        # 6.31's radio then sends back a choice's words instead of its value.
        verbosity = gr.Dropdown(verbosity_choices(), value=verbosity_choices()[0], label=t("detail"),
                                elem_id="describe-verbosity", min_width=160)
        voice_switch = build_voice_switch(services)
    gr.Markdown(t("shortcut_line"), elem_id="shortcuts", container=False)
    # One control per action: Regenerate and Edit are the chat's own retry and pencil icons,
    # New chat and Export are in the sidebar. The box's edit mode is the Up arrow in an
    # empty box (the page script presses this hidden button).
    edit = gr.Button(t("edit_last"), visible="hidden", elem_id="edit-last")
    chat = ChatParts(status, chatbot, speech, textbox, stop, describe, task, verbosity, edit, account)
    return chat, VoiceParts(voice_switch, voice_panel, voice_token)


def _examples() -> list[dict]:
    """The empty chat's examples: a question and its photo, which a click puts in the box."""
    return [{"text": text, "files": [str(ASSETS / photo)], "display_text": text} for text, photo in EXAMPLES]


def example_message(selected: gr.SelectData) -> dict:
    """The example clicked, in the box to be sent: looked up by its place, not by the path
    the browser sends back, which could name any file."""
    text, photo = EXAMPLES[selected.index]
    return {"text": text, "files": [str(ASSETS / photo)]}


def _build_settings(services: Services) -> SettingsParts:
    config = services.config
    with gr.Accordion(t("timings"), open=False):
        timings = gr.Markdown(elem_id="timings")
    with gr.Accordion(t("settings"), open=False):
        # Down to the configured value, which may be below the slider's usual range (--max-new-tokens 8).
        max_tokens = gr.Slider(min(16, config.max_new_tokens), 4096, value=config.max_new_tokens, step=16,
                               label=t("longest_answer"))
        temperature = gr.Slider(0.0, 1.5, value=config.temperature, step=0.05, label=t("temperature"))
        speaks = services.tts is not None
        speak = gr.Checkbox(value=config.speak_answers, label=t("speak"), info=t("speak_info"), interactive=speaks)
        voice = gr.Dropdown(voice_choices(config), value=config.voice, label=t("voice"), elem_id="voice-menu",
                            interactive=speaks)
        rate = gr.Slider(0.5, 2.0, value=config.speech_rate, step=0.05, label=t("speaking_rate"), interactive=speaks)
        language = gr.Dropdown(language_choices(ENGLISH), value=language_choices(ENGLISH)[0], label=t("language"),
                               elem_id="language")
    return SettingsParts(timings, max_tokens, temperature, speak, voice, rate, language)


def _wire_chat(handlers: PageHandlers, chat: ChatParts, settings: SettingsParts, session_state, turn_outputs,
               editing, reviewed_audio) -> None:
    # Gradio runs every answer at once and lets a question in while one streams:
    # the turn layer's admission line (shared with the API) bounds the answers
    # being generated, and a new turn in a session stops the one running there.
    answer = dict(outputs=turn_outputs, concurrency_limit=None, trigger_mode="multiple")
    asked_with = settings.answer_settings
    chat.textbox.submit(streamed(handlers.chat.on_submit),
                        inputs=[session_state, chat.textbox, editing, reviewed_audio, *asked_with],
                        show_progress="minimal", **answer)
    chat.chatbot.retry(streamed(handlers.chat.on_regenerate), inputs=[session_state, *asked_with], **answer)
    chat.chatbot.option_select(handlers.chat.on_version, inputs=[session_state], outputs=turn_outputs,
                               show_progress="hidden")
    chat.chatbot.edit(streamed(handlers.chat.on_chat_edit), inputs=[session_state, editing, *asked_with], **answer)
    chat.chatbot.example_select(example_message, outputs=[chat.textbox], show_progress="hidden")
    chat.stop.click(handlers.chat.on_stop, inputs=[session_state], queue=False, js=SILENCE_JS)
    chat.edit.click(handlers.chat.on_edit_button, inputs=[session_state], outputs=[chat.textbox, editing])
    settings.speak.change(lambda on: gr.update(visible=on), inputs=[settings.speak], outputs=[chat.speech])
    chat.describe.click(streamed(handlers.describe.on_describe),
                        inputs=[session_state, chat.textbox, chat.task, chat.verbosity, *asked_with], **answer)


def _wire_settings(demo: gr.Blocks, handlers: PageHandlers, chat: ChatParts, settings: SettingsParts,
                   session_state, language_choice):
    """Wires Settings; returns the event of a new language chosen (the server's words follow it)."""
    language = settings.language
    # A js of its own: one that returns nothing in an event with a function would take the place of its inputs.
    language.input(None, inputs=[language], js=LANGUAGE_JS)
    language.input(language_code, inputs=[language], outputs=[language_choice], show_progress="hidden")
    chosen = language.input(handlers.settings.on_language, inputs=[session_state, language, chat.task, chat.verbosity],
                            outputs=[chat.chatbot, settings.timings, chat.task, chat.verbosity, language],
                            show_progress="hidden")
    # The menus in the page's language, with this person's last choices.
    demo.load(handlers.settings.on_page_menus, inputs=[language_choice], outputs=[chat.task, chat.verbosity, language],
              show_progress="hidden")
    for choice in (chat.task, chat.verbosity):  # remembered for the next visit, from any browser
        choice.input(handlers.settings.on_describe_choice, inputs=[chat.task, chat.verbosity], show_progress="hidden")
    return chosen


def static_head() -> str:
    """The page's scripts, for the <head> (the files are what is linted; Gradio takes the HTML),
    after the words they say in each language."""
    words = json.dumps(PAGE_SCRIPT_WORDS, ensure_ascii=False).replace("</", "<\\/")
    scripts = [f"<script>window.mmchatWords = {words};</script>"]
    scripts += [f"<script>\n{(STATIC / name).read_text(encoding='utf-8')}</script>" for name in SCRIPTS]
    return "\n".join(scripts)


def launch_options(config) -> dict:
    """Keyword arguments for `Blocks.launch` (and, those it takes, `gr.mount_gradio_app`)."""
    from .theme import page_theme

    return dict(
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        # Photos, recordings and exports, never the rest of the data folder (the database).
        # With --auth not even those: the server serves them to their owners (server._gate).
        allowed_paths=([] if config.auth else [str(config.data_dir / "media"), str(config.data_dir / "exports")])
        + [str(ASSETS)],
        # The largest file of any kind; each kind is then held to its own limit, in mmchat's words.
        max_file_size=int(max(config.max_upload_mb, config.max_video_mb) * 1_000_000),
        head=static_head(),
        css_paths=[STATIC / "page.css"],
        i18n=I18N,
        theme=page_theme(),
    )
