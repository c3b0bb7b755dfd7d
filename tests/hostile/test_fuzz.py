"""Fuzzing (issue 16): Hypothesis throws generated and damaged input at each place where
data from outside comes in, through the real code (real files, a real SQLite store, a
real server on loopback), and checks that each input is either taken whole or refused
with a message, never anything else.

- media ingestion: `check_image` / `load_photo` on arbitrary bytes and on real PNG, JPEG,
  GIF, WebP, TIFF and BMP files with bytes flipped, cut, inserted or deleted; the same
  for `load_audio` with WAV, FLAC and OGG. Either a usable result (a photo within its
  limits as 8-bit RGB; finite 16 kHz samples of an allowed length) or an InputError with
  a message; never another exception.
- the sentence splitter, on any Unicode text (control characters, combining marks,
  right-to-left, emoji) with any limits, cut into any deltas: no text lost, no empty
  unit, the same units however the text arrives, and every unit can be made speakable.
- conversations: any turns (any text, roles, statuses, timings, photos and recordings
  present or gone) round-trip through `Conversation.to_json`/`from_json`, the SQLite
  store and Export/Import unchanged; a damaged export, or a damaged conversation file
  of the old JSON store, is refused with a message (or skipped and logged).
- the API's request parsing: arbitrary bytes, arbitrary JSON and near-valid chat and
  speech requests sent to one real server (mmchat.server's app, uvicorn on loopback,
  shapes-vlm behind it) never get a 5xx; every refusal is a 4xx in OpenAI's error shape.

Crashing inputs that were found are kept below as explicit `@example`s. `EXAMPLES` is
how many inputs each test tries (the counts the issue's note reports).
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import tempfile
import zipfile
from datetime import timedelta
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.media.audio import MIN_SECONDS, SAMPLE_RATE, load_audio
from mmchat.config import Config
from mmchat.conversation import AudioPart, Conversation, ImagePart, TextPart, Turn
from mmchat.engine.local import create_local_engine
from mmchat.errors import InputError
from mmchat.media.images import check_image
from mmchat.media.photos import load_photo
from mmchat.store import SQLiteStore
from mmchat.transfer import Details, import_file, imported_title, write_export
from mmchat.tts.speakable import to_speakable
from mmchat.tts.splitter import SentenceSplitter
from test_api_support import LiveServer

# How many inputs each property tries. Kept modest so the file runs in about two minutes
# on a busy 2-core CI machine; raise them locally to search longer.
EXAMPLES = {
    "photo bytes": 150, "photo mutations": 300, "audio bytes": 100, "audio mutations": 250,
    "splitter": 300, "splitter deltas": 200, "conversation json": 200, "conversation json damaged": 200,
    "store round trip": 100, "old store damaged": 100, "export round trip": 60, "export damaged": 150,
    "export documents": 200, "import bytes": 150, "api bytes": 100, "api json": 150, "api chat": 200, "api speech": 60,
}
# A hang shows as an example far past this (each is milliseconds); generous, so a
# loaded CI machine never trips it. Example databases are off: findings are kept below.
SLOW = timedelta(seconds=30)


def fuzz(name: str, **options):
    return settings(max_examples=EXAMPLES[name], deadline=SLOW, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large], **options)


@pytest.fixture(scope="module")
def folder():
    path = Path(tempfile.mkdtemp(prefix="mmchat-fuzz-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


_counter = iter(range(10**9))


def write(folder: Path, data: bytes, suffix: str) -> Path:
    path = folder / f"input-{next(_counter)}{suffix}"
    path.write_bytes(data)
    return path


# --- damaging real files ---

@st.composite
def damaged(draw, original: bytes) -> bytes:
    """`original` with one to four edits, half of them in the first 64 bytes (the header)."""
    data = bytearray(original)
    for _ in range(draw(st.integers(1, 4))):
        size = len(data)
        at = draw(st.integers(0, min(size, 64)) | st.integers(0, size))
        edit = draw(st.sampled_from(("flip", "cut", "insert", "delete", "overwrite")))
        if edit == "flip" and at < size:
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "cut":
            del data[at:]
        elif edit == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif edit == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif edit == "overwrite":
            patch = draw(st.sampled_from((b"\x00" * 4, b"\xff" * 4, b"\x7f\xff\xff\xff", b"\x80\x00\x00\x00")) |
                         st.binary(min_size=1, max_size=16))
            data[at:at + len(patch)] = patch
    return bytes(data)


def encoded(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


SCENE = draw_test_image("star", "red", "left", 2, word="CAT")
PHOTOS = {
    ".png": encoded(SCENE, "PNG"),
    ".jpg": encoded(SCENE, "JPEG", quality=90),
    ".jpeg": encoded(SCENE.resize((160, 120)), "JPEG", progressive=True),
    ".gif": encoded(SCENE.convert("P"), "GIF"),
    ".webp": encoded(SCENE, "WEBP"),
    ".tif": encoded(SCENE, "TIFF", compression="tiff_lzw"),
    ".bmp": encoded(SCENE, "BMP"),
}
MAX_PIXELS = 1_000_000  # --max-image-pixels for these tests
MAX_BYTES = 2_000_000
MODEL_PIXELS = 50_000  # the model's pixel budget (--max-pixels), below the photo's


def check_photo(folder: Path, data: bytes, suffix: str) -> None:
    """The property: check_image and load_photo take the file or refuse it with a message."""
    path = write(folder, data, suffix)
    try:
        width, height = check_image(path, max_pixels=MAX_PIXELS, max_bytes=MAX_BYTES)
    except InputError as refusal:
        assert refusal.message.strip()
        checked = False
    else:
        assert width > 0 and height > 0 and width * height <= MAX_PIXELS
        checked = True
    try:
        photo = load_photo(path, MODEL_PIXELS)
    except InputError as refusal:
        # A photo check_image passed may still fail to decode further in (it says so then).
        assert refusal.message.strip()
        return
    assert photo.mode == "RGB" and photo.width * photo.height <= MODEL_PIXELS
    if checked:
        assert photo.width >= 1 and photo.height >= 1


@fuzz("photo bytes")
@given(data=st.binary(max_size=4096), suffix=st.sampled_from(sorted(PHOTOS)))
@example(data=b"\x89PNG\r\n\x1a\n", suffix=".png")
@example(data=b"GIF89a\xff\xff\xff\xff", suffix=".gif")
def test_any_bytes_as_a_photo_are_taken_or_refused_with_a_message(folder, data, suffix):
    if data:  # an empty file is its own refusal, tested in test_images.py
        check_photo(folder, data, suffix)


@fuzz("photo mutations")
@given(case=st.sampled_from(sorted(PHOTOS)).flatmap(lambda suffix: st.tuples(st.just(suffix),
                                                                             damaged(PHOTOS[suffix]))))
def test_a_damaged_photo_is_taken_or_refused_with_a_message(folder, case):
    suffix, data = case
    if data:
        check_photo(folder, data, suffix)


def _recording(format: str, subtype: str | None = None) -> bytes:
    seconds = np.arange(int(0.6 * 22050)) / 22050
    tone = (0.3 * np.sin(2 * np.pi * 440 * seconds)).astype(np.float32)
    buffer = io.BytesIO()
    soundfile.write(buffer, np.stack([tone, tone[::-1]], axis=1), 22050, format=format, subtype=subtype)
    return buffer.getvalue()


RECORDINGS = {
    ".wav": _recording("WAV", "PCM_16"),
    ".float.wav": _recording("WAV", "FLOAT"),
    ".flac": _recording("FLAC"),
    ".ogg": _recording("OGG", "VORBIS"),
}
MAX_SECONDS = 30.0


def check_recording(folder: Path, data: bytes, suffix: str) -> None:
    """The property: load_audio, given the bytes or the file, gives samples or refuses with a message."""
    for source in (data, write(folder, data, suffix)):
        try:
            samples = load_audio(source, max_seconds=MAX_SECONDS)
        except InputError as refusal:
            assert refusal.message.strip()
            continue
        assert samples.dtype == np.float32 and samples.ndim == 1
        assert MIN_SECONDS * SAMPLE_RATE <= samples.size <= (MAX_SECONDS + 1) * SAMPLE_RATE
        assert np.isfinite(samples).all()


@fuzz("audio bytes")
@given(data=st.binary(min_size=1, max_size=4096), suffix=st.sampled_from(sorted(RECORDINGS)))
@example(data=b"RIFF\xff\xff\xff\xffWAVEfmt ", suffix=".wav")
def test_any_bytes_as_a_recording_are_taken_or_refused_with_a_message(folder, data, suffix):
    check_recording(folder, data, suffix)


@fuzz("audio mutations")
@given(case=st.sampled_from(sorted(RECORDINGS)).flatmap(lambda suffix: st.tuples(st.just(suffix),
                                                                                 damaged(RECORDINGS[suffix]))))
def test_a_damaged_recording_is_taken_or_refused_with_a_message(folder, case):
    suffix, data = case
    if data:
        check_recording(folder, data, suffix)


# --- the sentence splitter ---

# Any Unicode but lone surrogates (which no UTF-8 text, hence no model reply, can hold).
ANY_CHARACTER = st.characters(blacklist_categories=("Cs",))
any_text = st.text(ANY_CHARACTER, max_size=300)
# Stretches of what splitting looks at, so sentence ends and fences are common.
PUNCTUATION = st.sampled_from([".", "...", "!", "?", "。", "！", "，", "、", ",", ";", ":", "—", " – ", "\n",
                               "```", "```\n", "\n```", "~~~", "Dr.", "3.14", "1. ", " ", "\u200b", "\u202e",
                               "e\u0301", "👍🏽", "\r\n", "\x00", "\x1b[0m", "\t"])
reply_like = st.lists(st.one_of(PUNCTUATION, st.text(ANY_CHARACTER, max_size=12)), max_size=50).map("".join)
splitter_limits = st.fixed_dictionaries({
    "max_chars": st.integers(1, 250), "first_max_chars": st.integers(1, 250),
    "first_clause_chars": st.none() | st.integers(1, 120)})


def no_space(text: str) -> str:
    return "".join(text.split())


def split(text: str, limits: dict) -> list[str]:
    splitter = SentenceSplitter(**limits)
    return splitter.feed(text) + splitter.flush()


@fuzz("splitter")
@given(text=any_text | reply_like, limits=splitter_limits)
@example(text="```\n" + "x" * 500, limits={"max_chars": 1, "first_max_chars": 1, "first_clause_chars": 1})
def test_the_splitter_loses_nothing_and_gives_no_empty_unit_whatever_the_text_and_limits(text, limits):
    units = split(text, limits)
    assert no_space("".join(units)) == no_space(text)
    for unit in units:
        assert unit and unit == unit.strip()
        assert isinstance(to_speakable(unit), str)


@st.composite
def text_in_deltas(draw):
    text = draw(any_text | reply_like)
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=30)))
    bounds = [0, *cuts, len(text)]
    return text, [text[a:b] for a, b in zip(bounds, bounds[1:])]


@fuzz("splitter deltas")
@given(case=text_in_deltas(), limits=splitter_limits)
def test_the_splitter_gives_the_same_units_however_the_text_arrives(case, limits):
    text, deltas = case
    splitter = SentenceSplitter(**limits)
    units = [unit for delta in deltas for unit in splitter.feed(delta)] + splitter.flush()
    assert units == split(text, limits)
    assert splitter.flush() == []  # ready for the next reply, with nothing left over


# --- conversations ---

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
texts = st.text(ANY_CHARACTER, max_size=80)
# A preset is a tag or none; "" is none too (to_json leaves it out), so it is not drawn.
PRESETS = st.none() | st.sampled_from(["describe:brief", "describe:detailed", "light", "describe:nonsense"]) | texts.filter(bool)


@st.composite
def parts(draw, media: dict[str, Path], role: str):
    kinds = ["text"] if role == "assistant" else ["text", "text", "image", "audio"]
    kind = draw(st.sampled_from(kinds))
    if kind == "text":
        return TextPart(draw(texts), draw(PRESETS))
    # A file that is there, or one that is gone (kept as not available).
    there = draw(st.booleans())
    if kind == "image":
        return ImagePart(str(media["photo"] if there else media["gone"] / "photo.png"))
    return AudioPart(str(media["recording"] if there else media["gone"] / "recording.wav"), draw(texts),
                     draw(st.none() | st.sampled_from(["en", "zh", "pt-BR"]) | texts),
                     draw(st.floats(0, 1e6, allow_nan=False)))


@st.composite
def turns(draw, media: dict[str, Path], role: str):
    return Turn(role, draw(st.lists(parts(media, role), min_size=1, max_size=4)),
                draw(st.sampled_from(["complete", "interrupted", "error"])),
                draw(st.dictionaries(st.sampled_from(["transcript", "first_token", "first_audio", "done"]) | texts,
                                     finite, max_size=4)))


@st.composite
def conversations(draw, media: dict[str, Path], alternating: bool = True):
    count = draw(st.integers(1 if alternating else 0, 6))
    if alternating:  # as the app makes them: a question, then its answer
        roles = ["user" if i % 2 == 0 else "assistant" for i in range(count)]
    else:
        roles = draw(st.lists(st.sampled_from(["user", "assistant"]), min_size=count, max_size=count))
    return Conversation([draw(turns(media, role)) for role in roles])


def _media(root: Path) -> dict[str, Path]:
    root.mkdir(parents=True, exist_ok=True)
    photo, recording = root / "photo.png", root / "recording.wav"
    photo.write_bytes(PHOTOS[".png"])
    recording.write_bytes(RECORDINGS[".wav"])
    return {"photo": photo, "recording": recording, "gone": root / "gone"}


MEDIA = _media(Path(tempfile.mkdtemp(prefix="mmchat-fuzz-media-")))


def same_content(original: Conversation, loaded: Conversation) -> None:
    """Every field equal; a photo or recording that was there has the same bytes (the store
    keeps its own copy), one that was gone is still not there."""
    assert len(loaded.turns) == len(original.turns)
    for before, after in zip(original.turns, loaded.turns):
        assert (after.role, after.status, after.timings) == (before.role, before.status, before.timings)
        assert len(after.parts) == len(before.parts)
        for old, new in zip(before.parts, after.parts):
            assert type(new) is type(old)
            if isinstance(old, TextPart):
                assert new == old
                continue
            if Path(old.path).is_file():
                assert Path(new.path).read_bytes() == Path(old.path).read_bytes()
            else:
                assert not Path(new.path).is_file()
            if isinstance(old, AudioPart):
                assert (new.transcript, new.language, new.duration) == (old.transcript, old.language, old.duration)


@fuzz("conversation json")
@given(conversation=conversations(MEDIA, alternating=False))
@example(conversation=Conversation([Turn("user", [TextPart("\x00\ud7ff\U0010ffff\u2028", "\x00")], "complete",
                                         {"\x00": -0.0, "done": 1e308})]))
def test_a_conversation_round_trips_through_its_json(conversation):
    assert Conversation.from_json(conversation.to_json()) == conversation


# JSON values of every kind, for damaged documents.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(ANY_CHARACTER, max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


@st.composite
def damaged_turn_documents(draw, media: dict[str, Path]):
    """A conversation's JSON (the app's own shape) with some values replaced by anything."""
    document = json.loads(draw(conversations(media, alternating=False)).to_json())

    def spoil(value):
        if draw(st.integers(0, 5)) == 0:
            return draw(json_values)
        if isinstance(value, dict):
            return {key: spoil(item) for key, item in value.items() if draw(st.integers(0, 9))}
        if isinstance(value, list):
            return [spoil(item) for item in value]
        return value

    return spoil(document)


@fuzz("conversation json damaged")
@given(document=damaged_turn_documents(MEDIA) | json_values)
@example(document={"id": "da1ebca8565941c9aa1120ef340e625d", "turns": [{"role": [], "parts": []}]})
@example(document={"id": "da1ebca8565941c9aa1120ef340e625d", "turns": [{"role": "user", "parts": [
    {"type": "text", "text": 7}, {"type": "image", "path": None}]}]})
def test_a_damaged_conversation_file_of_the_old_store_is_skipped_not_fatal(tmp_path_factory, document):
    # The old JSON store's files are imported when a data folder is first opened: a
    # damaged one must be logged and skipped, and the rest of the folder opened.
    data = tmp_path_factory.mktemp("old-store")
    (data / "conversations").mkdir()
    good = Conversation([Turn("user", [TextPart("Is it red?")]), Turn("assistant", [TextPart("Yes.")])])
    (data / "conversations" / f"{good.id}.json").write_text(good.to_json(), encoding="utf-8")
    (data / "conversations" / "damaged.json").write_text(json.dumps(document), encoding="utf-8")
    with SQLiteStore(data) as store:
        assert store.load(good.id) == good
        for summary in store.list_conversations():
            loaded = store.load(summary.id)
            assert loaded is not None
            for turn in loaded.turns:  # what the page and the model are given is well formed
                assert turn.role in ("user", "assistant") and turn.status in ("complete", "interrupted", "error")
                assert isinstance(turn.shown_text, str) and isinstance(turn.text, str)
                assert all(isinstance(part, (TextPart, ImagePart, AudioPart)) for part in turn.parts)
                assert all(isinstance(value, float) for value in turn.timings.values())
    shutil.rmtree(data, ignore_errors=True)


@fuzz("old store damaged")
@given(data=st.binary(max_size=600) | damaged(Conversation([Turn("user", [TextPart("Hi")])]).to_json().encode()))
@example(data=b"[" * 100_000)
@example(data=b'{"id": "' + b"0" * 32 + b'", "turns": [{"role": "user", "parts": [], "timings": {"a": 1' +
         b"0" * 400 + b"}}]}")
def test_a_conversation_file_of_the_old_store_that_is_not_json_is_skipped(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("old-store")
    (folder / "conversations").mkdir()
    (folder / "conversations" / "damaged.json").write_bytes(data)
    with SQLiteStore(folder) as store:
        for summary in store.list_conversations():
            assert store.load(summary.id) is not None
    shutil.rmtree(folder, ignore_errors=True)


@fuzz("store round trip")
@given(conversation=conversations(MEDIA, alternating=False))
def test_a_conversation_round_trips_through_the_store(tmp_path_factory, conversation):
    data = tmp_path_factory.mktemp("store")
    with SQLiteStore(data) as store:
        store.save(conversation)
        loaded = store.load(conversation.id)
        assert loaded is not None and loaded.id == conversation.id
        same_content(conversation, loaded)
        store.save(loaded)  # saved again as it came back: still the same
        same_content(conversation, store.load(conversation.id))
    with SQLiteStore(data) as reopened:
        same_content(conversation, reopened.load(conversation.id))
    shutil.rmtree(data, ignore_errors=True)


titles = st.none() | st.text(ANY_CHARACTER, min_size=1, max_size=40).filter(str.strip)


@fuzz("export round trip")
@given(conversation=conversations(MEDIA), title=titles,
       times=st.tuples(st.floats(1, 4e9), st.floats(1, 4e9)))
def test_a_conversation_round_trips_through_export_and_import(tmp_path_factory, conversation, title, times):
    folder = tmp_path_factory.mktemp("transfer")
    archive = folder / "conversation.zip"
    write_export(conversation, archive, Details(title, *times))
    with SQLiteStore(folder / "data") as store:
        imported = import_file(archive, store, "someone")
        assert imported.id == conversation.id
        same_content(conversation, imported)
        summary = store.summary(imported.id, "someone")
        if title is not None:  # as the store tidies a title: its words, one space apart, marked as a copy
            assert summary.title == imported_title(title) and summary.title.startswith(" ".join(title.split())[:150])
    shutil.rmtree(folder, ignore_errors=True)


def _export_bytes() -> tuple[bytes, bytes]:
    """A real export (.zip) and its conversation.json, of a conversation with a photo and a recording."""
    conversation = Conversation([
        Turn("user", [ImagePart(str(MEDIA["photo"])), TextPart("What colour is the shape?")]),
        Turn("assistant", [TextPart("red")], "complete", {"first_token": 0.2, "done": 0.3}),
        Turn("user", [AudioPart(str(MEDIA["recording"]), "And its shape?", "en", 0.6)]),
        Turn("assistant", [TextPart("A st")], "interrupted")])
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "export.zip"
        write_export(conversation, path, Details("Shapes", 1.7e9, 1.7e9))
        archive = path.read_bytes()
        with zipfile.ZipFile(path) as opened:
            document = next(opened.read(n) for n in opened.namelist() if n.endswith("conversation.json"))
    return archive, document


EXPORT_ZIP, EXPORT_JSON = _export_bytes()


def check_import(folder: Path, data: bytes, suffix: str) -> None:
    """The property: import_file adds a readable conversation or refuses with a message."""
    path = write(folder, data, suffix)
    with SQLiteStore(folder / f"data-{path.stem}") as store:
        try:
            imported = import_file(path, store, "someone")
        except InputError as refusal:
            assert refusal.message.strip()
            assert store.list_conversations("someone") == []  # nothing half-imported
        else:
            assert imported is not None and imported.turns and imported.turns[0].role == "user"
            assert store.load(imported.id, "someone") == imported
    shutil.rmtree(folder / f"data-{path.stem}", ignore_errors=True)


@fuzz("export damaged")
@given(case=st.tuples(st.just(".zip"), damaged(EXPORT_ZIP)) | st.tuples(st.just(".json"), damaged(EXPORT_JSON)))
def test_a_damaged_export_is_imported_or_refused_with_a_message(folder, case):
    suffix, data = case
    check_import(folder, data, suffix)


@st.composite
def export_documents(draw):
    """conversation.json as Export writes it, with values replaced by any JSON."""
    document = json.loads(EXPORT_JSON)
    for _ in range(draw(st.integers(1, 4))):
        path, target = [], document
        while isinstance(target, (dict, list)) and target and draw(st.integers(0, 3)):
            key = draw(st.sampled_from(sorted(target)) if isinstance(target, dict) else
                       st.integers(0, len(target) - 1))
            path.append(key)
            parent, target = target, target[key]
        if path:
            parent[path[-1]] = draw(json_values)
    return document


@fuzz("export documents")
@given(document=export_documents())
@example(document={"format": "mmchat-conversation", "version": 1, "turns": [
    {"role": "user", "parts": [{"type": "text", "text": "hi"}], "timings": {"done": 10**400}}]})
@example(document={"format": "mmchat-conversation", "version": 1, "created": 10**400, "turns": [
    {"role": "user", "parts": [{"type": "audio", "transcript": "hi", "duration": 10**400}]}]})
@example(document={"format": "mmchat-conversation", "version": 1, "turns": [
    {"role": "user", "parts": [{"type": "audio", "transcript": "hi", "language": [], "duration": 0.6}]}]})
def test_an_export_document_with_any_values_is_imported_or_refused_with_a_message(folder, document):
    check_import(folder, json.dumps(document).encode(), ".json")


@fuzz("import bytes")
@given(data=st.binary(max_size=200))
@example(data=b'{"format": "mmchat-conversation", "version": 1, "turns": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
def test_any_bytes_to_import_are_refused_with_a_message(folder, data):
    check_import(folder, data, ".json")


# --- the API's request parsing ---

@pytest.fixture(scope="module")
def server(folder):
    engine = create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))
    config = Config(model=str(shapes_vlm_path()), device="cpu", data_dir=folder / "api-data", temperature=0.0,
                    stt_backend="none", tts_backend="none", max_new_tokens=8,
                    max_turns_per_minute=0)  # every request may reach the model (the limit has its own tests)
    with LiveServer(make_services(config, engine)) as live:
        with httpx.Client(base_url=live.url, timeout=120) as client:
            yield client


def check_reply(response: httpx.Response, *, unavailable_ok: bool = False) -> None:
    """The property: 200 with a whole answer, or a 4xx (503 where a service is off) in OpenAI's error shape."""
    if response.status_code == 200:
        if response.headers["content-type"].startswith("text/event-stream"):
            events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
            assert events and events[-1] == "[DONE]"
            for data in events[:-1]:
                assert json.loads(data).get("error", {}).get("type") != "server_error", data
        elif response.headers["content-type"].startswith("application/json"):
            assert response.json()["choices"][0]["message"]["role"] == "assistant"
        return
    assert 400 <= response.status_code < 500 or (unavailable_ok and response.status_code == 503), response.text
    error = response.json()["error"]
    assert isinstance(error["message"], str) and error["message"].strip()


CHAT = "/v1/chat/completions"


def post_json(client: httpx.Client, path: str, body) -> httpx.Response:
    """`body` as JSON, NaN and Infinity included (which httpx's json= refuses, and a hostile client sends)."""
    return client.post(path, content=json.dumps(body), headers={"content-type": "application/json"})


@fuzz("api bytes")
@given(body=st.binary(max_size=300) | st.text(ANY_CHARACTER, max_size=100).map(str.encode),
       content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded",
                                     "multipart/form-data; boundary=x", "", "application/json; charset=latin-1"]))
@example(body=b"\xff\xfe{", content_type="application/json")
@example(body=b"[" * 50_000, content_type="application/json")
def test_any_bytes_posted_to_the_api_get_a_4xx(server, body, content_type):
    headers = {"content-type": content_type} if content_type else {}
    for path in (CHAT, "/v1/audio/speech", "/v1/audio/transcriptions"):
        check_reply(server.post(path, content=body, headers=headers), unavailable_ok=True)


@fuzz("api json")
@given(body=json_values)
def test_any_json_posted_to_the_api_gets_a_4xx_or_an_answer(server, body):
    check_reply(post_json(server, CHAT, body))
    check_reply(post_json(server, "/v1/audio/speech", body), unavailable_ok=True)


def _photo_url(colour: str) -> str:
    return "data:image/png;base64," + base64.b64encode(encoded(draw_test_image("circle", colour), "PNG")).decode()


GOOD_PHOTO = _photo_url("blue")
image_urls = st.one_of(
    st.just(GOOD_PHOTO), st.sampled_from([
        "data:image/png;base64,", "data:image/png;base64,!!!!", "data:text/plain;base64,aGk=", "data:,hi",
        "data:image/png,abc", "file:///etc/passwd", "/etc/hostname", "http://127.0.0.1/x.png", "https://x/y.jpg",
        "DATA:IMAGE/PNG;BASE64," + GOOD_PHOTO.partition(",")[2], "data:image/png;base64," + "A" * 5]),
    damaged(GOOD_PHOTO.encode()).map(lambda b: b.decode("latin-1")),
    st.text(ANY_CHARACTER, max_size=40))
content_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.one_of(
        image_urls, st.fixed_dictionaries({"url": image_urls}, optional={"detail": st.sampled_from(
            ["auto", "low", "high", "max", ""]) | json_values}))}),
    st.fixed_dictionaries({"type": st.sampled_from(["input_audio", "image", "file", "refusal", ""]) | json_values},
                          optional={"text": json_values}),
    st.dictionaries(st.text(max_size=6), json_values, max_size=3))
messages = st.fixed_dictionaries(
    {"role": st.sampled_from(["user", "user", "assistant", "system", "developer", "tool", "function", "USER", ""])
     | json_values},
    optional={"content": texts | st.lists(content_parts, max_size=3) | json_values, "name": texts})
numbers = st.none() | st.integers() | st.floats() | st.sampled_from([0, 1, 2, -1, 0.5, 1e308, 10**30])
chat_requests = st.fixed_dictionaries(
    {"messages": st.lists(messages, min_size=0, max_size=4) | json_values},
    optional={"model": texts | json_values, "stream": st.booleans() | json_values,
              "stream_options": st.fixed_dictionaries({}, optional={"include_usage": st.booleans() | json_values})
              | json_values,
              "max_tokens": st.integers(-2, 12) | numbers, "max_completion_tokens": st.integers(-2, 12) | numbers,
              "temperature": numbers, "top_p": numbers, "seed": st.integers() | numbers,
              "stop": st.none() | texts | st.lists(texts, max_size=6) | json_values,
              "n": numbers, "response_format": st.fixed_dictionaries({"type": st.sampled_from(
                  ["text", "json_object", "json_schema"])}) | json_values,
              "tools": st.none() | st.lists(json_values, max_size=2), "logprobs": st.booleans() | json_values,
              "frequency_penalty": numbers, "presence_penalty": numbers, "user": json_values})

# Requests a client could well send (a photo question, its history, sampling options in
# range), each option now and then replaced by anything: these reach the model.
question = st.fixed_dictionaries({"role": st.just("user"), "content": texts | st.lists(
    st.one_of(st.fixed_dictionaries({"type": st.just("image_url"), "image_url": st.fixed_dictionaries(
        {"url": st.just(GOOD_PHOTO) | image_urls})}),
        st.fixed_dictionaries({"type": st.just("text"), "text": st.just("What colour is the shape?") | texts})),
    min_size=1, max_size=3)})
history = st.lists(st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                                          "content": texts}), max_size=3)
plausible_chat = st.fixed_dictionaries(
    {"messages": st.tuples(history, question).map(lambda pair: [*pair[0], pair[1]]),
     "max_tokens": st.integers(1, 6)},
    optional={"stream": st.booleans(), "stream_options": st.just({"include_usage": True}),
              "temperature": st.floats(0, 2) | numbers, "top_p": st.floats(0, 1) | numbers,
              "seed": st.integers(-2**63, 2**64 - 1) | numbers, "stop": st.lists(texts, max_size=4) | json_values,
              "max_completion_tokens": st.integers(1, 6) | numbers})


@fuzz("api chat")
@given(body=chat_requests | plausible_chat)
@example(body={"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": GOOD_PHOTO}},
                                                         {"type": "text", "text": "What colour is the shape?"}]}],
               "seed": 2**70, "temperature": 1, "max_tokens": 2})
@example(body={"messages": [{"role": "user", "content": "hi"}], "seed": -2**70, "max_tokens": 2})
@example(body={"messages": [{"role": "user", "content": "hi"}], "stream": True, "seed": 2**64, "max_tokens": 2})
def test_a_chat_request_with_any_values_gets_a_4xx_or_an_answer(server, body):
    response = post_json(server, CHAT, body)
    event(f"status {response.status_code}")  # how many reached the model: --hypothesis-show-statistics
    check_reply(response)


@fuzz("api speech")
@given(body=st.fixed_dictionaries({"input": texts | json_values}, optional={
    "model": texts, "voice": texts | json_values, "speed": numbers,
    "response_format": st.sampled_from(["mp3", "wav", "pcm", "opus", "aac", "flac", "ogg", ""]) | json_values}))
def test_a_speech_request_with_any_values_gets_a_4xx_or_says_speech_is_off(server, body):
    check_reply(post_json(server, "/v1/audio/speech", body), unavailable_ok=True)


def test_the_server_still_answers_a_photo_question_after_the_fuzzing(server):
    # Last in the file: nothing the fuzzing sent left the server unable to answer.
    reply = server.post(CHAT, json={"temperature": 0, "max_tokens": 8, "messages": [{"role": "user", "content": [
        {"type": "image_url", "image_url": {"url": GOOD_PHOTO}}, {"type": "text", "text": "What colour is the shape?"}]}]})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].strip() == "blue"

