"""A conversation as a file to take away, and back: the Export .zip, and its import.

The .zip holds one folder with:
- `conversation.md`, for people: the photos show once it is unpacked (relative links);
- `conversation.json`, for mmchat: every field of every turn (statuses, timings,
  transcripts, languages, durations), the title if the user gave one, and the times,
  so that importing it gives back exactly the conversation that was exported;
- `photos/`, `clips/` and `recordings/`, each file once however often it was sent.

The Export button's file (`save_export`) is named after the conversation's title and
the day, e.g. `Red-circle-question-2026-12-07.zip`, and replaces that folder's earlier
exports of the same conversation (the .zip's comment names the conversation), so the
folder holds only the newest one of each.

Import takes that .zip, or its `conversation.json` alone (the photos and recordings
are then kept as not available). It reads only the members the JSON names, never a
path the archive chooses, and bounds what it reads, since an import may come from
anyone. An imported conversation's title says so ("… (imported)").
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import threading
import time
import unicodedata
import uuid
import zipfile
import zlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path, PurePosixPath

from PIL import Image, UnidentifiedImageError

from .conversation import AudioPart, Conversation, ImagePart, Part, TextPart, Turn, VideoPart
from .errors import InputError
from .i18n import ENGLISH, TABLES, say
from .media.video import VIDEO_SUFFIXES, has_pictures
from .store.schema import title_from
from .store.sqlite_store import TITLE_MAX

FORMAT = "mmchat-conversation"
VERSION = 1
JSON_NAME = "conversation.json"
MARKDOWN_NAME = "conversation.md"
MAX_JSON_BYTES = 64 * 2**20  # the text of a very long conversation is a few MB
MAX_ARCHIVE_BYTES = 4 * 2**30  # what an import may unpack in all (a zip can claim any size)
MEDIA_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp", ".tif", ".tiff",
                  ".wav", ".webm", ".mp3", ".ogg", ".oga", ".flac", ".m4a", ".opus", ".aac"} | VIDEO_SUFFIXES
NAME_LENGTH = 60  # an export's file name at most, before its date
UNTITLED_NAME = "conversation"  # the file name of a conversation without a title
COMMENT = "mmchat-conversation "  # the .zip's comment: this, then the conversation's id
STALE_PARTIAL_SECONDS = 600  # a .partial file this old was left by a crash
_LEGACY_NAME = re.compile(r"mmchat-[0-9a-f]{8}\.zip")  # the name of earlier versions' exports
_SAVING = threading.Lock()  # one export written and its folder tidied at a time
NOT_AN_EXPORT = ("This file is not an mmchat conversation. Import takes the .zip that Export "
                 "downloads, or the conversation.json inside it.")


@dataclass(frozen=True)
class Details:
    """What the store knows of a conversation beyond its turns."""

    title: str | None = None  # a title the user gave it; None: made from the first question
    created: float | None = None  # Unix seconds
    updated: float | None = None


# --- export ---

def write_export(conversation: Conversation, path: str | Path, details: Details = Details(),
                 title: str | None = None) -> None:
    """Write the .zip (see the module's docstring) at `path`; its folder is named after it.
    The Markdown opens with `title` as its heading (else the title the user gave it, else
    the one made from the first question)."""
    path = Path(path)
    folder = path.stem
    links = _media_names(conversation)
    heading = " ".join((title or details.title or _made_title(conversation)).split())
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written aside and moved into place, so a download never gets a half-written file.
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".partial")
    os.close(handle)
    try:
        with zipfile.ZipFile(partial, "w") as archive:
            archive.comment = (COMMENT + conversation.id).encode()
            archive.writestr(f"{folder}/{MARKDOWN_NAME}", f"# {heading}\n\n" + conversation.to_markdown(links),
                             compress_type=zipfile.ZIP_DEFLATED)
            archive.writestr(f"{folder}/{JSON_NAME}", to_export_json(conversation, links, details),
                             compress_type=zipfile.ZIP_DEFLATED)
            for source, name in links.items():
                # Photos and recordings are compressed already; storing them is fast.
                archive.write(source, f"{folder}/{name}", compress_type=zipfile.ZIP_STORED)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise


def save_export(conversation: Conversation, folder: str | Path, details: Details = Details(),
                title: str | None = None, day: date | None = None) -> Path:
    """The Export button's .zip: written into `folder` (exports_folder, each user's own),
    named after `title` and `day` (today, local time), and the folder's earlier exports of
    this conversation removed. Another conversation's export of the same name is left be:
    this one is numbered instead. The path written."""
    folder = Path(folder)
    stem = f"{export_name(title)}-{(day or date.today()).isoformat()}"
    with _SAVING:
        folder.mkdir(parents=True, exist_ok=True)
        path, number = folder / f"{stem}.zip", 1
        while path.exists() and _export_of(path) != conversation.id:
            number += 1
            path = folder / f"{stem}-{number}.zip"
        write_export(conversation, path, details, title)
        _tidy(folder, conversation.id, keep=path)
    return path


def export_name(title: str | None) -> str:
    """`title` as a file name: its letters (any script) and digits, each run of anything
    else one dash, at most NAME_LENGTH characters; "conversation" when nothing is left."""
    kept = []
    for char in unicodedata.normalize("NFC", title or ""):
        category = unicodedata.category(char)
        # Letters, their combining marks (so Devanagari or Thai words stay whole) and digits.
        kept.append(char if category[0] in "LM" or category == "Nd" else "-")
    name = re.sub(r"-+", "-", "".join(kept)).strip("-")
    if len(name) > NAME_LENGTH:
        cut = name[:NAME_LENGTH]
        dash = cut.rfind("-")
        name = (cut[:dash] if dash > NAME_LENGTH // 2 else cut).strip("-")
    return name or UNTITLED_NAME


def _made_title(conversation: Conversation) -> str:
    return title_from(conversation.turns[0].text if conversation.turns else "")


def _export_of(path: Path) -> str | None:
    """The id of the conversation the export at `path` is of; None for a file that is no export."""
    try:
        with zipfile.ZipFile(path) as archive:
            comment = archive.comment.decode("utf-8", "replace")
            if comment.startswith(COMMENT):
                return comment[len(COMMENT):]
            if not _LEGACY_NAME.fullmatch(path.name):
                return None
            # An earlier version's export, without the comment: its JSON says.
            (name,) = [n for n in archive.namelist() if PurePosixPath(n).name == JSON_NAME]
            if archive.getinfo(name).file_size > MAX_JSON_BYTES:
                return None
            found = json.loads(archive.read(name).decode("utf-8")).get("id")
            return found if isinstance(found, str) else None
    except (OSError, ValueError, KeyError, AttributeError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error):
        return None  # not an export (or not readable): not ours to remove


def _tidy(folder: Path, conversation_id: str, keep: Path) -> None:
    """Remove `folder`'s other exports of this conversation, and .partial files a crash left.
    Only the folder's own files: with --auth, the users' folders below it are left alone."""
    now = time.time()
    for entry in folder.iterdir():
        try:
            if entry == keep or not entry.is_file() or entry.is_symlink():
                continue
            if entry.suffix == ".zip" and _export_of(entry) == conversation_id:
                entry.unlink(missing_ok=True)
            elif entry.name.startswith(".") and entry.suffix == ".partial" \
                    and now - entry.stat().st_mtime > STALE_PARTIAL_SECONDS:
                entry.unlink(missing_ok=True)
        except OSError:  # gone meanwhile, or not ours to remove
            continue


def to_export_json(conversation: Conversation, links: dict[str, str], details: Details = Details()) -> str:
    """The lossless JSON; `links` names each media file inside the export (one not in it is not available)."""
    document = {
        "format": FORMAT,
        "version": VERSION,
        "id": conversation.id,
        "title": details.title,
        "created": details.created,
        "updated": details.updated,
        "turns": [_turn_out(turn, links) for turn in conversation.turns],
    }
    return json.dumps(document, ensure_ascii=False, indent=1)


def _media_names(conversation: Conversation) -> dict[str, str]:
    """Each photo's, clip's and recording's path → its name in the export, numbered in the order sent."""
    links: dict[str, str] = {}
    counts = {"photo": 0, "clip": 0, "recording": 0}
    for turn in conversation.turns:
        for part in turn.parts:
            if not isinstance(part, (ImagePart, VideoPart, AudioPart)) or part.path in links:
                continue
            if not Path(part.path).is_file():  # left out, and marked so in the text
                continue
            kind = "photo" if isinstance(part, ImagePart) else "clip" if isinstance(part, VideoPart) else "recording"
            counts[kind] += 1
            links[part.path] = f"{kind}s/{kind}-{counts[kind]}{Path(part.path).suffix.lower()}"
    return links


def _turn_out(turn: Turn, links: dict[str, str]) -> dict:
    parts = []
    for part in turn.parts:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text, "preset": part.preset})
        elif isinstance(part, ImagePart):
            parts.append({"type": "image", "file": links.get(part.path)})
        elif isinstance(part, VideoPart):
            parts.append({"type": "video", "file": links.get(part.path), "duration": part.duration,
                          "transcript": part.transcript})
        else:
            parts.append({"type": "audio", "file": links.get(part.path), "transcript": part.transcript,
                          "language": part.language, "duration": part.duration})
    # with Regenerate's other answers, and which one was shown
    return {"role": turn.role, "status": turn.status, "timings": dict(turn.timings), "parts": parts,
            **turn.versions_to_dict()}


# --- import ---

def import_file(path: str | Path, store, owner: str, language: str | None = ENGLISH) -> Conversation:
    """Add the exported conversation at `path` (.zip or .json) to `store` for `owner`; the
    conversation as saved. It keeps its id unless that id is taken (imported twice, or
    by someone else): then it gets a new one. Its title says it was imported (in
    `language`). Raises InputError for anything else."""
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="mmchat-import-") as unpacked:
        if zipfile.is_zipfile(path):
            document, media = _read_zip(path, Path(unpacked))
        else:
            document, media = _read_json(path), {}
        conversation, details = _conversation_from(document, media)
        # The store copies the unpacked files into its media before this folder goes.
        if not store.import_conversation(conversation, owner, created=details.created, updated=details.updated):
            conversation = Conversation(conversation.turns)  # the id is taken: a new one
            store.import_conversation(conversation, owner, created=details.created, updated=details.updated)
    title = details.title or store.summary(conversation.id, owner).title
    store.rename(conversation.id, imported_title(title, language), owner)
    return store.load(conversation.id, owner)


def imported_title(title: str, language: str | None = ENGLISH) -> str:
    """`title` marked as imported ("… (imported)"), unless it says so already (in any language)."""
    title = " ".join(title.split())
    if any(title.endswith(table["imported_suffix"].strip()) for table in TABLES.values()):
        return title
    suffix = say("imported_suffix", language)
    return title[:TITLE_MAX - len(suffix)].rstrip() + suffix


def _read_json(path: Path) -> dict:
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise InputError(NOT_AN_EXPORT)
        return _parse(path.read_bytes())
    except OSError as exc:
        raise InputError(f"The file to import can't be read ({exc.strerror or exc}).") from None


def _parse(data: bytes) -> dict:
    try:
        document = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):  # RecursionError: nested too deep
        raise InputError(NOT_AN_EXPORT) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InputError(NOT_AN_EXPORT)
    if not isinstance(document.get("version"), int) or document["version"] > VERSION:
        raise InputError("This conversation was exported by a newer mmchat; update mmchat to import it.")
    return document


def _read_zip(path: Path, into: Path) -> tuple[dict, dict[str, Path]]:
    """The JSON and each media file it names (unpacked into `into`), by its name in the JSON."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
            found = [name for name in members if PurePosixPath(name).name == JSON_NAME]
            if len(found) != 1:
                raise InputError(NOT_AN_EXPORT)
            json_info = members[found[0]]
            if json_info.file_size > MAX_JSON_BYTES:
                raise InputError(NOT_AN_EXPORT)
            document = _parse(archive.read(json_info))
            folder = PurePosixPath(found[0]).parent
            media: dict[str, Path] = {}
            total = json_info.file_size
            for index, name in enumerate(sorted(_named_files(document))):
                info = members.get(str(folder / name)) if _plain_name(name) else None
                if info is None:  # named but not there: kept as not available
                    continue
                total += info.file_size
                if total > MAX_ARCHIVE_BYTES:
                    raise InputError("This export is too large to import.")
                target = into / f"{index}{PurePosixPath(name).suffix.lower()}"
                with archive.open(info) as source, open(target, "wb") as out:
                    _copy_at_most(source, out, info.file_size)
                media[name] = target
            return document, media
    # zlib.error: a member whose compressed bytes are damaged (found by tests/hostile/test_fuzz.py).
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError, NotImplementedError, zlib.error):
        raise InputError("This .zip is damaged and can't be imported.") from None
    except OSError as exc:
        raise InputError(f"The file to import can't be read ({exc.strerror or exc}).") from None


def _named_files(document: dict) -> set[str]:
    names = set()
    for turn in document.get("turns") or []:
        for part in (turn.get("parts") or []) if isinstance(turn, dict) else []:
            if isinstance(part, dict) and isinstance(part.get("file"), str):
                names.add(part["file"])
    return names


def _plain_name(name: str) -> bool:
    """A relative name below the export's folder, with a media suffix: nothing else is read."""
    pure = PurePosixPath(name)
    return (not pure.is_absolute() and ".." not in pure.parts and "\\" not in name
            and pure.suffix.lower() in MEDIA_SUFFIXES)


def _copy_at_most(source, out, size: int) -> None:
    """Copy no more than the size the archive declared (a lying header can't unpack more)."""
    left = size
    while left > 0:
        block = source.read(min(left, 1 << 20))
        if not block:
            break
        out.write(block)
        left -= len(block)


def _conversation_from(document: dict, media: dict[str, Path]) -> tuple[Conversation, Details]:
    try:
        turns = [_turn_in(turn, media) for turn in document["turns"]]
        roles = [turn.role for turn in turns]
        if any(role == roles[i - 1] for i, role in enumerate(roles) if i) or (roles and roles[0] != "user"):
            raise ValueError("turns must alternate, from a question")
        conversation_id = document.get("id")
        conversation = Conversation(turns, conversation_id) if _is_id(conversation_id) else Conversation(turns)
        title = document.get("title")
        details = Details(title if isinstance(title, str) and title.strip() else None,
                          _time(document.get("created")), _time(document.get("updated")))
    except (KeyError, TypeError, ValueError, AttributeError, OverflowError):  # OverflowError: a huge number
        raise InputError("This conversation file is damaged (its turns can't be read), so it can't be "
                         "imported.") from None
    if not turns:
        raise InputError("This conversation is empty: there is nothing to import.")
    return conversation, details


def _turn_in(data: dict, media: dict[str, Path]) -> Turn:
    role, status = data["role"], data.get("status", "complete")
    if role not in ("user", "assistant") or status not in ("complete", "interrupted", "error"):
        raise ValueError(f"unknown role or status: {role!r}, {status!r}")
    parts: list[Part] = []
    for part in data["parts"]:
        kind = part["type"]
        if kind == "text":
            preset = part.get("preset")
            parts.append(TextPart(str(part["text"]), preset if isinstance(preset, str) else None))
        elif kind in ("image", "video", "audio"):
            source = media.get(part.get("file")) if isinstance(part.get("file"), str) else None
            if kind == "image" and source is not None and not _is_image(source):
                source = None  # not a photo after all: not available, rather than a photo that breaks the chat
            if kind == "video" and source is not None and not has_pictures(source):
                source = None
            # A file that is not in the export is not available: the store keeps the part
            # as such (a path that names no file); a fresh random name never names one.
            where = str(source) if source is not None else f"/not-available/{uuid.uuid4().hex}"
            if kind == "image":
                parts.append(ImagePart(where))
            elif kind == "video":
                parts.append(VideoPart(where, float(part.get("duration") or 0.0), str(part.get("transcript") or "")))
            else:
                language = part.get("language")  # a language code, or none known
                parts.append(AudioPart(where, str(part.get("transcript") or ""),
                                       language if isinstance(language, str) else None,
                                       float(part.get("duration") or 0.0)))
        else:
            raise ValueError(f"unknown part type: {kind!r}")
    timings = {str(k): float(v) for k, v in (data.get("timings") or {}).items()}
    others, version = Turn.versions_from_dict(data) if role == "assistant" else ([], 0)
    return Turn(role, parts, status, timings, others, version)


def _is_image(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _is_id(value) -> bool:
    return isinstance(value, str) and len(value) == 32 and all(c in "0123456789abcdef" for c in value)


def _time(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else None
