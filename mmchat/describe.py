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

from .events import InputRejected
from .presets import PRESETS, Task, Verbosity
from .session import ChatSession
from .turn import UserInput, submit

# Not a key a screen reader uses (NVDA and JAWS take Insert / Caps Lock combinations,
# VoiceOver Control+Option, Orca Insert / Caps Lock), nor one Chrome or Firefox takes
# for themselves; on Windows it is also how browsers press an accesskey "d".
SHORTCUT = "Alt+Shift+D"
DEFAULT_TASK = "describe"
DEFAULT_VERBOSITY = Verbosity.BRIEF  # a first description is short; details come when asked
NO_PHOTO = ("There is nothing to describe yet: add a photo to the message box, or turn on voice mode "
            "to use the camera.")
NEED_TWO = ("Compare needs two photos: add both to the message box (the earlier one first), or "
            "send one and then the other.")


def task_choices() -> list[tuple[str, str]]:
    """(label, name) for each preset, in the order the menu shows them."""
    return [(preset.label, name) for name, preset in PRESETS.items()]


def verbosity_choices() -> list[tuple[str, str]]:
    return [("Brief", Verbosity.BRIEF.value), ("Normal", Verbosity.NORMAL.value),
            ("Detailed", Verbosity.DETAILED.value)]


def chosen_task(name: str | None, verbosity: str | None) -> Task:
    """The task the page's menus name; the defaults for anything unknown (an old browser's setting)."""
    preset = PRESETS.get(name or "", PRESETS[DEFAULT_TASK])
    try:
        level = Verbosity(verbosity or DEFAULT_VERBOSITY.value)
    except ValueError:
        level = DEFAULT_VERBOSITY
    return Task(preset, level)


class Describer:
    """Turns the page's Describe (button or shortcut) into a turn with a task."""

    def __init__(self, services, voice_loops) -> None:
        self.services = services
        self.voice_loops = voice_loops
        self._camera_folder = Path(tempfile.mkdtemp(prefix="mmchat-camera-"))

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
            message = NEED_TWO if task.preset.needs_two_photos else NO_PHOTO
            return iter([InputRejected(message)])
        loop = self.voice_loops.get(session) if self.voice_loops is not None else None
        if loop is not None:
            loop.verbosity = task.verbosity  # spoken tasks follow the page's choice
        return self._run(session, UserInput("", photos, task=task), params, speech)

    def _run(self, session: ChatSession, user_input: UserInput, params, speech):
        try:
            yield from submit(session, user_input, self.services, params, speech)
        finally:  # the turn stored its own copy of a camera view
            for path in user_input.images:
                if Path(path).parent == self._camera_folder:
                    Path(path).unlink(missing_ok=True)
