"""The Gradio page: a thin layer that turns UI events into turns and turn events into views.

Each browser session gets its own `ChatSession` in `gr.State`; the models are shared
through `Services`. Answers stream into the chat view; screen readers hear each answer
once, when it is complete, through a live region of our own (the chat log's own live
region is muted, because it would read the answer token by token).
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path
from typing import Iterator

import gradio as gr

import numpy as np

from ..conversation import AudioPart, Conversation, TextPart, Turn
from ..engine import GenerationParams
from ..errors import UserFacingError
from ..events import (
    AudioChunk, InputRejected, Notice, Progress, QuestionAdded, Queued, TextDelta, Transcribed, TurnDone, TurnEvent,
)
from .. import transfer
from .describe import (
    DESCRIBE_PREFERENCES, Describer, chosen_task, menu_words, task_choices, verbosity_choices,
)
from ..i18n import ENGLISH, I18N, LANGUAGE_NAMES, VOICE_STATE_ZH, language_of, say, t
from ..turn.session import ChatSession
from ..store import LOCAL_OWNER
from ..turn import Services, Speech, UserInput, edit_last, regenerate, submit, transcribe_recording
from ..users.accounts import exports_folder
from ..voice.loop import STATE_WORDS, VoiceLoop
from ..voice.websocket import VoiceLoops

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[2] / "assets"
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
    // The message box is named by its placeholder alone: Gradio does not tie its label to it.
    const box = document.querySelector("#message textarea");
    const boxName = document.querySelector('#message [data-testid="block-info"]')?.textContent.trim();
    if (box && boxName && box.getAttribute("aria-label") !== boxName) box.setAttribute("aria-label", boxName);
    // The empty spoken-answer player has an aria-label on an element without a role (not allowed).
    document.querySelectorAll("#speech .empty[aria-label]:not([role])").forEach((e) => e.removeAttribute("aria-label"));
    const describe = document.getElementById("describe-button");
    if (describe && !describe.hasAttribute("aria-keyshortcuts")) describe.setAttribute("aria-keyshortcuts", "Alt+Shift+D");
  };
  new MutationObserver(setup).observe(document.documentElement, {childList: true, subtree: true});
  // Escape stops the answer from anywhere on the page, for keyboard and screen-reader users;
  // Alt+Shift+D describes (by the key's place: on a Mac, Option+Shift+D types a letter).
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape") document.querySelector("#stop-button")?.click();
    // Up in the empty message box brings the last message back into it to be edited.
    const box = event.target.matches?.("#message textarea") ? event.target : null;
    if (box && !box.value && event.key === "ArrowUp" && !event.shiftKey && !event.altKey && !event.ctrlKey
        && !event.metaKey) {
      event.preventDefault();
      document.querySelector("#edit-last")?.click();
    }
    if (event.altKey && event.shiftKey && !event.ctrlKey && !event.metaKey && event.code === "KeyD") {
      event.preventDefault();
      document.querySelector("#describe-button")?.click();
    }
  });
  window.addEventListener("DOMContentLoaded", setup);
  // The interface language chosen in Settings ("auto": the browser's). Gradio picks its
  // words by the browser's language; changeLocale (exported by Gradio's core module) changes
  // them in place. The choice is kept in this browser, and told to the server in a cookie.
  window.mmchatLanguage = async (choice) => {
    localStorage.setItem("mmchat-language", choice || "auto");
    const language = choice && choice !== "auto" ? choice : (navigator.language || "en");
    document.cookie = "mmchat-language=" + encodeURIComponent(choice || "auto") + "; path=/; max-age=31536000; samesite=lax";
    document.documentElement.lang = language.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
    const core = performance.getEntriesByType("resource").map((e) => e.name).find((n) => /\/core-[^/]*\.js$/.test(n));
    if (core) (await import(core)).changeLocale(document.documentElement.lang);
  };
  const chosen = localStorage.getItem("mmchat-language");
  if (chosen && chosen !== "auto") {  // this script may run before or after the page's load event
    const apply = () => setTimeout(() => window.mmchatLanguage(chosen), 0);
    if (document.readyState === "complete") apply(); else window.addEventListener("load", apply);
  }
})();
</script>
"""

CSS = """
.mmchat-sr-only { position: absolute; width: 1px; height: 1px; padding: 0; margin: -1px;
  overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; border: 0; }
footer { display: none !important; }
#voice-preview { width: 100%; max-width: 360px; aspect-ratio: 4 / 3; background: #111; border-radius: 8px; }
#voice-state { font-weight: 600; min-height: 1.5em; }
/* The spoken answer's player plays in the page but is not shown: after an answer it reads
   "0:00 / 0:00" and its controls only duplicate Stop (Esc). */
#speech { position: absolute !important; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
#shortcuts { font-size: 0.85em; opacity: 0.9; }
/* The chat's corner holds only Gradio's bin (always drawn), a second New chat: the sidebar's is the one. */
#conversation .top-panel { display: none !important; }
#stop-button { max-width: 12em; }
/* The Describe button as tall as a menu, level with the menus beside it (not stretched to their labels). */
#describe-row { align-items: flex-end; }
#describe-button { flex-grow: 0; align-self: flex-end; min-height: 42px; }
/* Where the keyboard is must show on every control (WCAG 2.4.7): Gradio removes the outline from some. */
:focus-visible { outline: 3px solid #4338ca !important; outline-offset: 2px; }
/* Gradio's small icon buttons (Fullscreen, Download, Copy ...) are 18 px; a finger or a shaky hand needs 24 (2.5.8). */
.icon-button, a.download-link { min-width: 24px; min-height: 24px; }
/* A photo's Download is a button inside a link: the link is what downloads, so it takes the pointer
   (else the button hides it, and the link's own target is 1 px wide). */
a.download-link > .icon-button { pointer-events: none; }
"""

# Stop and New chat silence the spoken answer at once, before the server even hears of it.
SILENCE_JS = """() => { document.querySelectorAll("#speech audio").forEach((a) => a.pause()); }"""
# Voice mode in the page: the microphone (20 ms of 16-bit PCM at a time) and a camera frame
# a second go to the server over the voice socket (mmchat/voice/websocket.py, which says why
# not Gradio's streaming microphone); the server says what it hears. Barge-in stops the
# spoken answer here at once, before the server's stop reaches the model.
VOICE_JS = """
<script>
window.mmchatVoice = (() => {
  const BOTH = %s;
  const WORDS = new Proxy({}, {get: (_, state) =>
    (document.documentElement.lang.startsWith("zh") ? BOTH["zh-CN"] : BOTH.en)[state]});
  const TAP = "class Tap extends AudioWorkletProcessor { process(inputs) {" +
    " const channel = inputs[0][0]; if (channel) this.port.postMessage(channel.slice(0)); return true; } }" +
    " registerProcessor('mmchat-tap', Tap);";
  let socket = null, stream = null, context = null, frames = null;
  const show = (words) => { const state = document.getElementById("voice-state"); if (state) state.textContent = words; };
  const silence = () => document.querySelectorAll("#speech audio").forEach((a) => a.pause());
  const send = (kind, payload) => {
    if (!socket || socket.readyState !== WebSocket.OPEN) return;
    const message = new Uint8Array(1 + payload.byteLength);
    message[0] = kind;
    message.set(new Uint8Array(payload), 1);
    socket.send(message);
  };
  const media = async () => {
    const audio = {echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1};
    try {
      return await navigator.mediaDevices.getUserMedia({audio, video: {width: {ideal: 640}, height: {ideal: 480}}});
    } catch (error) {  // no camera (or no permission for it): voice alone still works
      return await navigator.mediaDevices.getUserMedia({audio});
    }
  };
  async function start(token) {
    stop();
    if (!token) return;
    if (!navigator.mediaDevices) {  // browsers give the microphone only to https pages and localhost
      show("Voice mode needs the page over https (or at http://127.0.0.1 on this computer) to use the microphone.");
      return;
    }
    try {
      stream = await media();
    } catch (error) {
      show("Voice mode needs the microphone: " + error.message);
      return;
    }
    context = new AudioContext({latencyHint: "interactive"});
    await context.resume();
    await context.audioWorklet.addModule(URL.createObjectURL(new Blob([TAP], {type: "application/javascript"})));
    const rate = context.sampleRate, size = Math.round(rate / 50);  // 20 ms
    const url = new URL("voice/" + token, document.baseURI);
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    socket = new WebSocket(url);
    socket.onopen = () => socket.send(JSON.stringify({type: "hello", sample_rate: rate}));
    socket.binaryType = "arraybuffer";
    socket.onmessage = (event) => {
      const heard = JSON.parse(event.data);
      show(WORDS[heard.state] || heard.state);
      if (heard.barged_in || heard.state === "hearing") silence();
      if (heard.turn !== null) document.querySelector("#voice-answer")?.click();
    };
    socket.onclose = (event) => { if (socket && event.target === socket) show("Voice mode is disconnected; turn it off and on again."); };
    const tap = new AudioWorkletNode(context, "mmchat-tap");
    const mute = context.createGain();
    mute.gain.value = 0;  // the tap must reach the output to be run; nothing is heard
    context.createMediaStreamSource(stream).connect(tap).connect(mute).connect(context.destination);
    let pending = new Float32Array(0);
    tap.port.onmessage = (event) => {
      const joined = new Float32Array(pending.length + event.data.length);
      joined.set(pending); joined.set(event.data, pending.length);
      pending = joined;
      while (pending.length >= size) {
        const pcm = new Int16Array(size);
        for (let i = 0; i < size; i++) pcm[i] = Math.max(-1, Math.min(1, pending[i])) * 32767;
        send(1, pcm.buffer);
        pending = pending.slice(size);
      }
    };
    const preview = document.getElementById("voice-preview");
    if (preview && stream.getVideoTracks().length) {
      preview.srcObject = stream;
      const canvas = document.createElement("canvas");
      frames = setInterval(() => {
        if (!preview.videoWidth) return;
        const scale = Math.min(1, 640 / preview.videoWidth);
        canvas.width = Math.round(preview.videoWidth * scale);
        canvas.height = Math.round(preview.videoHeight * scale);
        canvas.getContext("2d").drawImage(preview, 0, 0, canvas.width, canvas.height);
        canvas.toBlob((blob) => blob && blob.arrayBuffer().then((jpeg) => send(2, jpeg)), "image/jpeg", 0.85);
      }, 1000);
    }
    show(WORDS.listening);
  }
  function stop() {
    const closing = socket;
    socket = null;
    if (closing) closing.close();
    if (frames) clearInterval(frames);
    if (stream) stream.getTracks().forEach((track) => track.stop());
    if (context) context.close();
    stream = context = frames = null;
    const preview = document.getElementById("voice-preview");
    if (preview) preview.srcObject = null;
    show("");
  }
  return {start, stop};
})();
</script>
""" % json.dumps({"en": STATE_WORDS, "zh-CN": VOICE_STATE_ZH}, ensure_ascii=False)
# The camera's picture and voice mode's state (a live region: screen readers hear it change).
VOICE_PANEL = """
<div id="voice-view">
  <video id="voice-preview" autoplay muted playsinline aria-label="What the camera sees"></video>
  <p id="voice-state" role="status" aria-live="polite"></p>
</div>
"""
START_VOICE_JS = """(token) => { window.mmchatVoice.start(token); return []; }"""
SKIP = gr.skip()
STILL_LOADING = "The page is still starting; please try again in a moment."
EDIT_LABEL = t("edit_label")  # one object each: tests and handlers compare them
MESSAGE_LABEL = t("message")

# Ships with the repository, so a machine that cannot download the default model can still try the page.
TEST_MODEL = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "shapes-vlm"

# Announcements are numbered, and the number's change triggers them: the text's own change
# event would not fire for the same words twice (the same answer after Regenerate, the
# same refusal again), and a screen reader would hear nothing.
_announcements = itertools.count(1)
ANNOUNCE_JS = """(text) => { const live = document.getElementById("mmchat-live"); if (live) { live.textContent = ""; setTimeout(() => { live.textContent = text; }, 50); } return []; }"""


# Shown after an answer that did not finish.
ANSWER_MARKERS = {"interrupted": "stopped_marker", "error": "failed_marker"}  # keys of mmchat.i18n


def render(conversation: Conversation, answering: bool = False, waiting: str | None = None,
           language: str = ENGLISH) -> list[dict]:
    """The conversation as Gradio chat messages (one message per turn). `answering`:
    the last answer is still being written, so it gets no end-of-answer marker (the
    turn loop keeps it marked interrupted until it finishes, in case it never does).
    `waiting`: what the answer being written waits for, shown until its first words."""
    turns = conversation.turns
    return [_render_turn(turn, answering and i == len(turns) - 1, waiting, language) for i, turn in enumerate(turns)]


def _render_turn(turn: Turn, answering: bool = False, waiting: str | None = None, language: str = ENGLISH) -> dict:
    if turn.role == "assistant":
        text = turn.text
        if answering and not text and waiting:
            return {"role": "assistant", "content": f"*{waiting}*"}
        marker = None if answering or turn.status not in ANSWER_MARKERS else say(ANSWER_MARKERS[turn.status], language)
        if marker:
            text = (text + "\n\n" if text else "") + marker
        return {"role": "assistant", "content": text}
    content: list = [{"path": image.path, "alt_text": "your photo"} for image in turn.images]
    content += [{"path": p.path} for p in turn.parts if isinstance(p, AudioPart)]
    shown = _shown_text(turn, language)
    if shown:  # a describe-mode question shows its task's name, not its prompt
        content.append(shown)
    return {"role": "user", "content": content}


def _params(max_new_tokens: float, temperature: float) -> GenerationParams:
    return GenerationParams(max_new_tokens=int(max_new_tokens), temperature=float(temperature))


class ChatHandlers:
    """The page's event handlers, as plain methods so tests can call them directly.

    Every handler that runs a turn yields the same tuple of updates, in the order of
    `build_ui`'s `turn_outputs`: chat, message box, announcement, export file, editing
    flag, saved conversation id, reviewed recording, spoken audio, announcement number,
    timings, Stop button.
    """

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.open_store()  # the process's one store, in Services
        self.voice_loops = VoiceLoops(lambda session: VoiceLoop(session, services))
        self.describer = Describer(services, self.voice_loops)

    def new_session(self, request: gr.Request | None = None) -> ChatSession:
        """A session whose conversations are the logged-in user's (with --auth), else the local person's."""
        return ChatSession(self.store, owner=_owner(request))

    def _view(self, session: ChatSession, box=SKIP, announcement=SKIP, export=SKIP, reviewed=SKIP, speech=SKIP,
              answering=False, editing=False, waiting=None):
        number = next(_announcements) if isinstance(announcement, str) else SKIP
        export = export if export is SKIP else export_update(export)
        # Stop is there only while there is something to stop (its one control: see build_ui).
        return (render(session.conversation, answering, waiting, session.language), box, announcement, export, editing,
                session.conversation.id, reviewed, speech, number, timings_table(session.conversation),
                gr.update(visible=answering))

    def play(self, session: ChatSession, events: Iterator[TurnEvent], message: dict | None = None,
             progress: gr.Progress | None = None, editing: bool = False, keep_box: bool = False):
        """Drive a turn, yielding view updates for each of its events.

        `editing`: the turn edits the last message from the box in edit mode. The box
        leaves edit mode once the edit is under way (else the next Enter would send the
        edited words again as a new question) and stays in it when the edit is refused.
        `keep_box`: the question did not come from the box (Describe of an earlier photo),
        so what is typed there stays.

        An answer spoken by mmchat's voice is not announced to the screen reader as well:
        the two would talk at once.
        """
        left_edit_mode = not editing
        spoken = False
        reply = None  # this turn's answer, once it exists
        _cleared_box = (lambda: SKIP) if keep_box else _cleared
        for event in events:
            if isinstance(event, InputRejected):
                shown = _plain(event.message_in(session.language))
                gr.Warning(shown)
                restore = SKIP
                if message is not None:
                    restore = gr.update(value=message, label=EDIT_LABEL) if editing else gr.update(value=message)
                yield self._view(session, box=restore, announcement=shown, editing=editing)
                continue
            if not left_edit_mode:
                left_edit_mode = True
                yield self._view(session, box=_cleared_box(), answering=True)
            if isinstance(event, Transcribed):
                yield self._view(session, box=_cleared_box(), reviewed=None)
            elif isinstance(event, QuestionAdded):  # added with its reply, which is being written
                reply = session.conversation.turns[-1]
                yield self._view(session, box=_cleared_box(), reviewed=None, answering=True)
            elif isinstance(event, Progress):
                if progress is not None:
                    progress(event.fraction, desc=event.message)
            elif isinstance(event, Queued):  # others' answers go first: say how many, in the reply's place
                place = waiting_message(event.ahead, session.language)
                yield self._view(session, answering=True, waiting=place, announcement=place)
            elif isinstance(event, Notice):
                shown = _plain(event.message)
                gr.Info(shown)
                yield self._view(session, announcement=shown, answering=True)
            elif isinstance(event, TextDelta):
                reply = reply or session.conversation.turns[-1]
                yield self._view(session, answering=True)
            elif isinstance(event, AudioChunk):
                spoken = True
                yield self._view(session, speech=_pcm16(event), answering=True)
            elif isinstance(event, TurnDone):
                if event.status == "error":
                    gr.Warning(_plain(event.error))
                announcement = {
                    "complete": SKIP if spoken else event.text,  # heard already, in mmchat's voice
                    "interrupted": say("stopped", session.language) + ("" if spoken else " " + event.text),
                    "error": _plain(event.error or ""),
                }[event.status]
                # Replaced by a newer question (asked while this answer was written): the newest
                # answer is that turn's, still being written, not one to mark as stopped.
                turns = session.conversation.turns
                superseded = reply is not None and not (turns and turns[-1] is reply)
                yield self._view(session, announcement=announcement, export=self.export(session),
                                 answering=superseded)

    def export(self, session: ChatSession) -> str | None:
        """The conversation as a .zip (Markdown with the photos and recordings it links to,
        and the JSON that Import takes back), for the Export button."""
        if not session.conversation.turns:
            return None
        conversation = session.conversation
        path = exports_folder(self.store.root, session.owner) / f"mmchat-{conversation.id[:8]}.zip"
        summary = self.store.summary(conversation.id, session.owner)
        details = transfer.Details() if summary is None else transfer.Details(
            summary.title if summary.custom_title else None, summary.created, summary.updated)
        try:
            transfer.write_export(conversation, path, details)
        except OSError as exc:  # e.g. a full disk: no Export file this time; the turn's own notice says why
            log.warning("could not write the export %s: %s", path, exc)
            path.unlink(missing_ok=True)
            return None
        return str(path)

    def on_submit(self, session: ChatSession, message: dict, editing: bool, reviewed_audio: str | None,
                  max_new_tokens, temperature, speak: bool, voice: str, rate, progress=gr.Progress()):
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        message = message or {"text": "", "files": []}
        text = message.get("text", "") or ""
        params, speech = _params(max_new_tokens, temperature), _speech(speak, voice, rate)
        files = [f if isinstance(f, str) else f["path"] for f in message.get("files", [])]
        images = tuple(f for f in files if not _is_audio(f))
        recordings = [f for f in files if _is_audio(f)]
        audio = recordings[0] if recordings else None
        if len(recordings) > 1 and not editing:
            # A turn takes one recording; a second one would be dropped without a word.
            events = iter([InputRejected(say("one_recording", session.language, count=len(recordings)))])
        elif editing:
            if files:
                gr.Info(say("no_files_in_edit", session.language))
            events = edit_last(session, text, self.services, params, speech)
        elif audio and audio == reviewed_audio:  # the user has read and maybe corrected the transcript
            events = submit(session, UserInput("", images, audio, audio_transcript=text), self.services, params, speech)
        elif audio and self.services.config.edit_transcript and not text.strip():
            yield from self._transcript_for_review(session, message, audio, progress)
            return
        else:
            events = submit(session, UserInput(text, images, audio), self.services, params, speech)
        yield from self.play(session, events, message, progress, editing=editing)

    def _transcript_for_review(self, session: ChatSession, message: dict, audio: str, progress):
        """Put the recording's words in the message box to be checked before sending."""
        try:
            transcript = _run_showing_progress(
                transcribe_recording(audio, self.services, session.begin_turn()), progress)
        except UserFacingError as exc:
            shown = _plain(exc.message_in(session.language))
            gr.Warning(shown)
            yield self._view(session, announcement=shown)
            return
        if transcript is None:  # stopped while transcribing
            return
        box = gr.update(value={"text": transcript.text.strip(), "files": message.get("files", [])})
        yield self._view(session, box=box, announcement=say("check_words", session.language), reviewed=audio)

    def on_describe(self, session: ChatSession, message: dict, task_name: str, verbosity: str,
                    max_new_tokens, temperature, speak: bool, voice: str, rate):
        """Describe (button or shortcut): the chosen task about the box's photos, the camera's
        view (voice mode) or the conversation's last photo (mmchat/describe.py)."""
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        message = message or {"text": "", "files": []}
        files = [f if isinstance(f, str) else f["path"] for f in message.get("files", [])]
        photos = [f for f in files if not _is_audio(f)]
        task = chosen_task(task_name, verbosity)
        params, speech = _params(max_new_tokens, temperature), _speech(speak, voice, rate)
        events = self.describer.events(session, task, photos, params, speech)
        yield from self.play(session, events, message if photos else None, keep_box=not photos)

    def on_language(self, session: ChatSession | None, choice: str, task: str, verbosity: str,
                    request: gr.Request = None):
        """Settings → Language: the server's messages follow (the page's labels change in the browser)."""
        if session is None:
            return SKIP, SKIP, SKIP, SKIP
        code = language_code(choice)
        session.language = language_of(code) if code != "auto" else page_language(request, cookie=False)
        return render(session.conversation, language=session.language), *menus(session.language, task, verbosity,
                                                                                 choice)

    def on_page_menus(self, saved_language, request: gr.Request = None):
        """The menus in the page's language as it loads (their words are made here: see
        describe.task_choices), with the task and detail this person last chose, on any
        browser, and the language chosen in this one."""
        owner = _owner(request)
        task, verbosity = (self.store.preference(owner, key) for key in DESCRIBE_PREFERENCES)
        return menus(page_language(request), task, verbosity, saved_language)

    def on_describe_choice(self, task: str, verbosity: str, request: gr.Request = None) -> None:
        """Describe mode's task or detail changed: kept for this person (per user with --auth)."""
        chosen = chosen_task(task, verbosity)
        owner = _owner(request)
        for key, value in zip(DESCRIBE_PREFERENCES, (chosen.preset.name, chosen.verbosity.value)):
            self.store.set_preference(owner, key, value)

    def on_verbosity(self, session: ChatSession | None, verbosity: str) -> None:
        """Voice mode's spoken tasks follow the chosen verbosity at once."""
        loop = self.voice_loops.get(session) if session is not None else None
        if loop is not None:
            loop.verbosity = chosen_task(None, verbosity).verbosity

    def on_regenerate(self, session: ChatSession, max_new_tokens, temperature, speak, voice, rate):
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        params, speech = _params(max_new_tokens, temperature), _speech(speak, voice, rate)
        yield from self.play(session, regenerate(session, self.services, params, speech))

    def on_chat_edit(self, session: ChatSession, editing: bool, max_new_tokens, temperature, speak, voice, rate,
                     edit: gr.EditData):
        """An edit made in the chat itself; `editing`: the box was in edit mode too, and leaves it."""
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        if edit.index != session.conversation.last_user_index():
            gr.Warning(say("only_last_edit", session.language))
            yield self._view(session, editing=editing)
            return
        text = edit.value if isinstance(edit.value, str) else _text_of(edit.value)
        params, speech = _params(max_new_tokens, temperature), _speech(speak, voice, rate)
        yield from self.play(session, edit_last(session, text, self.services, params, speech), editing=editing)

    def on_edit_button(self, session: ChatSession):
        index = session.conversation.last_user_index()
        if index is None:
            gr.Warning(say("nothing_to_edit", session.language))
            return SKIP, False
        text = session.conversation.turns[index].text
        return gr.update(value={"text": text, "files": []}, label=EDIT_LABEL), True

    def on_stop(self, session: ChatSession):
        session.cancel_scope.cancel()

    def on_new_chat(self, session: ChatSession):
        session.new_chat()
        return self._view(session, box=_cleared(), announcement=say("new_chat_started", session.language),
                          export=None, reviewed=None)

    def on_load(self, conversation_id: str, request: gr.Request = None):
        """A session for this browser, with the conversation it had open (reloads, restarts);
        another user's conversation id opens a new chat."""
        session = self.new_session(request)
        session.language = page_language(request)
        restored = self.store.load(conversation_id, session.owner) if conversation_id else None
        if restored is not None:
            session.conversation = restored
        return (session, render(session.conversation, language=session.language), session.conversation.id,
                export_update(self.export(session)), timings_table(session.conversation))

    def on_close(self, session: ChatSession | None) -> None:
        """The browser tab is gone: stop its answer and its voice mode."""
        if session is None:
            return
        session.cancel_scope.cancel()
        self.voice_loops.close(session)

    # --- voice mode ---

    def on_voice_mode(self, session: ChatSession | None, on: bool):
        """Voice mode on: the panel, and the token the page's script opens the voice socket
        with; off: the script stops, and a question half said is forgotten."""
        if session is None:
            gr.Warning(STILL_LOADING)
            return gr.update(value=False), gr.update(visible=False), "", SKIP
        if not on:
            loop = self.voice_loops.get(session)
            if loop is not None:
                loop.stop_listening()
            return SKIP, gr.update(visible=False), "", SKIP
        try:
            token = self.voice_loops.open(session)
        except UserFacingError as exc:  # speech recognition could not be loaded
            gr.Warning(_plain(exc.message_in(session.language)))
            return gr.update(value=False), gr.update(visible=False), "", SKIP
        return SKIP, gr.update(visible=True), token, gr.update(visible=self.services.tts is not None)

    def on_voice_turn(self, session: ChatSession | None, max_new_tokens, temperature, voice, rate):
        """Answer, aloud, the question the microphone heard (the page's script asks when the socket says one ended)."""
        loop = self.voice_loops.get(session) if session is not None else None
        number = loop.next_turn() if loop is not None else None
        if number is None:  # dropped meanwhile (barge-in, voice mode off)
            return
        params = _params(max_new_tokens, temperature)
        speech = Speech(voice or "auto", float(rate)) if self.services.tts is not None else None
        yield from self.play(session, loop.answer(number, params, speech))

    def model_status(self, request: gr.Request = None):
        status = self.services.engine.status
        if status.error:
            hint = bundled_model_hint(self.services.config)
            text = f"⚠️ **{say('model_unavailable', page_language(request))}** {status.error}" + (f"\n\n{hint}" if hint else "")
            return text, gr.Timer(active=False)
        if status.ready:
            name = model_title(self.services.engine.wait().name)
            return say("model_ready", page_language(request), name=name), gr.Timer(active=False)
        percent = "" if status.fraction is None else f" ({status.fraction:.0%})"
        return f"⏳ {status.message}{percent}", gr.Timer(active=True)


LOG_OUT_JS = "() => fetch('/logout', {method: 'POST'}).finally(() => { window.location.href = '/login'; })"


def build_ui(services: Services, handlers: ChatHandlers | None = None) -> gr.Blocks:
    """The page; `handlers`: its event handlers, when the caller (a test) wants to drive them too."""
    config = services.config
    handlers = handlers or ChatHandlers(services)

    from .sidebar import SidebarHandlers, build_sidebar, connect  # it builds on this module's handlers

    with gr.Blocks(title="mmchat", fill_height=True) as demo:
        sidebar = build_sidebar()  # New chat, the conversations, rename, delete, import
        # Filled by on_load: Gradio deep-copies initial state values, and a session holds locks.
        session_state = gr.State(None, delete_callback=handlers.on_close)
        saved_id = gr.BrowserState("", storage_key="mmchat-conversation-id")
        editing = gr.State(False)
        reviewed_audio = gr.State(None)  # the recording whose transcript is in the box

        gr.Markdown(t("tagline"))  # the page's one h1
        status = gr.Markdown("⏳ Starting…", elem_id="model-status", container=False)
        if config.auth:  # the gate's log-out is a POST (a plain link, any site could make); see mmchat/users
            gr.Button(t("log_out"), size="sm", elem_id="log-out").click(None, js=LOG_OUT_JS)
        chatbot = gr.Chatbot(
            label=t("conversation"),
            elem_id="conversation",
            editable="user",
            height="60vh",
            min_height=280,
            placeholder=t("chat_placeholder"),
            feedback_options=None,
            buttons=["copy"],
            autoscroll=True,
        )
        speech_output = gr.Audio(
            label=t("spoken_answer"), elem_id="speech", streaming=True, autoplay=True,
            interactive=False, visible=services.tts is not None and config.speak_answers,
        )
        textbox = gr.MultimodalTextbox(
            label=MESSAGE_LABEL,
            elem_id="message",
            placeholder=t("message_placeholder"),  # short: a longer one wraps to lines on a phone
            file_types=["image", "audio"] if services.stt is not None else ["image"],
            file_count="multiple",
            sources=["upload", "microphone"] if services.stt is not None else ["upload"],
            max_plain_text_length=max(config.max_text_chars * 10, 100_000),
            autofocus=True,
            stop_btn=False,  # one Stop for every answer (typed, described, spoken): the button below
        )
        # Shown only while an answer is being written (ChatHandlers._view); Esc presses it.
        stop_button = gr.Button(t("stop"), variant="stop", size="sm", visible=False, elem_id="stop-button")
        gr.Markdown(t("shortcut_line"),
                    elem_id="shortcuts", container=False)
        # Describe mode: one key or button, about the box's photo, the camera or the last photo.
        with gr.Row(elem_id="describe-row"):
            describe_button = gr.Button(t("describe_button"), variant="primary", size="sm", min_width=170,
                                        elem_id="describe-button")
            task = gr.Dropdown(task_choices(), value=task_choices()[0], label=t("task"), elem_id="describe-task",
                               min_width=200)
            # Menus, not radio buttons: their words change with the page's language, and Gradio
            # 6.31's radio then sends back a choice's words instead of its value.
            verbosity = gr.Dropdown(verbosity_choices(), value=verbosity_choices()[0], label=t("detail"),
                                    elem_id="describe-verbosity", min_width=160)
        # One control per action: Regenerate and Edit are the chat's own retry and pencil icons,
        # New chat and Export are in the sidebar. The box's edit mode is the Up arrow in an
        # empty box (the page script presses this hidden button).
        edit_button = gr.Button(t("edit_last"), visible="hidden", elem_id="edit-last")
        export_button = sidebar.export
        voice_mode = gr.Checkbox(
            value=False, label=t("voice_mode"), elem_id="voice-mode",
            interactive=services.stt is not None,
            info=None if services.stt is not None else t("voice_needs_stt"),
        )
        with gr.Row(visible=False, elem_id="voice-panel") as voice_panel:
            gr.HTML(VOICE_PANEL, padding=False)
            gr.Markdown(t("voice_help"))
        voice_token = gr.Textbox(visible="hidden", elem_id="voice-token", label="Voice connection")
        voice_answer = gr.Button("Answer the spoken question", visible="hidden", elem_id="voice-answer")
        gr.Examples(
            examples=[[{"text": text, "files": [str(ASSETS / photo)]}] for text, photo in EXAMPLES],
            inputs=[textbox],
            label=t("examples"),
        )
        with gr.Accordion(t("timings"), open=False):
            timings = gr.Markdown(elem_id="timings")
        with gr.Accordion(t("settings"), open=False):
            # Down to the configured value, which may be below the slider's usual range (--max-new-tokens 8).
            max_tokens = gr.Slider(min(16, config.max_new_tokens), 4096, value=config.max_new_tokens, step=16,
                                   label=t("longest_answer"))
            temperature = gr.Slider(0.0, 1.5, value=config.temperature, step=0.05,
                                    label=t("temperature"))
            speak = gr.Checkbox(value=config.speak_answers, label=t("speak"), info=t("speak_info"),
                                interactive=services.tts is not None)
            voice = gr.Dropdown(voice_choices(config), value=config.voice, label=t("voice"),
                                elem_id="voice-menu", interactive=services.tts is not None)
            rate = gr.Slider(0.5, 2.0, value=config.speech_rate, step=0.05, label=t("speaking_rate"),
                             interactive=services.tts is not None)
            language = gr.Dropdown(language_choices(ENGLISH), value=language_choices(ENGLISH)[0], label=t("language"),
                                   elem_id="language")
        language_choice = gr.BrowserState("auto", storage_key="mmchat-language-choice")
        announcer = gr.Textbox(visible="hidden", elem_id="mmchat-announcement", label="Last announcement")
        announcement_number = gr.Number(0, visible="hidden", label="Announcements made", precision=0)
        timer = gr.Timer(1.0)

        timer.tick(handlers.model_status, outputs=[status, timer], show_progress="hidden")
        loaded = demo.load(handlers.on_load, inputs=[saved_id],
                  outputs=[session_state, chatbot, saved_id, export_button, timings])
        demo.load(handlers.model_status, outputs=[status, timer], show_progress="hidden")

        turn_outputs = [chatbot, textbox, announcer, export_button, editing, saved_id, reviewed_audio, speech_output,
                        announcement_number, timings, stop_button]
        # Gradio runs every answer at once and lets a question in while one streams:
        # the turn layer's admission line (shared with the API) bounds the answers
        # being generated, and a new turn in a session stops the one running there.
        answer = dict(outputs=turn_outputs, concurrency_limit=None, trigger_mode="multiple")
        settings = [max_tokens, temperature, speak, voice, rate]
        textbox.submit(handlers.on_submit, inputs=[session_state, textbox, editing, reviewed_audio, *settings],
                       show_progress="minimal", **answer)
        chatbot.retry(handlers.on_regenerate, inputs=[session_state, *settings], **answer)
        chatbot.edit(handlers.on_chat_edit, inputs=[session_state, editing, *settings], **answer)
        stop_button.click(handlers.on_stop, inputs=[session_state], queue=False, js=SILENCE_JS)
        edit_button.click(handlers.on_edit_button, inputs=[session_state], outputs=[textbox, editing])
        speak.change(lambda on: gr.update(visible=on), inputs=[speak], outputs=[speech_output])
        announcement_number.change(None, inputs=[announcer], js=ANNOUNCE_JS)
        connect(sidebar, SidebarHandlers(handlers), session_state=session_state, turn_outputs=turn_outputs,
                loaded=loaded, announcer=announcer, announcement_number=announcement_number, editing=editing)

        voice_mode.change(handlers.on_voice_mode, inputs=[session_state, voice_mode],
                          outputs=[voice_mode, voice_panel, voice_token, speech_output]).then(
            handlers.on_verbosity, inputs=[session_state, verbosity], show_progress="hidden")
        voice_token.change(None, inputs=[voice_token], js=START_VOICE_JS)

        # The page's words change in the browser at once (a js of its own: one that returns
        # nothing in an event with a function would take the place of its inputs).
        language.input(None, inputs=[language], js="(entry) => { window.mmchatLanguage(%s[entry] || 'auto'); }"
                       % json.dumps({name: code for code, name in LANGUAGE_NAMES.items()}, ensure_ascii=False))
        language.input(language_code, inputs=[language], outputs=[language_choice], show_progress="hidden")
        language.input(handlers.on_language, inputs=[session_state, language, task, verbosity],
                       outputs=[chatbot, task, verbosity, language], show_progress="hidden")
        # The menus in the page's language, with this person's last choices.
        demo.load(handlers.on_page_menus, inputs=[language_choice], outputs=[task, verbosity, language],
                  show_progress="hidden")
        for choice in (task, verbosity):  # remembered for the next visit, from any browser
            choice.input(handlers.on_describe_choice, inputs=[task, verbosity], show_progress="hidden")
        verbosity.input(handlers.on_verbosity, inputs=[session_state, verbosity], show_progress="hidden")
        describe_button.click(handlers.on_describe, inputs=[session_state, textbox, task, verbosity, *settings],
                              **answer)
        voice_answer.click(handlers.on_voice_turn, inputs=[session_state, max_tokens, temperature, voice, rate],
                           show_progress="hidden", **answer)
    demo.mmchat_voice = handlers.voice_loops  # the server routes the voice socket to these
    return demo


def _owner(request: gr.Request | None) -> str:
    """Whose conversations and preferences these are: the logged-in user (--auth), else the local person."""
    return (getattr(request, "username", None) if request is not None else None) or LOCAL_OWNER


def export_update(path: str | None):
    """The Export button with the conversation's file; not pressable while there is nothing to export."""
    return gr.update(value=path, interactive=path is not None)


def language_choices(language: str) -> list[str]:
    """The language menu's entries (their own values, as describe.task_choices says why)."""
    return [say("language_auto", language), *LANGUAGE_NAMES.values()]


def language_code(entry: str | None) -> str:
    """"auto" or a language code, for the language menu's entry (in either language) or a code."""
    codes = {name: code for code, name in LANGUAGE_NAMES.items()}
    return codes.get(entry or "", entry if entry in LANGUAGE_NAMES else "auto")


def menus(language: str, task: str, verbosity: str, chosen_language: str) -> tuple:
    """The task, detail and language menus in `language`, each keeping its choice (Gradio
    6.31 loses a menu's value when its choices change without it)."""
    task_words, verbosity_words = menu_words(chosen_task(task, verbosity), language)
    code = language_code(chosen_language)
    language_words = say("language_auto", language) if code == "auto" else LANGUAGE_NAMES[code]
    return (gr.update(choices=task_choices(language), value=task_words),
            gr.update(choices=verbosity_choices(language), value=verbosity_words),
            gr.update(choices=language_choices(language), value=language_words))


def page_language(request: gr.Request | None, cookie: bool = True) -> str:
    """The page's language: the one chosen in Settings (a cookie the page script sets), else the browser's."""
    if request is None:
        return ENGLISH
    chosen = (request.cookies.get("mmchat-language") if cookie and hasattr(request, "cookies") else None) or "auto"
    if chosen != "auto":
        return language_of(chosen)
    headers = getattr(request, "headers", None) or {}  # none on a request made in code
    return language_of((headers.get("accept-language") or "").split(",")[0].strip())


def _shown_text(turn: Turn, language: str) -> str:
    """A question's words as the chat shows them: a describe-mode task by its name in `language`."""
    from ..presets import Task, Verbosity

    pieces = []
    for part in turn.parts:
        task = Task.from_tag(part.preset) if isinstance(part, TextPart) and part.preset else None
        if task is not None:
            name = say(f"preset_{task.preset.name}", language)
            detail = task.preset.prompt is not None and task.verbosity is not Verbosity.NORMAL
            pieces.append(f"{name} ({say(task.verbosity.value, language).lower()})" if detail else name)
        elif isinstance(part, TextPart):
            pieces.append(part.text)
        elif isinstance(part, AudioPart) and part.transcript:
            pieces.append(part.transcript)
    return "\n".join(p for p in pieces if p)


def model_title(name: str) -> str:
    """A model as people call it: a folder's name rather than its whole path
    ("shapes-vlm", not "/home/me/models/shapes-vlm"); a hub id ("Qwen/Qwen3-VL-4B-Instruct") as it is."""
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        return path.name or name
    return name


def voice_choices(config) -> list[str]:
    """'auto' and the voices installed: the bundled one and those in the voices folder."""
    names = ["auto"]
    if config.tts_backend == "none":  # the menu is disabled; no voice package is needed to start
        return names if config.voice in names else [*names, config.voice]
    from ..tts.voices import installed_voices, voices_dir

    names += [v.name for v in installed_voices(voices_dir(config)) if v.name not in names]
    if config.voice not in names:
        names.append(config.voice)
    return names


def bundled_model_hint(config) -> str | None:
    """How to try the app at once with the test model that ships with it (Markdown; None when it can't help)."""
    if config.engine == "remote":  # the fix is the server's, not a local model
        return None
    if not TEST_MODEL.is_dir() or Path(config.model).expanduser().resolve() == TEST_MODEL:
        return None

    def shown(path: Path) -> Path:  # as typed from where the app was started
        try:
            return path.relative_to(Path.cwd())
        except ValueError:
            return path

    app = shown(TEST_MODEL.parents[2] / "app.py")
    return (
        f"To try mmchat right now, start it with the tiny test model that comes with it: "
        f"`python {app} --model {shown(TEST_MODEL)}`. It knows only drawn shapes (circle, square, triangle, star): "
        "their colour, how many there are and where they are, and a few printed words (CAT, STOP, 42, ...), "
        "in English and Chinese, and answers in a word. Show it a picture of one to four shapes of one colour "
        "on a plain background and ask \"What colour is the shape?\", \"How many shapes are there?\" or "
        "\"What is written in the image?\"."
    )


STAGE_NAMES = {"transcript": "transcript", "first_token": "first token", "first_audio": "first audio",
               "done": "answer done"}


def timings_table(conversation: Conversation) -> str:
    """Each answer's stages (Markdown): seconds from the end of the question (for a spoken
    one, the end of the speech) to its transcript, first token, first audio, and end."""
    rows = []
    for index, turn in enumerate(conversation.turns):
        if turn.role != "assistant" or not turn.timings or index == 0:
            continue
        question = conversation.turns[index - 1].text.replace("\n", " ").replace("|", "/")
        question = question if len(question) <= 40 else question[:39] + "…"
        cells = [f"{turn.timings[stage]:.2f} s" if stage in turn.timings else "–" for stage in STAGE_NAMES]
        rows.append(f"| {len(rows) + 1} | {question} | " + " | ".join(cells) + " |")
    if not rows:
        return "Each answer's timings appear here."
    header = "| # | question | " + " | ".join(STAGE_NAMES.values()) + " |\n|" + " --- |" * (len(STAGE_NAMES) + 2)
    return ("Seconds from the end of each question (for a spoken one, the end of your speech):\n\n"
            + header + "\n" + "\n".join(rows))


def waiting_message(ahead: int, language: str = ENGLISH) -> str:
    return say("waiting_one", language) if ahead == 1 else say("waiting_many", language, count=ahead)


def _cleared():
    """The message box emptied and out of edit mode (a fresh update each time: Gradio may change the one it gets)."""
    return gr.update(value=None, label=MESSAGE_LABEL)


def _plain(message: str) -> str:
    """A message for a toast or a screen reader, which show Markdown's backticks as they are."""
    return message.replace("`", "")


def _speech(speak: bool, voice: str, rate) -> Speech | None:
    return Speech(voice or "auto", float(rate)) if speak else None


def _pcm16(chunk: AudioChunk) -> tuple[int, np.ndarray]:
    """What a streaming gr.Audio plays: (sample rate, 16-bit samples)."""
    return chunk.sample_rate, (np.clip(chunk.samples, -1.0, 1.0) * 32767).astype(np.int16)


def _run_showing_progress(events, progress):
    """Run a generator of Progress events to its return value, showing them on `progress`."""
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            return done.value
        if isinstance(event, Progress) and progress is not None:
            progress(event.fraction, desc=event.message)


def _is_audio(path: str) -> bool:
    return Path(path).suffix.lower() in {".wav", ".webm", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".opus", ".aac"}


def _text_of(value) -> str:
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return value.get("text", "")
    return str(value or "")


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
        max_file_size=int(config.max_upload_mb * 1_000_000),
        head=HEAD + VOICE_JS,
        css=CSS,
        i18n=I18N,
        theme=page_theme(),
    )

