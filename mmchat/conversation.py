"""The conversation of one session: turns made of typed parts.

It serializes to the OpenAI chat message format, which every engine consumes and the
HTTP API speaks, and to its own JSON for saving (which keeps what OpenAI's format
has no room for: the recording behind a transcript, the status of a reply).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping, Union

Role = Literal["user", "assistant"]
# What the model reads before a clip's transcribed speech (VideoPart.transcript).
CLIP_SPEECH_HEADING = "Speech heard in the clip (seconds from its start):"
Status = Literal["complete", "interrupted", "error"]


@dataclass(frozen=True)
class TextPart:
    text: str
    # Describe mode's task that wrote `text` (its prompt), as a presets.Task tag such as
    # "describe:brief": the chat shows the task's name, and the model gets `text`.
    preset: str | None = None


@dataclass(frozen=True)
class ImagePart:
    path: str  # a file the session owns (copied from the upload), or a photo's memory:// URL (media.photos)


@dataclass(frozen=True)
class VideoPart:
    path: str  # like ImagePart's: a file the session owns, or a clip's memory:// URL (media.video)
    duration: float = 0.0  # the clip's length in seconds, as the chat shows it
    # The speech in the clip's sound, a line per stretch with its times ("[1.5-3.0 s] Hello
    # there"), given to the model after the clip; "" when none was heard or asked for.
    transcript: str = ""


@dataclass(frozen=True)
class AudioPart:
    path: str
    transcript: str
    language: str | None = None
    duration: float = 0.0


Part = Union[TextPart, ImagePart, VideoPart, AudioPart]


@dataclass(frozen=True)
class AnswerVersion:
    """One answer to a question among those Regenerate wrote (the one shown is the turn itself)."""

    text: str
    status: Status = "complete"
    timings: Mapping[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"text": self.text, "status": self.status, **({"timings": dict(self.timings)} if self.timings else {})}

    @classmethod
    def from_dict(cls, data: Mapping) -> "AnswerVersion":
        status = data.get("status", "complete")
        return cls(str(data.get("text", "")), status if status in ("complete", "interrupted", "error") else "complete",
                   {str(k): float(v) for k, v in (data.get("timings") or {}).items()})


@dataclass
class Turn:
    role: Role
    parts: list[Part]
    status: Status = "complete"
    # An answer's stages, in seconds from the moment its question was complete (for a
    # spoken question, the end of the speech): "transcript", "first_token", "first_audio", "done".
    timings: dict[str, float] = field(default_factory=dict)
    # An answer's other versions, in the order they were written (Regenerate keeps the earlier
    # ones), and where this one, the one shown and given to the model, stands among them all.
    other_versions: list[AnswerVersion] = field(default_factory=list)
    version: int = 0

    def versions(self) -> list[AnswerVersion]:
        """Every version of this answer, in the order written; this one at `version`."""
        shown = AnswerVersion(self.text, self.status, dict(self.timings))
        return [*self.other_versions[:self.version], shown, *self.other_versions[self.version:]]

    def show_version(self, number: int) -> None:
        """Make version `number` (0-based, in the order written) the one shown and given to the model."""
        versions = self.versions()
        if not 0 <= number < len(versions):
            raise ValueError(f"this answer has no version {number + 1}")
        chosen = versions.pop(number)
        self.parts, self.status, self.timings = [TextPart(chosen.text)], chosen.status, dict(chosen.timings)
        self.other_versions, self.version = versions, number

    def versions_to_dict(self) -> dict:
        """The other versions as saved and exported: {} for an answer written once."""
        if not self.other_versions:
            return {}
        return {"other_versions": [version.to_dict() for version in self.other_versions], "version": self.version}

    @staticmethod
    def versions_from_dict(data: Mapping) -> tuple[list[AnswerVersion], int]:
        """`other_versions` and `version` from what `versions_to_dict` wrote (whatever else is there
        left out: an import may come from anywhere), the position kept within the versions."""
        others = [AnswerVersion.from_dict(version) for version in data.get("other_versions") or []
                  if isinstance(version, Mapping)]
        version = data.get("version")
        return others, min(max(version, 0), len(others)) if isinstance(version, int) and others else 0

    @property
    def text(self) -> str:
        """What was said in words: typed text, and transcripts of speech."""
        pieces = []
        for part in self.parts:
            if isinstance(part, TextPart):
                pieces.append(part.text)
            elif isinstance(part, AudioPart) and part.transcript:
                pieces.append(part.transcript)
        return "\n".join(p for p in pieces if p)

    @property
    def shown_text(self) -> str:
        """The words as people see them: like `text`, with a describe-mode task's name
        ("Describe (brief)") in place of its prompt."""
        pieces = []
        for part in self.parts:
            if isinstance(part, TextPart) and part.preset:
                pieces.append(_task_name(part))
            elif isinstance(part, TextPart):
                pieces.append(part.text)
            elif isinstance(part, AudioPart) and part.transcript:
                pieces.append(part.transcript)
        return "\n".join(p for p in pieces if p)

    @property
    def images(self) -> list[ImagePart]:
        return [p for p in self.parts if isinstance(p, ImagePart)]

    @property
    def clips(self) -> list[VideoPart]:
        return [p for p in self.parts if isinstance(p, VideoPart)]


@dataclass
class Conversation:
    turns: list[Turn] = field(default_factory=list)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    # --- editing ---
    def add_user(self, parts: list[Part]) -> Turn:
        if self.turns and self.turns[-1].role == "user":
            raise ValueError("a user turn must be answered before the next one")
        turn = Turn("user", list(parts))
        self.turns.append(turn)
        return turn

    def add_assistant(self, text: str = "", status: Status = "complete") -> Turn:
        turn = Turn("assistant", [TextPart(text)], status)
        self.turns.append(turn)
        return turn

    def last_user_index(self) -> int | None:
        for index in range(len(self.turns) - 1, -1, -1):
            if self.turns[index].role == "user":
                return index
        return None

    def drop_last_answer(self) -> bool:
        """Remove the reply to the last question (for Regenerate). True if one was removed."""
        if self.turns and self.turns[-1].role == "assistant":
            self.turns.pop()
            return True
        return False

    def edit_last_user_text(self, text: str) -> None:
        """Replace the words of the last question, keep its photos and clips, drop its answer."""
        index = self.last_user_index()
        if index is None:
            raise ValueError("there is no question to edit")
        turn = self.turns[index]
        kept = [p for p in turn.parts if isinstance(p, (ImagePart, VideoPart))]
        self.turns[index] = Turn("user", [*kept, TextPart(text)])
        del self.turns[index + 1 :]

    def copy(self) -> "Conversation":
        return Conversation([Turn(t.role, list(t.parts), t.status, dict(t.timings), list(t.other_versions), t.version)
                             for t in self.turns], self.id)

    # --- OpenAI chat format ---
    def to_openai(self, system_prompt: str | None = None, *, inline_images: bool = False,
                  before: Turn | None = None) -> list[dict]:
        """Messages in the OpenAI chat format.

        Images and clips (`video_url` parts, as vLLM takes them) are `file://` URLs for
        engines on this machine, or data URLs when `inline_images` (for a remote server).
        Speech appears as its transcript; replies that failed are left out, interrupted ones
        are kept as far as they got.
        `before`: only the turns before this one (the prompt for the reply being written).
        """
        turns = self.turns
        if before is not None:
            turns = turns[: next(i for i, t in enumerate(turns) if t is before)]
        messages: list[dict] = []
        if system_prompt:
            messages.append({"role": "system", "content": system_prompt})
        for turn in turns:
            if turn.role == "assistant":
                if turn.status != "error":
                    messages.append({"role": "assistant", "content": turn.text})
                continue
            content: list[dict] = []
            for part in turn.parts:
                if isinstance(part, ImagePart):
                    content.append({"type": "image_url", "image_url": {"url": _media_url(part.path, inline_images)}})
                elif isinstance(part, VideoPart):
                    content.append({"type": "video_url", "video_url": {"url": _media_url(part.path, inline_images)}})
                    if part.transcript:
                        content.append({"type": "text", "text": f"{CLIP_SPEECH_HEADING}\n{part.transcript}"})
                elif isinstance(part, TextPart) and part.text:
                    content.append({"type": "text", "text": part.text})
                elif isinstance(part, AudioPart) and part.transcript:
                    content.append({"type": "text", "text": part.transcript})
            messages.append({"role": "user", "content": content})
        return messages

    @classmethod
    def from_openai(cls, messages: list[dict], media_dir: Path | None = None) -> "Conversation":
        """Build a conversation from OpenAI chat messages (system messages are skipped).

        Data-URL images are written to `media_dir`; file URLs and plain paths are kept.
        """
        conversation = cls()
        for message in messages:
            role = message.get("role")
            content = message.get("content")
            if role == "system":
                continue
            if role not in ("user", "assistant"):
                raise ValueError(f"unsupported role: {role!r}")
            items = [{"type": "text", "text": content}] if isinstance(content, str) else (content or [])
            parts: list[Part] = []
            for item in items:
                kind = item.get("type")
                if kind == "text":
                    parts.append(TextPart(item["text"]))
                elif kind == "image_url":
                    url = item["image_url"]["url"] if isinstance(item["image_url"], dict) else item["image_url"]
                    parts.append(ImagePart(_url_to_path(url, media_dir)))
                elif kind == "video_url":
                    url = item["video_url"]["url"] if isinstance(item["video_url"], dict) else item["video_url"]
                    parts.append(VideoPart(_url_to_path(url, media_dir)))
                else:
                    raise ValueError(f"unsupported content type: {kind!r}")
            if role == "assistant":
                conversation.turns.append(Turn("assistant", [TextPart("".join(
                    p.text for p in parts if isinstance(p, TextPart)))]))
            else:
                conversation.turns.append(Turn("user", parts))
        return conversation

    # --- saving ---
    def to_json(self) -> str:
        return json.dumps({"id": self.id, "turns": [_turn_to_dict(t) for t in self.turns]}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> "Conversation":
        data = json.loads(text)
        return cls([_turn_from_dict(t) for t in data["turns"]], data["id"])

    def to_markdown(self, links: Mapping[str, str] | None = None) -> str:
        """The conversation as Markdown. `links` maps each photo's and recording's path to
        the link written for it (one missing from it is marked as not available); without
        `links`, a file's own name is its link."""

        def link(path: str) -> str | None:
            return Path(path).name if links is None else links.get(path)

        lines = []
        for turn in self.turns:
            lines.append("**You:**" if turn.role == "user" else "**Assistant:**")
            for image in turn.images:
                target = link(image.path)
                lines.append(f"![photo]({target})" if target else "*(photo not available)*")
            for clip in turn.clips:
                target = link(clip.path)
                lines.append(f"[video clip, {clip.duration:.0f} s]({target})" if target else "*(video clip not available)*")
            for recording in (p for p in turn.parts if isinstance(p, AudioPart)):
                target = link(recording.path)
                lines.append(f"[recording]({target})" if target else "*(recording not available)*")
            lines.append(turn.shown_text)
            if turn.status == "interrupted":
                lines.append("*(stopped)*")
            lines.append("")
        return "\n".join(lines)


def _task_name(part: TextPart) -> str:
    from .presets import Task  # presets need nothing from here; imported late to keep it so

    task = Task.from_tag(part.preset)
    return task.shown if task is not None else part.text


def _media_url(path: str, inline: bool) -> str:
    """A photo's or clip's URL in a message: a file:// URL, or a data URL when `inline`."""
    if "://" in path:  # a URL already (held in memory: memory://)
        return path
    return _data_url(path) if inline else Path(path).resolve().as_uri()


def _data_url(path: str) -> str:
    mime = mimetypes.guess_type(path)[0] or "image/png"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode()


def _url_to_path(url: str, media_dir: Path | None) -> str:
    if url.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return unquote(urlparse(url).path)
    if url.startswith("data:"):
        if media_dir is None:
            raise ValueError("an inline image needs a media folder to be saved in")
        header, _, payload = url.partition(",")
        extension = mimetypes.guess_extension(header[5:].split(";")[0]) or ".img"
        media_dir.mkdir(parents=True, exist_ok=True)
        path = media_dir / f"{uuid.uuid4().hex}{extension}"
        path.write_bytes(base64.b64decode(payload))
        return str(path)
    if "://" in url:
        raise ValueError("only inline (data:) or local images are accepted, not web addresses")
    return url


def _turn_to_dict(turn: Turn) -> dict:
    parts = []
    for part in turn.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text, **({"preset": part.preset} if part.preset else {})})
        elif isinstance(part, ImagePart):
            parts.append({"type": "image", "path": part.path})
        elif isinstance(part, VideoPart):
            parts.append({"type": "video", "path": part.path, "duration": part.duration,
                          **({"transcript": part.transcript} if part.transcript else {})})
        else:
            parts.append({"type": "audio", "path": part.path, "transcript": part.transcript,
                          "language": part.language, "duration": part.duration})
    data = {"role": turn.role, "status": turn.status, "parts": parts}
    if turn.timings:
        data["timings"] = turn.timings
    data.update(turn.versions_to_dict())
    return data


def _turn_from_dict(data: dict) -> Turn:
    parts: list[Part] = []
    for part in data["parts"]:
        if part["type"] == "text":
            parts.append(TextPart(part["text"], part.get("preset")))
        elif part["type"] == "image":
            parts.append(ImagePart(part["path"]))
        elif part["type"] == "video":
            parts.append(VideoPart(part["path"], float(part.get("duration") or 0.0), str(part.get("transcript") or "")))
        else:
            parts.append(AudioPart(part["path"], part["transcript"], part.get("language"), part.get("duration", 0.0)))
    timings = {str(k): float(v) for k, v in (data.get("timings") or {}).items()}
    return Turn(data["role"], parts, data.get("status", "complete"), timings, *Turn.versions_from_dict(data))
