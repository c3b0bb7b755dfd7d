"""Describe mode in the page: one key (or the Describe button) asks a task preset about
what the camera sees or the photo at hand.

Which photo: the ones in the message box if any; else, in voice mode, the camera's view
now; else the last photo of the conversation (so "describe" after an upload, and again
after a follow-up, is about that photo). Compare takes two: the box's two, or the
conversation's last two, or the camera's earlier view and its view now.

The task and verbosity are the user's choice, kept in their browser (`gr.BrowserState`)
so they are there the next time; voice mode's spoken tasks use the same verbosity.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterator

import gradio as gr

from ..events import InputRejected
from ..i18n import ENGLISH, LANGUAGES, say
from ..presets import PRESETS, Task, Verbosity
from ..turn import UserInput, submit
from ..turn.session import ChatSession
from .chat import ChatHandlers, files_of, generation_params, sorted_files, speech_setting
from .view import STILL_LOADING, TurnView

# Not a key a screen reader uses (NVDA and JAWS take Insert / Caps Lock combinations,
# VoiceOver Control+Option, Orca Insert / Caps Lock), nor one Chrome or Firefox takes
# for themselves; on Windows it is also how browsers press an accesskey "d".
SHORTCUT = "Alt+Shift+D"
DEFAULT_TASK = "describe"
DEFAULT_VERBOSITY = Verbosity.BRIEF  # a first description is short; details come when asked
# Where the store keeps a person's last task and detail (SQLiteStore.preference).
DESCRIBE_PREFERENCES = ("describe.task", "describe.verbosity")
NO_PHOTO = say("no_photo", ENGLISH)
NEED_TWO = say("need_two", ENGLISH)


def task_choices(language: str = ENGLISH) -> list[str]:
    """Each preset's name in `language`, in the order the menu shows them.

    The menus' entries are their own values (words, not codes), made here in the page's
    language: Gradio 6.31's menus send back an entry's words, not its value, once their
    entries change words (a language switch); `chosen_task` reads the words of either language.
    """
    return [say(f"preset_{name}", language) for name in PRESETS]


def verbosity_choices(language: str = ENGLISH) -> list[str]:
    return [say(level.value, language) for level in Verbosity]


def _by_words(key) -> dict[str, str]:
    """Each language's words for each name (and the name itself) -> the name."""
    return {word: name for name in key for word in (name, *(say(key[name], lang) for lang in LANGUAGES))}


_TASK_WORDS = _by_words({name: f"preset_{name}" for name in PRESETS})
_VERBOSITY_WORDS = _by_words({level.value: level.value for level in Verbosity})


def chosen_task(task: str | None, verbosity: str | None) -> Task:
    """The task the page's menus name (by a preset's name or its words in either language);
    the defaults for anything unknown (an old browser's setting)."""
    preset = PRESETS[_TASK_WORDS.get(task or "", DEFAULT_TASK)]
    return Task(preset, Verbosity(_VERBOSITY_WORDS.get(verbosity or "", DEFAULT_VERBOSITY.value)))


def menu_words(task: Task, language: str) -> tuple[str, str]:
    """The task's and its verbosity's entries in the menus in `language`."""
    return say(f"preset_{task.preset.name}", language), say(task.verbosity.value, language)


class Describer:
    """Turns the page's Describe (button or shortcut) into a turn with a task.

    `voice_loops`: every session's voice mode (voice_panel.VoiceMode), for the camera's view."""

    def __init__(self, chat: ChatHandlers, voice_loops) -> None:
        self.chat = chat
        self.services = chat.services
        self.voice_loops = voice_loops
        self._camera_folder = Path(tempfile.mkdtemp(prefix="mmchat-camera-"))

    def on_describe(self, session: ChatSession, message: dict, task_name: str, verbosity: str,
                    max_new_tokens, temperature, speak: bool, voice: str, rate) -> Iterator[TurnView]:
        """Describe (button or shortcut): the chosen task about the box's photos, the camera's
        view (voice mode) or the conversation's last photo."""
        if session is None:
            gr.Warning(STILL_LOADING)
            return
        message = message or {"text": "", "files": []}
        photos, clips, _ = sorted_files(files_of(message))
        task = chosen_task(task_name, verbosity)
        params, speech = generation_params(max_new_tokens, temperature), speech_setting(speak, voice, rate)
        if task.preset.clips:
            events, used = self.clip_events(session, task, list(clips), params, speech), bool(clips)
        else:
            events, used = self.events(session, task, list(photos), params, speech), bool(photos)
        yield from self.chat.play(session, events, message if used else None, keep_box=not used)

    def clip_events(self, session: ChatSession, task: Task, box_clips: list[str], params, speech):
        """A task about a clip ("What is happening"): the box's clip, the camera's last seconds
        (voice mode), or the conversation's last clip; one InputRejected when there is none."""
        clip = box_clips[-1] if box_clips else None
        loop = self.voice_loops.get(session) if self.voice_loops is not None else None
        if clip is None and loop is not None:
            camera = loop.camera_clip(self._camera_folder)
            clip = str(camera) if camera is not None else None
        if clip is None:
            with session.lock:
                earlier = [part.path for turn in session.conversation.turns for part in turn.clips]
            clip = earlier[-1] if earlier else None
        if clip is None:
            return iter([InputRejected(say("no_clip", session.language))])
        if loop is not None:
            loop.verbosity = task.verbosity
        return self._run(session, UserInput("", task=task, videos=(clip,)), params, speech)

    def photos_for(self, session: ChatSession, task: Task, box_photos: list[str]) -> tuple[str, ...] | None:
        """The photos the task is about (see the module's docstring); None when there are none."""
        wanted = task.preset.images
        if box_photos:
            return tuple(box_photos[-wanted:]) if len(box_photos) >= wanted else None
        loop = self.voice_loops.get(session) if self.voice_loops is not None else None
        camera = loop.camera_photo(self._camera_folder) if loop is not None else None
        with session.lock:
            earlier = [image.path for turn in session.conversation.turns for image in turn.images]
        if camera is not None:
            photos = [*earlier[-1:], str(camera)] if wanted == 2 else [str(camera)]
        else:
            photos = earlier[-wanted:]
        return tuple(photos) if len(photos) >= wanted else None

    def events(self, session: ChatSession, task: Task, box_photos: list[str], params, speech):
        """The turn's events, or one InputRejected saying what to add."""
        photos = self.photos_for(session, task, box_photos)
        if photos is None:
            message = say("need_two" if task.preset.needs_two_photos else "no_photo", session.language)
            return iter([InputRejected(message)])
        loop = self.voice_loops.get(session) if self.voice_loops is not None else None
        if loop is not None:
            loop.verbosity = task.verbosity  # spoken tasks follow the page's choice
        return self._run(session, UserInput("", photos, task=task), params, speech)

    def _run(self, session: ChatSession, user_input: UserInput, params, speech):
        try:
            yield from submit(session, user_input, self.services, params, speech)
        finally:  # the turn stored its own copy of a camera view
            for path in (*user_input.images, *user_input.videos):
                if Path(path).parent == self._camera_folder:
                    Path(path).unlink(missing_ok=True)
