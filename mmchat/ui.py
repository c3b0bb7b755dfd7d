"""The Gradio page: a thin layer that turns UI events into turns and turn events into views.

Each browser session gets its own `ChatSession` in `gr.State`; the models are shared
through `Services`. Answers stream into the chat view; screen readers hear each answer
once, when it is complete, through a live region of our own (the chat log's own live
region is muted, because it would read the answer token by token).
"""

from __future__ import annotations

import html
import logging
from pathlib import Path
from typing import Iterator

import gradio as gr

from .conversation import AudioPart, Conversation, ImagePart, Turn
from .engine import GenerationParams
from .events import InputRejected, Notice, QuestionAdded, TextDelta, Transcribed, TurnDone, TurnEvent
from .session import ChatSession, ConversationStore
from .turn import Services, UserInput, edit_last, regenerate, submit

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parent.parent / "assets"
EXAMPLES = [
    ("What is in this photo? Answer in one sentence.", "examples/chelsea.png"),
    ("Describe this scene for someone who cannot see it.", "examples/rocket.jpg"),
    ("Read the text on this page.", "examples/page.png"),
    ("这张照片里有什么？", "examples/coffee.png"),
]

# Runs once in the page: a polite live region for finished answers, and the chat log
# muted so its own live region does not read every token.
HEAD = """
<script>
(() => {
  const setup = () => {
    if (!document.getElementById("mmchat-live")) {
      const live = document.createElement("div");
      live.id = "mmchat-live";
      live.setAttribute("role", "status");
      live.setAttribute("aria-live", "polite");
      live.setAttribute("aria-atomic", "true");
      live.className = "mmchat-sr-only";
      document.body.appendChild(live);
    }
    document.querySelectorAll('[role="log"][aria-live]').forEach((log) => log.setAttribute("aria-live", "off"));
    // Gradio's chat drops the alt text of photos; a photo button without a name is a blank to a screen reader.
    document.querySelectorAll('[data-testid="user"] img[alt=""], [data-testid="user"] img:not([alt])')
      .forEach((img) => { img.alt = "Photo you sent"; });
  };
  new MutationObserver(setup).observe(document.documentElement, {childList: true, subtree: true});
  // Escape stops the answer from anywhere on the page, for keyboard and screen-reader users.
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") document.querySelector("#stop-button")?.click();
  });
  window.addEventListener("DOMContentLoaded", setup);
})();
</script>
"""

CSS = """
.mmchat-sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
footer { display: none !important; }
"""

ANNOUNCE_JS = """(text) => { const live = document.getElementById("mmchat-live"); if (live) { live.textContent = ""; setTimeout(() => { live.textContent = text; }, 50); } return []; }"""


def render(conversation: Conversation) -> list[dict]:
    """The conversation as Gradio chat messages (one message per turn)."""
    return [_render_turn(turn) for turn in conversation.turns]


def _render_turn(turn: Turn) -> dict:
    if turn.role == "assistant":
        text = turn.text
        if turn.status == "interrupted":
            text = (text + "\n\n" if text else "") + "*(stopped)*"
        elif turn.status == "error":
            text = (text + "\n\n" if text else "") + "*(the answer failed)*"
        return {"role": "assistant", "content": text}
    content: list = [{"path": image.path, "alt_text": "your photo"} for image in turn.images]
    content += [{"path": p.path} for p in turn.parts if isinstance(p, AudioPart)]
    if turn.text:
        content.append(turn.text)
    return {"role": "user", "content": content}


def _params(max_new_tokens: float, temperature: float) -> GenerationParams:
    return GenerationParams(max_new_tokens=int(max_new_tokens), temperature=float(temperature))


class ChatHandlers:
    """The page's event handlers, as plain methods so tests can call them directly."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = ConversationStore(services.config.data_dir)

    def new_session(self) -> ChatSession:
        return ChatSession(self.store)

    def play(self, session: ChatSession, events: Iterator[TurnEvent], message: dict | None = None):
        """Drive a turn and yield (chat, message box, announcement, export file) updates."""
        keep = gr.skip()
        for event in events:
            if isinstance(event, InputRejected):
                gr.Warning(event.message)
                restore = gr.update(value=message) if message is not None else keep
                yield render(session.conversation), restore, event.message, keep
            elif isinstance(event, (QuestionAdded, Transcribed)):
                yield render(session.conversation), gr.update(value=None, label="Message"), keep, keep
            elif isinstance(event, Notice):
                gr.Info(event.message)
                yield render(session.conversation), keep, event.message, keep
            elif isinstance(event, TextDelta):
                yield render(session.conversation), keep, keep, keep
            elif isinstance(event, TurnDone):
                if event.status == "error":
                    gr.Warning(event.error)
                announcement = {
                    "complete": event.text,
                    "interrupted": "Stopped. " + event.text,
                    "error": event.error,
                }[event.status]
                yield render(session.conversation), keep, announcement, self.export_markdown(session)

    def export_markdown(self, session: ChatSession) -> str | None:
        if not session.conversation.turns:
            return None
        path = self.store.root / "exports" / f"mmchat-{session.conversation.id[:8]}.md"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(session.conversation.to_markdown(), encoding="utf-8")
        return str(path)

    def on_submit(self, session: ChatSession, message: dict, editing: bool, max_new_tokens, temperature):
        message = message or {"text": "", "files": []}
        params = _params(max_new_tokens, temperature)
        if editing:
            if message.get("files"):
                gr.Info("Photos can't be added while editing; the message keeps its photos.")
            events = edit_last(session, message.get("text", ""), self.services, params)
        else:
            files = [f if isinstance(f, str) else f["path"] for f in message.get("files", [])]
            images = tuple(f for f in files if not _is_audio(f))
            audio = next((f for f in files if _is_audio(f)), None)
            events = submit(session, UserInput(message.get("text", ""), images, audio), self.services, params)
        for chat, box, announcement, export in self.play(session, events, message):
            yield chat, box, announcement, export, False, session.conversation.id

    def on_regenerate(self, session: ChatSession, max_new_tokens, temperature):
        for chat, _, announcement, export in self.play(session, regenerate(session, self.services, _params(max_new_tokens, temperature))):
            yield chat, announcement, export

    def on_chat_edit(self, session: ChatSession, max_new_tokens, temperature, edit: gr.EditData):
        if edit.index != session.conversation.last_user_index():
            gr.Warning("Only your last message can be edited.")
            yield render(session.conversation), gr.skip(), gr.skip()
            return
        text = edit.value if isinstance(edit.value, str) else _text_of(edit.value)
        events = edit_last(session, text, self.services, _params(max_new_tokens, temperature))
        for chat, _, announcement, export in self.play(session, events):
            yield chat, announcement, export

    def on_edit_button(self, session: ChatSession):
        index = session.conversation.last_user_index()
        if index is None:
            gr.Warning("There is no message to edit yet.")
            return gr.skip(), False
        text = session.conversation.turns[index].text
        return gr.update(value={"text": text, "files": []}, label="Edit your last message (its photos are kept)"), True

    def on_stop(self, session: ChatSession):
        session.cancel_scope.cancel()

    def on_new_chat(self, session: ChatSession):
        session.new_chat()
        return [], gr.update(value=None, label="Message"), "New chat started.", None, False, session.conversation.id

    def on_load(self, conversation_id: str):
        session = self.new_session()
        restored = self.store.load(conversation_id) if conversation_id else None
        if restored is not None:
            session.conversation = restored
        return session, render(session.conversation), session.conversation.id, self.export_markdown(session)

    def model_status(self):
        status = self.services.engine.status
        if status.error:
            return f"⚠️ **Model unavailable.** {status.error}", gr.Timer(active=False)
        if status.ready:
            return f"Model: `{self.services.engine.wait().name}`", gr.Timer(active=False)
        percent = "" if status.fraction is None else f" ({status.fraction:.0%})"
        return f"⏳ {status.message}{percent}", gr.Timer(active=True)


def build_ui(services: Services) -> gr.Blocks:
    config = services.config
    handlers = ChatHandlers(services)

    with gr.Blocks(title="mmchat", fill_height=True) as demo:
        session_state = gr.State(None, delete_callback=lambda s: s and s.cancel_scope.cancel())
        saved_id = gr.BrowserState("", storage_key="mmchat-conversation-id")
        editing = gr.State(False)

        gr.Markdown("## mmchat\nAsk about your photos, by typing or by voice.")
        status = gr.Markdown("⏳ Starting…", elem_id="model-status", container=False)
        chatbot = gr.Chatbot(
            label="Conversation",
            editable="user",
            height="60vh",
            min_height=280,
            placeholder="Add a photo and ask about it. Answers appear here.",
            feedback_options=None,
            buttons=["copy"],
            autoscroll=True,
        )
        textbox = gr.MultimodalTextbox(
            label="Message",
            elem_id="message",
            placeholder="Ask about your photos… (Enter sends, Shift+Enter adds a line, Esc stops)",
            file_types=["image", "audio"],
            file_count="multiple",
            sources=["upload", "microphone"] if services.stt is not None else ["upload"],
            max_plain_text_length=max(config.max_text_chars * 10, 100_000),
            autofocus=True,
            stop_btn=True,
        )
        with gr.Row(elem_id="mmchat-actions"):
            stop_button = gr.Button("Stop", variant="stop", size="sm", min_width=100, elem_id="stop-button")
            regenerate_button = gr.Button("Regenerate", size="sm", min_width=100)
            edit_button = gr.Button("Edit last message", size="sm", min_width=100)
            new_chat_button = gr.Button("New chat", size="sm", min_width=100)
            export_button = gr.DownloadButton("Export (Markdown)", value=None, size="sm", min_width=100)
        gr.Examples(
            examples=[[{"text": text, "files": [str(ASSETS / photo)]}] for text, photo in EXAMPLES],
            inputs=[textbox],
            label="Examples",
        )
        with gr.Accordion("Settings", open=False):
            max_tokens = gr.Slider(16, 4096, value=config.max_new_tokens, step=16, label="Longest answer (tokens)")
            temperature = gr.Slider(0.0, 1.5, value=config.temperature, step=0.05, label="Temperature (0 = always the same answer)")
        announcer = gr.Textbox(visible="hidden", elem_id="mmchat-announcement", label="Last announcement")
        timer = gr.Timer(1.0)

        timer.tick(handlers.model_status, outputs=[status, timer], show_progress="hidden")
        demo.load(handlers.on_load, inputs=[saved_id], outputs=[session_state, chatbot, saved_id, export_button])
        demo.load(handlers.model_status, outputs=[status, timer], show_progress="hidden")

        turn_outputs = [chatbot, textbox, announcer, export_button, editing, saved_id]
        textbox.submit(
            handlers.on_submit,
            inputs=[session_state, textbox, editing, max_tokens, temperature],
            outputs=turn_outputs,
            concurrency_id="answer",
            concurrency_limit=config.concurrency,
            show_progress="minimal",
        )
        answer_outputs = [chatbot, announcer, export_button]
        regen_args = dict(inputs=[session_state, max_tokens, temperature], outputs=answer_outputs,
                          concurrency_id="answer", concurrency_limit=config.concurrency)
        regenerate_button.click(handlers.on_regenerate, **regen_args)
        chatbot.retry(handlers.on_regenerate, **regen_args)
        chatbot.edit(handlers.on_chat_edit, **regen_args)
        for trigger in (stop_button.click, textbox.stop):
            trigger(handlers.on_stop, inputs=[session_state], queue=False)
        edit_button.click(handlers.on_edit_button, inputs=[session_state], outputs=[textbox, editing])
        new_chat_button.click(handlers.on_new_chat, inputs=[session_state], outputs=turn_outputs)
        chatbot.clear(handlers.on_new_chat, inputs=[session_state], outputs=turn_outputs)
        announcer.change(None, inputs=[announcer], js=ANNOUNCE_JS)
    return demo


def _is_audio(path: str) -> bool:
    return Path(path).suffix.lower() in {".wav", ".webm", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".opus", ".aac"}


def _text_of(value) -> str:
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return value.get("text", "")
    return str(value or "")


def launch_options(config) -> dict:
    """Keyword arguments for `Blocks.launch` (shared by the app and its tests)."""
    return dict(
        server_name=config.host,
        server_port=config.port,
        share=config.share,
        allowed_paths=[str(config.data_dir), str(ASSETS)],
        max_file_size=int(config.max_upload_mb * 1_000_000),
        head=HEAD,
        css=CSS,
        theme=gr.themes.Soft(),
    )


def launch(demo: gr.Blocks, services: Services) -> None:
    demo.queue(default_concurrency_limit=services.config.concurrency)
    demo.launch(**launch_options(services.config))
