"""The chat's handlers: a message becomes a turn, the turn's events become views.

Each browser session gets its own `ChatSession` in `gr.State`; the models are shared
through `Services`. Every handler that changes the conversation yields `TurnView`s
(view.py); `play` renders any turn's events, typed, described or spoken, the same way.
The handlers are plain methods so tests can call them directly.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator

import gradio as gr
import numpy as np

from .. import transfer
from ..engine import GenerationParams
from ..errors import UserFacingError
from ..events import (
    AudioChunk, InputRejected, Notice, Progress, QuestionAdded, Queued, TextDelta, Transcribed, TurnDone, TurnEvent,
)
from ..i18n import say
from ..media.video import VIDEO_SUFFIXES, has_pictures, is_clip_name
from ..store.schema import title_from
from ..turn import Services, Speech, UserInput, edit_last, regenerate, show_version, submit, transcribe_recording
from ..turn.session import ChatSession
from ..users.accounts import exports_folder
from .request import owner_of, page_language
from .view import (
    EDIT_LABEL, SKIP, STILL_LOADING, VERSION_OPTION, TurnView, cleared_box, export_update, plain, render, timings_table,
    turn_view, waiting_message,
)

log = logging.getLogger(__name__)

AUDIO_SUFFIXES = {".wav", ".webm", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".opus", ".aac"}
# What the box takes as a photo; a file with no suffix is tried as one (its decoder says if not).
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".heif",
                  ".avif", ""}


def generation_params(max_new_tokens: float, temperature: float) -> GenerationParams:
    return GenerationParams(max_new_tokens=int(max_new_tokens), temperature=float(temperature))


def speech_setting(speak: bool, voice: str, rate) -> Speech | None:
    return Speech(voice or "auto", float(rate)) if speak else None


def files_of(message: dict) -> list[str]:
    """The paths of a message box value's files."""
    return [f if isinstance(f, str) else f["path"] for f in message.get("files", [])]


def is_clip(path: str) -> bool:
    """A video clip (an animated GIF too); a .webm or .mp4 of sound only is a recording."""
    return is_clip_name(path) and has_pictures(path)


def sorted_files(files: list[str]) -> tuple[tuple[str, ...], tuple[str, ...], list[str]]:
    """A message's files as (photos, clips, recordings), each in the order given; each file
    named as a clip is probed once (is_clip), whatever else it is."""
    clips = tuple(f for f in files if is_clip(f))
    recordings = [f for f in files if f not in clips and Path(f).suffix.lower() in AUDIO_SUFFIXES]
    photos = tuple(f for f in files if f not in clips and f not in recordings)
    return photos, clips, recordings


def refused_files(files: list[str], hears: bool) -> list[str]:
    """The names of the files the box can't take yet (a PDF): the page takes any file, so that
    it is refused here in mmchat's words rather than in Gradio's ("Invalid file type")."""
    taken = PHOTO_SUFFIXES | VIDEO_SUFFIXES | (AUDIO_SUFFIXES if hears else set())
    return [Path(f).name for f in files if Path(f).suffix.lower() not in taken]


class ChatHandlers:
    """Asking, answering again, editing, stopping, a new chat, opening the page, exporting."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.open_store()  # the process's one store, in Services

    def new_session(self, request: gr.Request | None = None) -> ChatSession:
        """A session whose conversations are the logged-in user's (with --auth), else the local person's."""
        return ChatSession(self.store, owner=owner_of(request))

    def play(self, session: ChatSession, events: Iterator[TurnEvent], message: dict | None = None,
             progress: gr.Progress | None = None, editing: bool = False, keep_box: bool = False
             ) -> Iterator[TurnView]:
        """Drive a turn, yielding the page's view after each of its events.

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
        box_after = (lambda: SKIP) if keep_box else cleared_box
        for event in events:
            if isinstance(event, InputRejected):
                yield self._refused(session, event, message, editing)
                continue
            if not left_edit_mode:
                left_edit_mode = True
                yield turn_view(session, box=box_after(), answering=True)
            if isinstance(event, Transcribed):
                yield turn_view(session, box=box_after(), reviewed=None)
            elif isinstance(event, QuestionAdded):  # added with its reply, which is being written
                reply = session.conversation.turns[-1]
                yield turn_view(session, box=box_after(), reviewed=None, answering=True)
            elif isinstance(event, Progress):
                if progress is not None:
                    progress(event.fraction, desc=event.message)
            elif isinstance(event, Queued):  # others' answers go first: say how many, in the reply's place
                place = waiting_message(event.ahead, session.language)
                yield turn_view(session, answering=True, waiting=place, announcement=place)
            elif isinstance(event, Notice):
                shown = plain(event.message)
                gr.Info(shown)
                yield turn_view(session, announcement=shown, answering=True)
            elif isinstance(event, TextDelta):
                reply = reply or session.conversation.turns[-1]
                yield turn_view(session, answering=True)
            elif isinstance(event, AudioChunk):
                spoken = True
                yield turn_view(session, speech=pcm16(event), answering=True)
            elif isinstance(event, TurnDone):
                yield self._done(session, event, reply, spoken)

    def _refused(self, session: ChatSession, event: InputRejected, message: dict | None, editing: bool) -> TurnView:
        """The refusal said (a warning and an announcement); the message put back in the box."""
        shown = plain(event.message_in(session.language))
        gr.Warning(shown)
        restore = SKIP
        if message is not None:
            restore = gr.update(value=message, label=EDIT_LABEL) if editing else gr.update(value=message)
        return turn_view(session, box=restore, announcement=shown, editing=editing)

    def _done(self, session: ChatSession, event: TurnDone, reply, spoken: bool) -> TurnView:
        if event.status == "error":
            gr.Warning(plain(event.error))
        announcement = {
            "complete": SKIP if spoken else event.text,  # heard already, in mmchat's voice
            "interrupted": say("stopped", session.language) + ("" if spoken else " " + event.text),
            "error": plain(event.error or ""),
        }[event.status]
        # Replaced by a newer question (asked while this answer was written): the newest
        # answer is that turn's, still being written, not one to mark as stopped.
        turns = session.conversation.turns
        superseded = reply is not None and not (turns and turns[-1] is reply)
        return turn_view(session, announcement=announcement, export=bool(turns), answering=superseded)

    # --- asking ---

    def on_submit(self, session: ChatSession, message: dict, editing: bool, reviewed_audio: str | None,
                  max_new_tokens, temperature, speak: bool, voice: str, rate, progress=gr.Progress()):
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        message = message or {"text": "", "files": []}
        text = message.get("text", "") or ""
        params, speech = generation_params(max_new_tokens, temperature), speech_setting(speak, voice, rate)
        files = files_of(message)
        images, clips, recordings = sorted_files(files)
        audio = recordings[0] if recordings else None
        refused = refused_files(files, hears=self.services.stt is not None)
        if not text.strip() and not files and not editing:
            # Nothing to ask (Enter in a box the first Enter's answer has just emptied): said here,
            # before the turn layer, where a new turn would stop the answer being written.
            events = iter([InputRejected("Please type or say a question.", "no_question")])
        elif refused:  # the question stays in the box, to be sent without them
            key = "unsupported_files" if self.services.stt is not None else "unsupported_files_photos"
            events = iter([InputRejected(say(key, session.language, names=", ".join(refused)))])
        elif len(recordings) > 1 and not editing:
            # A turn takes one recording; a second one would be dropped without a word.
            events = iter([InputRejected(say("one_recording", session.language, count=len(recordings)))])
        elif editing:
            if files:
                gr.Info(say("no_files_in_edit", session.language))
            events = edit_last(session, text, self.services, params, speech)
        elif audio and audio == reviewed_audio:  # the user has read and maybe corrected the transcript
            events = submit(session, UserInput("", images, audio, audio_transcript=text, videos=clips), self.services, params,
                            speech)
        elif audio and self.services.config.edit_transcript and not text.strip():
            yield from self._transcript_for_review(session, message, audio, progress)
            return
        else:
            events = submit(session, UserInput(text, images, audio, videos=clips), self.services, params, speech)
        yield from self.play(session, events, message, progress, editing=editing)

    def _transcript_for_review(self, session: ChatSession, message: dict, audio: str, progress):
        """Put the recording's words in the message box to be checked before sending."""
        try:
            transcript = run_showing_progress(transcribe_recording(audio, self.services, session.begin_turn()),
                                              progress)
        except UserFacingError as exc:
            shown = plain(exc.message_in(session.language))
            gr.Warning(shown)
            yield turn_view(session, announcement=shown)
            return
        if transcript is None:  # stopped while transcribing
            return
        box = gr.update(value={"text": transcript.text.strip(), "files": message.get("files", [])})
        yield turn_view(session, box=box, announcement=say("check_words", session.language), reviewed=audio)

    def on_regenerate(self, session: ChatSession, max_new_tokens, temperature, speak, voice, rate):
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        params, speech = generation_params(max_new_tokens, temperature), speech_setting(speak, voice, rate)
        yield from self.play(session, regenerate(session, self.services, params, speech))

    def on_version(self, session: ChatSession, chosen: gr.SelectData) -> tuple:
        """An option under the last answer ("‹ Answer 1 of 2"): that version is shown, and is
        what the model is given from now on. Returns the turn view's outputs."""
        if session is None:
            raise gr.Error(STILL_LOADING)
        value = str(getattr(chosen, "value", "") or "")
        number = value.removeprefix(VERSION_OPTION)
        if not (value.startswith(VERSION_OPTION) and number.isdigit() and show_version(session, int(number))):
            message = say("version_busy", session.language)
            gr.Warning(message)
            return turn_view(session, announcement=message).outputs()
        answer = session.conversation.turns[-1]
        return turn_view(session, announcement=say("version_shown", session.language, number=answer.version + 1,
                                                  count=len(answer.other_versions) + 1)).outputs()

    def on_chat_edit(self, session: ChatSession, editing: bool, max_new_tokens, temperature, speak, voice, rate,
                     edit: gr.EditData):
        """An edit made in the chat itself; `editing`: the box was in edit mode too, and leaves it."""
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        if edit.index != session.conversation.last_user_index():
            gr.Warning(say("only_last_edit", session.language))
            yield turn_view(session, editing=editing)
            return
        text = edit.value if isinstance(edit.value, str) else _text_of(edit.value)
        params, speech = generation_params(max_new_tokens, temperature), speech_setting(speak, voice, rate)
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

    # --- the session ---

    def on_new_chat(self, session: ChatSession) -> TurnView:
        session.new_chat()
        return turn_view(session, box=cleared_box(), announcement=say("new_chat_started", session.language),
                         export=False, reviewed=None)

    def on_load(self, conversation_id: str, request: gr.Request = None):
        """A session for this browser, with the conversation it had open (reloads, restarts);
        another user's conversation id opens a new chat."""
        session = self.new_session(request)
        session.language = page_language(request)
        restored = self.store.load(conversation_id, session.owner) if conversation_id else None
        if restored is not None:
            session.conversation = restored
        return (session, render(session.conversation, language=session.language), session.conversation.id,
                export_update(bool(session.conversation.turns)), timings_table(session.conversation, session.language))

    def on_close(self, session: ChatSession | None) -> None:
        """The browser tab is gone: stop its answer."""
        if session is not None:
            session.cancel_scope.cancel()

    # --- export ---

    def export(self, session: ChatSession) -> str | None:
        """The conversation as a .zip (Markdown with the photos and recordings it links to,
        and the JSON that Import takes back), written now into the person's exports folder, named
        after the conversation's title and the day; None when there is nothing to export."""
        with session.lock:
            conversation = session.conversation.copy()
        if not conversation.turns:
            return None
        summary = self.store.summary(conversation.id, session.owner)
        details = transfer.Details() if summary is None else transfer.Details(
            summary.title if summary.custom_title else None, summary.created, summary.updated)
        # Named after its title and today; the folder keeps only this newest export of it.
        title = None if summary is None or (not summary.custom_title and summary.title == title_from("")) \
            else summary.title
        path = transfer.save_export(conversation, exports_folder(self.store.root, session.owner), details, title)
        return str(path)

    def on_export(self, session: ChatSession | None):
        """Export pressed: the .zip written now, for the download (the page's script starts it)."""
        if session is None:
            gr.Warning(STILL_LOADING)
            return SKIP
        try:
            path = self.export(session)
        except OSError as exc:  # e.g. a full disk
            log.warning("could not write the export: %s", exc)
            gr.Warning(say("export_failed", session.language, reason=exc.strerror or str(exc)))
            return SKIP
        if path is None:
            gr.Warning(say("nothing_to_export", session.language))
            return SKIP
        return gr.update(value=path)


def pcm16(chunk: AudioChunk) -> tuple[int, np.ndarray]:
    """What a streaming gr.Audio plays: (sample rate, 16-bit samples)."""
    return chunk.sample_rate, (np.clip(chunk.samples, -1.0, 1.0) * 32767).astype(np.int16)


def run_showing_progress(events, progress):
    """Run a generator of Progress events to its return value, showing them on `progress`."""
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            return done.value
        if isinstance(event, Progress) and progress is not None:
            progress(event.fraction, desc=event.message)


def _text_of(value) -> str:
    if isinstance(value, list):
        return " ".join(_text_of(v) for v in value)
    if isinstance(value, dict):
        return value.get("text", "")
    return str(value or "")
