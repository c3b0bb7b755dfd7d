"""Voice mode in the page: the switch, the camera's preview and state line, the token
the page's script (static/voice.js) opens the voice socket with, and the chat view of
the spoken turns.

The voice socket itself, and the loop that hears, sees and answers, are mmchat/voice/;
the page knows them only as `VoiceMode` (below), which server.py hands in, so the page
and the voice front end stay independent of each other. A spoken question is answered
on the socket it came in on (text and audio, which the page's script plays); the chat
shows the same turn from the same events, through one long-lived event of the page
(`on_voice_views`) that runs while voice mode is on.
"""

from __future__ import annotations

import dataclasses
import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ContextManager, Iterator, Protocol

import gradio as gr

from ..errors import UserFacingError
from ..events import TurnEvent
from ..i18n import VOICE_STATE_WORDS
from ..turn import Services, Speech
from ..turn.session import ChatSession
from .chat import ChatHandlers, generation_params
from .labels import t
from .view import SKIP, STILL_LOADING, TurnView, plain


class TurnWatch(ContextManager, Protocol):
    """The spoken turns of one session as they run (mmchat.voice.answering.TurnWatch)."""

    def turns(self) -> Iterator[Iterator[TurnEvent]]: ...


class Answers(Protocol):
    """Who watches a session's spoken answers (mmchat.voice.answering.Answers)."""

    def watch(self) -> TurnWatch: ...

    def close_watches(self) -> None: ...


class VoiceLoop(Protocol):
    """One session's voice mode, as the page uses it (mmchat.voice.loop.VoiceLoop)."""

    verbosity: Any
    answer_with: tuple  # (GenerationParams, Speech | None): what each spoken question is answered with
    answers: Answers

    def stop_listening(self) -> None: ...

    def camera_photo(self, folder: Path) -> Path | None: ...


class VoiceMode(Protocol):
    """Every session's voice mode (mmchat.voice.websocket.VoiceLoops)."""

    def open(self, session: ChatSession) -> str: ...

    def get(self, session: ChatSession) -> VoiceLoop | None: ...

    def close(self, session: ChatSession) -> None: ...


# The camera's picture and voice mode's state (a live region: screen readers hear it change);
# the state's words in each language, for the page's script.
PANEL_HTML = """
<div id="voice-view">
  <video id="voice-preview" autoplay muted playsinline aria-label="What the camera sees"></video>
  <p id="voice-state" role="status" aria-live="polite" data-words="{words}"></p>
</div>
""".format(words=html.escape(json.dumps(VOICE_STATE_WORDS, ensure_ascii=False)))
START_JS = "(token) => { window.mmchatVoice.start(token); return []; }"


@dataclass
class VoiceParts:
    """Voice mode's components."""

    switch: gr.Checkbox
    panel: gr.Row
    token: gr.Textbox  # set while voice mode is on: the script's socket and the chat's view start on it


class VoicePanel:
    """Voice mode on and off, what spoken questions are answered with, and their chat view."""

    def __init__(self, services: Services, chat: ChatHandlers, voice: VoiceMode | None) -> None:
        self.services = services
        self.chat = chat
        self.voice = voice

    def loop_of(self, session: ChatSession | None) -> VoiceLoop | None:
        return self.voice.get(session) if session is not None and self.voice is not None else None

    def on_voice_mode(self, session: ChatSession | None, on: bool, max_new_tokens=None, temperature=None,
                      voice=None, rate=None):
        """Voice mode on: the panel, and the token the page's script opens the voice socket
        with; off: the script stops (its socket's answer with it), a question half said is
        forgotten, and the chat's view of spoken turns ends."""
        if session is None or self.voice is None:
            gr.Warning(STILL_LOADING)
            return gr.update(value=False), gr.update(visible=False), ""
        if not on:
            loop = self.voice.get(session)
            if loop is not None:
                loop.stop_listening()
                loop.answers.close_watches()
            return SKIP, gr.update(visible=False), ""
        try:
            token = self.voice.open(session)
        except UserFacingError as exc:  # speech recognition could not be loaded
            gr.Warning(plain(exc.message_in(session.language)))
            return gr.update(value=False), gr.update(visible=False), ""
        if max_new_tokens is not None:
            self.on_answer_settings(session, max_new_tokens, temperature, voice, rate)
        return SKIP, gr.update(visible=True), token

    def on_answer_settings(self, session: ChatSession | None, max_new_tokens, temperature, voice, rate) -> None:
        """Spoken questions are answered with the page's settings, as changed."""
        loop = self.loop_of(session)
        if loop is not None:
            speech = Speech(voice or "auto", float(rate)) if self.services.tts is not None else None
            loop.answer_with = (generation_params(max_new_tokens, temperature), speech)

    def on_voice_views(self, session: ChatSession | None, token: str) -> Iterator[TurnView]:
        """While voice mode is on: each spoken turn in the chat as it streams, rendered from
        its events as a typed turn is. Its audio is played by the page's script, from the
        voice socket, so the views leave the spoken-answer player alone."""
        loop = self.loop_of(session) if token else None
        if loop is None:
            return
        with loop.answers.watch() as watch:
            for events in watch.turns():
                for view in self.chat.play(session, events, keep_box=True):
                    yield dataclasses.replace(view, speech=SKIP)

    def on_verbosity(self, session: ChatSession | None, verbosity: str) -> None:
        """Voice mode's spoken tasks follow the chosen verbosity at once."""
        from .describe import chosen_task

        loop = self.loop_of(session)
        if loop is not None:
            loop.verbosity = chosen_task(None, verbosity).verbosity

    def on_close(self, session: ChatSession | None) -> None:
        """The browser tab is gone: its voice mode goes too."""
        if session is not None and self.voice is not None:
            self.voice.close(session)


def build_voice_switch(services: Services) -> gr.Checkbox:
    """Voice mode's switch (page.py puts it beside the describe controls)."""
    return gr.Checkbox(
        value=False, label=t("voice_mode"), elem_id="voice-mode",
        interactive=services.stt is not None,
        info=t("voice_mode_info") if services.stt is not None else t("voice_needs_stt"),
    )


def build_voice_panel() -> tuple[gr.Row, gr.Textbox]:
    """Voice mode's panel, shown while it is on: the camera's small preview, the state line
    and what can be said (page.py puts it just above the message box); and the socket's token."""
    with gr.Row(visible=False, elem_id="voice-panel", equal_height=False) as panel:
        gr.HTML(PANEL_HTML, padding=False, elem_id="voice-view-block")
        gr.Markdown(t("voice_help"), elem_id="voice-help")
    token = gr.Textbox(visible="hidden", elem_id="voice-token", label="Voice connection")
    return panel, token


def connect_voice_panel(parts: VoiceParts, handlers: VoicePanel, *, session_state, turn_outputs: list,
                        verbosity, settings: dict, streamed) -> None:
    """Wire voice mode: `settings` holds the page's max_tokens, temperature, voice and rate
    components; `streamed` turns a handler of TurnViews into one of Gradio outputs."""
    answered_with = [settings["max_tokens"], settings["temperature"], settings["voice"], settings["rate"]]
    parts.switch.change(handlers.on_voice_mode, inputs=[session_state, parts.switch, *answered_with],
                        outputs=[parts.switch, parts.panel, parts.token]).then(
        handlers.on_verbosity, inputs=[session_state, verbosity], show_progress="hidden")
    parts.token.change(None, inputs=[parts.token], js=START_JS)
    # Runs as long as voice mode is on, one per page: not counted against any limit.
    parts.token.change(streamed(handlers.on_voice_views), inputs=[session_state, parts.token], outputs=turn_outputs,
                       show_progress="hidden", concurrency_limit=None, trigger_mode="multiple")
    for setting in answered_with:
        setting.change(handlers.on_answer_settings, inputs=[session_state, *answered_with], show_progress="hidden")
    verbosity.input(handlers.on_verbosity, inputs=[session_state, verbosity], show_progress="hidden")
