"""Voice mode in the page: the switch, the camera's preview and state line, and the token
the page's script (static/voice.js) opens the voice socket with.

The voice socket itself, and the loop that hears, sees and answers, are mmchat/voice/;
the page knows them only as `VoiceMode` (below), which server.py hands in, so the page
and the voice front end stay independent of each other.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Protocol

import gradio as gr

from ..errors import UserFacingError
from ..events import TurnEvent
from ..i18n import VOICE_STATE_WORDS
from ..turn import Services, Speech
from ..turn.session import ChatSession
from .chat import ChatHandlers, generation_params
from .labels import t
from .view import SKIP, STILL_LOADING, TurnView, plain


class VoiceLoop(Protocol):
    """One session's voice mode, as the page uses it (mmchat.voice.loop.VoiceLoop)."""

    verbosity: Any

    def stop_listening(self) -> None: ...

    def camera_photo(self, folder: Path) -> Path | None: ...

    def next_turn(self) -> int | None: ...

    def answer(self, number: int, params, speech) -> Iterator[TurnEvent]: ...


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
    token: gr.Textbox
    answer: gr.Button  # pressed by the page's script when the socket says a question ended


class VoicePanel:
    """Voice mode on and off, and the answer to each spoken question."""

    def __init__(self, services: Services, chat: ChatHandlers, voice: VoiceMode | None) -> None:
        self.services = services
        self.chat = chat
        self.voice = voice

    def loop_of(self, session: ChatSession | None) -> VoiceLoop | None:
        return self.voice.get(session) if session is not None and self.voice is not None else None

    def on_voice_mode(self, session: ChatSession | None, on: bool):
        """Voice mode on: the panel, and the token the page's script opens the voice socket
        with; off: the script stops, and a question half said is forgotten."""
        if session is None or self.voice is None:
            gr.Warning(STILL_LOADING)
            return gr.update(value=False), gr.update(visible=False), "", SKIP
        if not on:
            loop = self.voice.get(session)
            if loop is not None:
                loop.stop_listening()
            return SKIP, gr.update(visible=False), "", SKIP
        try:
            token = self.voice.open(session)
        except UserFacingError as exc:  # speech recognition could not be loaded
            gr.Warning(plain(exc.message_in(session.language)))
            return gr.update(value=False), gr.update(visible=False), "", SKIP
        return SKIP, gr.update(visible=True), token, gr.update(visible=self.services.tts is not None)

    def on_voice_turn(self, session: ChatSession | None, max_new_tokens, temperature, voice, rate
                      ) -> Iterator[TurnView]:
        """Answer, aloud, the question the microphone heard (the page's script asks when the socket says one ended)."""
        loop = self.loop_of(session)
        number = loop.next_turn() if loop is not None else None
        if number is None:  # dropped meanwhile (barge-in, voice mode off)
            return
        params = generation_params(max_new_tokens, temperature)
        speech = Speech(voice or "auto", float(rate)) if self.services.tts is not None else None
        yield from self.chat.play(session, loop.answer(number, params, speech))

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


def build_voice_panel(services: Services) -> VoiceParts:
    """Voice mode's switch and panel (call inside the page's gr.Blocks)."""
    switch = gr.Checkbox(
        value=False, label=t("voice_mode"), elem_id="voice-mode",
        interactive=services.stt is not None,
        info=None if services.stt is not None else t("voice_needs_stt"),
    )
    with gr.Row(visible=False, elem_id="voice-panel") as panel:
        gr.HTML(PANEL_HTML, padding=False)
        gr.Markdown(t("voice_help"))
    token = gr.Textbox(visible="hidden", elem_id="voice-token", label="Voice connection")
    answer = gr.Button("Answer the spoken question", visible="hidden", elem_id="voice-answer")
    return VoiceParts(switch, panel, token, answer)


def connect_voice_panel(parts: VoiceParts, handlers: VoicePanel, *, session_state, turn_outputs: list,
                        speech_output, verbosity, settings: dict, streamed) -> None:
    """Wire voice mode: `settings` holds the page's max_tokens, temperature, voice and rate
    components; `streamed` turns a handler of TurnViews into one of Gradio outputs."""
    parts.switch.change(handlers.on_voice_mode, inputs=[session_state, parts.switch],
                        outputs=[parts.switch, parts.panel, parts.token, speech_output]).then(
        handlers.on_verbosity, inputs=[session_state, verbosity], show_progress="hidden")
    parts.token.change(None, inputs=[parts.token], js=START_JS)
    verbosity.input(handlers.on_verbosity, inputs=[session_state, verbosity], show_progress="hidden")
    parts.answer.click(streamed(handlers.on_voice_turn),
                       inputs=[session_state, settings["max_tokens"], settings["temperature"], settings["voice"],
                               settings["rate"]],
                       outputs=turn_outputs, show_progress="hidden", concurrency_limit=None, trigger_mode="multiple")
