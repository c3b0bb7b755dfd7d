"""What the page shows of a conversation: the chat's messages, and a turn's view.

A turn's view (`TurnView`) is what every handler that changes the conversation returns:
one field per component it updates, named. `page.py` lists the components under the
same names (`TurnView.outputs`), so the order of Gradio's outputs is written once, here.

Screen readers hear each answer once, when it is complete, through the page's own live
region (`announcement`): the chat log's own live region is muted, because it would read
the answer token by token.
"""

from __future__ import annotations

import dataclasses
import html
import itertools
import mimetypes
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from ..conversation import AudioPart, Conversation, TextPart, Turn, VideoPart
from ..i18n import ENGLISH, say
from ..presets import Task, Verbosity
from .labels import t

SKIP = gr.skip()
STILL_LOADING = "The page is still starting; please try again in a moment."
EDIT_LABEL = t("edit_label")  # one object each: tests and handlers compare them
MESSAGE_LABEL = t("message")
# Shown after an answer that did not finish (keys of mmchat.i18n).
ANSWER_MARKERS = {"interrupted": "stopped_marker", "error": "failed_marker"}
STAGES = ("transcript", "first_token", "first_audio", "done")  # the timings' columns (keys "stage_...")

# Announcements are numbered, and the number's change triggers them: the text's own change
# event would not fire for the same words twice (the same answer after Regenerate, the
# same refusal again), and a screen reader would hear nothing.
_announcement_numbers = itertools.count(1)


def next_announcement() -> int:
    return next(_announcement_numbers)


@dataclass(frozen=True)
class TurnView:
    """One update of the page after a turn's event; SKIP leaves a component as it is."""

    chat: Any  # the chat's messages (render)
    box: Any = field(default_factory=gr.skip)  # the message box
    announcement: Any = field(default_factory=gr.skip)  # words for screen readers (and the sidebar's cue to refresh)
    export: Any = field(default_factory=gr.skip)  # the Export button: pressable or not
    editing: bool = False  # the message box is in edit mode
    conversation_id: str = ""  # the page keeps it, so a reload reopens the conversation
    reviewed: Any = field(default_factory=gr.skip)  # the recording whose transcript is in the box, to be checked
    speech: Any = field(default_factory=gr.skip)  # a piece of the spoken answer, for the streaming player
    announcement_number: Any = field(default_factory=gr.skip)
    timings: str = ""  # the timings panel
    stop: Any = field(default_factory=gr.skip)  # the Stop button, shown while there is something to stop

    @classmethod
    def names(cls) -> list[str]:
        """The fields in order: the components page.py lists as a turn's outputs, by these names."""
        return [each.name for each in dataclasses.fields(cls)]

    def outputs(self) -> tuple:
        """The updates in the order of `names()` (what Gradio takes from a handler)."""
        return tuple(getattr(self, name) for name in self.names())

    @classmethod
    def unchanged(cls) -> tuple:
        """A turn's outputs all left as they are."""
        return tuple(SKIP for _ in cls.names())


def turn_view(session, box=SKIP, announcement=SKIP, export=SKIP, reviewed=SKIP, speech=SKIP,
              answering: bool = False, editing: bool = False, waiting: str | None = None) -> TurnView:
    """The page after a change to `session`'s conversation; `answering`: an answer is being written."""
    conversation = session.conversation
    return TurnView(
        chat=render(conversation, answering, waiting, session.language),
        box=box,
        announcement=announcement,
        export=export if export is SKIP else export_update(export),
        editing=editing,
        conversation_id=conversation.id,
        reviewed=reviewed,
        speech=speech,
        announcement_number=next_announcement() if isinstance(announcement, str) else SKIP,
        timings=timings_table(conversation, session.language),
        stop=stop_update(answering),
    )


def stop_update(answering: bool):
    """The Stop button, which takes Send's place while an answer is written. It stays in the
    page, marked "idle" when there is nothing to stop, so that its script (static/page.js) can
    show it again while the answer is still being spoken after its text is done."""
    return gr.update(elem_classes=[] if answering else ["idle"])


def export_update(exportable: bool):
    """The Export button: pressable only while there is something to export."""
    return gr.update(interactive=bool(exportable))


def cleared_box():
    """The message box emptied and out of edit mode (a fresh update each time: Gradio may change the one it gets)."""
    return gr.update(value=None, label=MESSAGE_LABEL)


def plain(message: str) -> str:
    """A message for a toast or a screen reader, which show Markdown's backticks as they are."""
    return message.replace("`", "")


def render(conversation: Conversation, answering: bool = False, waiting: str | None = None,
           language: str = ENGLISH) -> list[dict]:
    """The conversation as Gradio chat messages (one message per turn). `answering`:
    the last answer is still being written, so it gets no end-of-answer marker (the
    turn loop keeps it marked interrupted until it finishes, in case it never does).
    `waiting`: what the answer being written waits for, shown until its first words."""
    turns = conversation.turns
    messages = [_render_turn(turn, answering and i == len(turns) - 1, waiting, language) for i, turn in enumerate(turns)]
    if turns and turns[-1].role == "assistant" and turns[-1].other_versions and not answering:
        messages[-1]["options"] = version_options(turns[-1], language)
    return messages


VERSION_OPTION = "version:"  # an option's value: VERSION_OPTION and the version's 0-based number


def version_options(answer: Turn, language: str = ENGLISH) -> list[dict]:
    """The switcher under the last answer once Regenerate has written another: the chat's options
    (Gradio shows them under the last message), "‹ Answer 1 of 2" and "Answer 3 of 3 ›"."""
    count, at = len(answer.other_versions) + 1, answer.version
    options = []
    if at > 0:
        options.append({"label": say("version_previous", language, number=at, count=count),
                        "value": f"{VERSION_OPTION}{at - 1}"})
    if at < count - 1:
        options.append({"label": say("version_next", language, number=at + 2, count=count),
                        "value": f"{VERSION_OPTION}{at + 1}"})
    return options


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
    for clip in turn.clips:
        content.append(_clip(clip))
        if clip.transcript:  # what was heard in it, as the model was given it: seen, and read out
            content.append(as_typed(f"{say('heard_in_clip', language)}\n{clip.transcript}"))
    content += [_recording(p.path) for p in turn.parts if isinstance(p, AudioPart)]
    shown = shown_text(turn, language)
    if shown:  # a describe-mode question shows its task's name, not its prompt
        content.append(as_typed(shown))
    return {"role": "user", "content": content}


def _clip(clip: VideoPart) -> dict:
    """A clip in the chat, played as video (a GIF shown as the picture it is); its length is
    in the player's own controls."""
    if Path(clip.path).suffix.lower() == ".gif":
        return {"path": clip.path, "alt_text": f"your video clip, {clip.duration:.0f} seconds"}
    kind = mimetypes.guess_type(clip.path)[0] or "video/mp4"
    return {"file": {"path": clip.path, "mime_type": kind.replace("audio/", "video/")}}


def _recording(path: str) -> dict:
    """A recording in the chat, played as audio: Gradio would take a .webm (the page's own
    recordings) for a video by its name."""
    kind = (mimetypes.guess_type(path)[0] or "audio/wav").replace("video/", "audio/")
    return {"file": {"path": path, "mime_type": kind}}


def as_typed(text: str) -> str:
    """A person's own words shown exactly as typed. The chat renders Markdown with HTML, in
    which `<image>` would be a broken picture and `<s>...</s>` struck through: HTML's own
    characters are escaped, and each Markdown mark that can format is taken literally."""
    escaped = html.escape(text, quote=False)
    escaped = _INLINE_MARKS.sub(r"\\\g<0>", escaped)
    escaped = _LINE_START_MARKS.sub(_escape_line_start, escaped)
    return escaped  # line breaks stay: the chat renders each one (line_breaks)


# Marks that format wherever they stand (emphasis, code, links, tables, escapes) ...
_INLINE_MARKS = re.compile(r"[\\`*_~\[\]|]")
# ... and those that format only at the start of a line: headings, lists ("-", "+", "1.").
# (A quote's ">" is no mark once escaped as HTML.)
_LINE_START_MARKS = re.compile(r"^([ \t]*)(#|[-+]|\d+)([.)]?)", re.MULTILINE)


def _escape_line_start(mark: re.Match) -> str:
    indent, sign, dot = mark.groups()
    if sign.isdigit():  # "1." starts a list; "1\." does not
        return indent + sign + ("\\" + dot if dot else "")
    return indent + "\\" + sign + dot


def shown_text(turn: Turn, language: str) -> str:
    """A question's words as the chat shows them: a describe-mode task by its name in `language`."""
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


def timings_table(conversation: Conversation, language: str = ENGLISH) -> str:
    """Each answer's stages (Markdown): seconds from the end of the question (for a spoken
    one, the end of the speech) to its transcript, first token, first audio, and end."""
    rows = []
    for index, turn in enumerate(conversation.turns):
        if turn.role != "assistant" or not turn.timings or index == 0:
            continue
        question = conversation.turns[index - 1].text.replace("\n", " ").replace("|", "/")
        question = question if len(question) <= 40 else question[:39] + "…"
        cells = [f"{turn.timings[stage]:.2f} s" if stage in turn.timings else "–" for stage in STAGES]
        rows.append(f"| {len(rows) + 1} | {question} | " + " | ".join(cells) + " |")
    if not rows:
        return say("timings_empty", language)
    names = [say(f"stage_{stage}", language) for stage in STAGES]
    header = f"| # | {say('timings_question', language)} | " + " | ".join(names) + " |\n|" + " --- |" * (len(STAGES) + 2)
    return say("timings_intro", language) + "\n\n" + header + "\n" + "\n".join(rows)


def waiting_message(ahead: int, language: str = ENGLISH) -> str:
    return say("waiting_one", language) if ahead == 1 else say("waiting_many", language, count=ahead)
