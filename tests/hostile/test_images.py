"""Hostile photos: files a user may send that are not plain RGB JPEGs, each tried
through mmchat.media.images, the turn layer, the page's handlers and the HTTP API.

The corpus is made here, in code, with Pillow, numpy and pillow-heif's encoder (so
every sample's provenance is this file): damaged and cut-short files of every
accepted format, decompression bombs, pictures too long and thin for the model,
text and other formats renamed to .png, and good photos of odd kinds (CMYK, 16-bit,
transparent, animated, multi-page, EXIF-rotated, HEIC).

Every refusal must say what is wrong, in the page (an InputRejected shown as a warning,
the conversation as it was, the message left in the box) and in the API (a 400 with
the same message). Every good photo must be
answered by shapes-vlm from the picture as a person sees it: a CMYK or 16-bit red
circle is still "red", an EXIF-rotated scene is read upright, an animation by its
first frame.
"""

from __future__ import annotations

import base64
import io
import struct
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx
import numpy as np
import pytest
from PIL import Image

from conftest import make_services, with_config
from fixture_models import draw_test_image
from mmchat.conversation import TextPart
from mmchat.engine import GenerationParams
from mmchat.errors import InputError
from mmchat.events import InputRejected, Notice, QuestionAdded, TurnDone
from mmchat.media.images import ACCEPTED_FORMATS, MAX_ASPECT_RATIO, accepted_formats, check_image
from mmchat.media.photos import load_photo
from mmchat.media.images import open_for_model, photo_notice
from mmchat.turn.session import ChatSession
from mmchat.turn import UserInput, submit
from test_api_support import LiveServer

MB = 1_000_000
MAX_PIXELS = 40_000_000  # the tests' --max-image-pixels: room for a 48 MP header below Pillow's own ceiling
GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)
COLOUR = "What colour is the shape?"
WHERE = "Where is the shape?"
FORMATS = "JPEG, PNG, WebP, GIF, BMP, TIFF or HEIC"


# --- making the corpus ---

def encode(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


def red_circle() -> Image.Image:
    return draw_test_image("circle", "red", "left")


def left_circle() -> Image.Image:
    """A scene whose one shape shapes-vlm places "left" (in some others it says "bottom")."""
    return draw_test_image("circle", "red", "left", seed=1)


def blue_square() -> Image.Image:
    return draw_test_image("square", "blue", "right", seed=1)


def cut(data: bytes, keep: float = 0.5) -> bytes:
    """The file as an interrupted upload leaves it."""
    return data[: int(len(data) * keep)]


def noisy_picture(seed: int = 0) -> Image.Image:
    """Pixels that compress poorly (so half a file is half its pixels), the same every run."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (256, 256, 3), dtype=np.uint8))


def noise(format: str, **options) -> bytes:
    return encode(noisy_picture(), format, **options)


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def blank_png(width: int, height: int) -> bytes:
    """A valid black 1-bit PNG: a few kB on disk however many pixels it holds, which is
    what makes a decompression bomb."""
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    pixels = zlib.compressobj(9)
    body = b"".join(pixels.compress(row) for _ in range(height)) + pixels.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def png16(values: np.ndarray) -> bytes:
    """A 16-bit PNG of `values` ([H, W] grey or [H, W, 3] RGB, uint16), which Pillow reads
    but does not write."""
    height, width = values.shape[:2]
    colour_type = 2 if values.ndim == 3 else 0
    rows = values.astype(">u2").reshape(height, -1)
    raw = b"".join(b"\x00" + row.tobytes() for row in rows)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def scribbled_jpeg() -> bytes:
    data = bytearray(noise("JPEG", quality=90))
    data[1000:1200] = b"\xff" * 200  # markers where the compressed scan should be
    return bytes(data)


def bad_checksum_png() -> bytes:
    data = bytearray(encode(noisy_picture(1), "PNG"))
    data[60] ^= 0xFF  # a byte inside the pixel data: its CRC no longer matches
    return bytes(data)


def heic(image: Image.Image) -> bytes:
    import pillow_heif

    pillow_heif.register_heif_opener()
    return encode(image, "HEIF", quality=90)


def sixteen_bit_red() -> bytes:
    rgb = np.asarray(red_circle(), dtype=np.uint16) * 257  # [H, W, 3], 0..65535
    return png16(rgb)


def sixteen_bit_grey() -> bytes:
    grey = np.asarray(red_circle().convert("L"), dtype=np.uint16) * 257  # [H, W]
    return png16(grey)


def with_clear_background(mode: str) -> bytes:
    """The red circle with its background transparent, and black where it is clear: shown
    as stored, the scene would be a red circle on black."""
    scene = red_circle()
    clear = np.asarray(scene.convert("L")) > 200  # [H, W] the near-white background
    pixels = np.asarray(scene).copy()
    pixels[clear] = 0
    alpha = np.where(clear, 0, 255).astype(np.uint8)
    rgba = Image.fromarray(np.dstack([pixels, alpha]), "RGBA")
    if mode == "P":  # a palette photo whose entry 0, transparent, is black
        quantized = scene.quantize(colors=15)
        index = np.asarray(quantized).astype(np.uint8) + 1  # [H, W] entries 1..15 for the scene
        index[clear] = 0
        paletted = Image.fromarray(index, "P")
        paletted.putpalette([0, 0, 0] + quantized.getpalette()[: 15 * 3])
        return encode(paletted, "PNG", transparency=0)
    return encode(rgba, "PNG")


def animation(format: str) -> bytes:
    first, second = red_circle(), blue_square()
    options = {"duration": 200, "loop": 0}
    if format == "TIFF":
        options = {}
    return encode(first, format, save_all=True, append_images=[second], **options)


def sideways(orientation: int | None) -> bytes:
    """The left-hand circle stored turned a quarter to the left, so that its shape
    lies at the bottom; with EXIF orientation 6 a viewer turns it back upright."""
    stored = left_circle().transpose(Image.Transpose.ROTATE_90)
    if orientation is None:
        return encode(stored, "JPEG", quality=95)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif)


@dataclass(frozen=True)
class Refused:
    name: str  # the file's name, with the extension a user would give it
    make: Callable[[], bytes]
    says: str  # what the refusal must say
    names_formats: bool = False  # whether it must list the accepted formats
    # Whether the model's decoder refuses it too; a file of a format not accepted, or over
    # the size limit only check_image knows, still decodes.
    undecodable: bool = True


@dataclass(frozen=True)
class Answered:
    name: str
    make: Callable[[], bytes]
    answer: str
    question: str = COLOUR
    notice: str | None = None  # what the user must be told about how it was used


DAMAGED = "damaged or incomplete"
REFUSED = [
    Refused("empty.png", lambda: b"", "is empty"),
    Refused("cut-short.png", lambda: cut(noise("PNG")), DAMAGED),
    Refused("cut-short.jpg", lambda: cut(noise("JPEG", quality=95)), DAMAGED),
    Refused("cut-short-progressive.jpg", lambda: cut(noise("JPEG", progressive=True)), DAMAGED),
    Refused("cut-short.gif", lambda: cut(noise("GIF")), DAMAGED),
    Refused("cut-short.webp", lambda: cut(noise("WEBP")), DAMAGED),
    Refused("cut-short.tif", lambda: cut(noise("TIFF")), DAMAGED),
    Refused("cut-short.bmp", lambda: cut(noise("BMP")), DAMAGED),
    Refused("cut-short.heic", lambda: cut(heic(noisy_picture())), DAMAGED),
    Refused("only-the-header.png", lambda: noise("PNG")[:40], DAMAGED),
    Refused("scribbled.jpg", scribbled_jpeg, DAMAGED),
    Refused("bad-checksum.png", bad_checksum_png, DAMAGED),
    Refused("bomb.png", lambda: blank_png(20_000, 20_000), "far too many pixels"),  # 400 MP in a few kB
    Refused("too-many-pixels.png", lambda: blank_png(8000, 6000), "8000x6000 pixels (48 MP); the limit is 40 MP",
            undecodable=False),
    Refused("thread.png", lambda: encode(Image.new("RGB", (1, 20_000), "red"), "PNG"), "too long and thin"),
    Refused("ribbon.png", lambda: encode(Image.new("RGB", (20_000, 1), "red"), "PNG"), "too long and thin"),
    Refused("just-too-thin.png", lambda: encode(Image.new("RGB", (2, 2 * MAX_ASPECT_RATIO + 1), "red"), "PNG"),
            "at most 200 times"),
    Refused("drawing.png", lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="96" '
                                   b'height="96"><circle cx="48" cy="48" r="20" fill="red"/></svg>',
            "is an SVG drawing, not a photo", names_formats=True),
    Refused("page.png", lambda: b"<!DOCTYPE html>\n<html><body><img src='photo.jpg'></body></html>",
            "is a web page (HTML), not a photo", names_formats=True),
    Refused("notes.jpg", lambda: b"Shopping list: milk, eggs, bread.\n", "is not a photo", names_formats=True),
    Refused("scan.png", lambda: b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n%%EOF\n", "is not a photo",
            names_formats=True),
    Refused("icon.png", lambda: encode(red_circle(), "ICO"), "in the ICO format, which is not accepted",
            names_formats=True, undecodable=False),
    Refused("picture.png", lambda: encode(red_circle(), "TGA"), "in the TGA format, which is not accepted",
            names_formats=True, undecodable=False),
]

FIRST_FRAME = "is animated; only its first frame is used"
ANSWERED = [
    Answered("scene.png", lambda: encode(red_circle(), "PNG"), "red"),
    Answered("photo-named.png", lambda: encode(red_circle(), "JPEG", quality=95), "red"),  # a JPEG, whatever its name
    Answered("scene.webp", lambda: encode(red_circle(), "WEBP", lossless=True), "red"),
    Answered("scene.gif", lambda: encode(red_circle(), "GIF"), "red"),
    Answered("scene.bmp", lambda: encode(red_circle(), "BMP"), "red"),
    Answered("scene.tif", lambda: encode(red_circle(), "TIFF"), "red"),
    Answered("cmyk.jpg", lambda: encode(red_circle().convert("CMYK"), "JPEG", quality=95), "red"),
    Answered("cmyk.tif", lambda: encode(red_circle().convert("CMYK"), "TIFF"), "red"),
    Answered("sixteen-bit.png", sixteen_bit_red, "red"),
    Answered("sixteen-bit-grey.png", sixteen_bit_grey, "circle", question="What shape is it?"),
    Answered("palette-transparent.png", lambda: with_clear_background("P"), "red"),
    Answered("transparent.png", lambda: with_clear_background("RGBA"), "red"),
    Answered("animated.gif", lambda: animation("GIF"), "red", notice=FIRST_FRAME),
    Answered("animated.webp", lambda: animation("WEBP"), "red", notice=FIRST_FRAME),
    Answered("animated.png", lambda: animation("PNG"), "red", notice=FIRST_FRAME),
    Answered("two-pages.tif", lambda: animation("TIFF"), "red", notice="holds 2 pages; only the first is used"),
    Answered("sideways.jpg", lambda: sideways(6), "left", question=WHERE),
    Answered("iphone.heic", lambda: heic(red_circle()), "red"),
    Answered("long-and-thin-but-not-too.png",
             lambda: encode(Image.new("RGB", (2, 2 * MAX_ASPECT_RATIO), "red"), "PNG"), "red"),
]


@pytest.fixture
def write(tmp_path) -> Callable[[str, bytes], Path]:
    def write(name: str, data: bytes) -> Path:
        path = tmp_path / "uploads" / name
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(data)
        return path

    return write


def check(path: Path) -> tuple[int, int]:
    return check_image(path, max_pixels=MAX_PIXELS, max_bytes=25 * MB)


# --- (a) mmchat.media.images ---

@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.name)
def test_each_hostile_file_is_refused_with_a_clear_message(case, write):
    path = write(case.name, case.make())
    with pytest.raises(InputError) as refused:
        check(path)
    message = refused.value.message
    assert case.says in message
    assert (FORMATS in message) == case.names_formats, message
    if case.name == "bomb.png":  # too large, not damaged
        assert "damaged" not in message


@pytest.mark.parametrize("case", [c for c in REFUSED if c.undecodable], ids=lambda case: case.name)
def test_decoding_a_refused_file_anyway_is_a_refusal_too(case, write):
    """A photo stored before the checks existed (an old conversation) reaches the model's
    decoder unchecked: it must fail as a refusal, never as Pillow's own exception."""
    path = write(case.name, case.make())
    with pytest.raises(InputError):
        load_photo(path, 800_000)


@pytest.mark.parametrize("case", ANSWERED, ids=lambda case: case.name)
def test_each_good_photo_of_an_odd_kind_passes_and_decodes_to_rgb(case, write):
    path = write(case.name, case.make())
    check(path)
    image = open_for_model(path, 800_000)
    assert image.mode == "RGB"
    notice = photo_notice(path)
    if case.notice is None:
        assert notice is None
    else:
        assert notice is not None and notice.startswith(f"{case.name} {case.notice}"), notice


def test_the_accepted_formats_are_named_in_plain_english():
    assert accepted_formats() == FORMATS
    assert set(ACCEPTED_FORMATS) == {"JPEG", "MPO", "PNG", "WEBP", "GIF", "BMP", "TIFF", "HEIF"}


def test_sixteen_bit_grey_keeps_its_shades(write):
    """Pillow's own conversion turns every 16-bit value above 255 white."""
    values = np.array([[0, 257 * 64], [257 * 128, 65535]], dtype=np.uint16)
    path = write("shades.png", png16(values))
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")
    assert np.asarray(open_for_model(path, 100).convert("L")).tolist() == [[0, 64], [128, 255]]


def test_transparency_is_laid_on_white(write):
    for mode in ("P", "RGBA"):
        path = write(f"clear-{mode}.png", with_clear_background(mode))
        corner = open_for_model(path, 800_000).getpixel((0, 0))
        assert corner == (255, 255, 255), (mode, corner)


def test_a_sideways_phone_photo_is_decoded_upright(write):
    expected = np.asarray(left_circle(), dtype=int)

    def difference(path: Path) -> float:
        return float(np.abs(np.asarray(open_for_model(path, 800_000), dtype=int) - expected).mean())

    # The scene as drawn (JPEG's loss aside), not a quarter turn of it: most of a scene
    # is its plain background, so even the turned one is only a few levels off on average.
    assert difference(write("turned.jpg", sideways(6))) * 5 < difference(write("stored.jpg", sideways(None)))


def test_a_heic_photo_without_pillow_heif_is_refused_with_what_to_install(write):
    """In a process where pillow-heif can't be imported, as on a server without it."""
    path = write("iphone.heic", heic(red_circle()))
    program = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from mmchat.media.images import check_image, accepted_formats\n"
        "from mmchat.errors import InputError\n"
        "print(accepted_formats())\n"
        "try:\n"
        f"    check_image({str(path)!r}, max_pixels=10**7, max_bytes=10**7)\n"
        "except InputError as exc:\n"
        "    print(exc.message)\n"
    )
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, "-c", program], cwd=root, capture_output=True, text=True, timeout=120)
    formats, message = result.stdout.strip().splitlines()
    assert formats == "JPEG, PNG, WebP, GIF, BMP or TIFF"
    assert "is a HEIC photo" in message and "pip install pillow-heif" in message
    assert "JPEG, PNG, WebP, GIF, BMP or TIFF" in message


# --- (b) the turn layer, as the page sends a photo ---

@pytest.fixture
def turn_services(config, shapes_engine):
    return make_services(with_config(config, max_image_pixels=MAX_PIXELS), shapes_engine)


def chat_under_way(store) -> ChatSession:
    """A conversation with a question answered already, saved, as a refusal must leave it."""
    session = ChatSession(store)
    session.conversation.add_user([TextPart("Hello")])
    session.conversation.add_assistant("Hello! Send me a photo and ask about it.")
    session.save()
    return session


def ask(session: ChatSession, services, question: str, *photos: Path) -> list:
    return list(submit(session, UserInput(question, tuple(map(str, photos))), services, GREEDY))


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.name)
def test_the_page_refuses_each_hostile_file_and_keeps_the_conversation(case, write, turn_services, store):
    session = chat_under_way(store)
    before = session.conversation.to_json()
    events = ask(session, turn_services, COLOUR, write(case.name, case.make()))
    assert not any(isinstance(event, QuestionAdded) for event in events), events
    assert isinstance(events[-1], InputRejected) and case.says in events[-1].message, events
    assert session.conversation.to_json() == before
    assert store.load(session.conversation.id).to_json() == before


@pytest.mark.parametrize("case", ANSWERED, ids=lambda case: case.name)
def test_the_page_answers_each_good_photo_as_a_person_sees_it(case, write, turn_services, store):
    session = ChatSession(store)
    events = ask(session, turn_services, case.question, write(case.name, case.make()))
    done = events[-1]
    assert isinstance(done, TurnDone) and done.status == "complete", events
    assert done.text.strip() == case.answer
    notices = [event.message for event in events if isinstance(event, Notice)]
    if case.notice is None:
        assert notices == []
    else:
        assert len(notices) == 1 and notices[0].startswith(f"{case.name} {case.notice}"), notices
    assert [turn.role for turn in session.conversation.turns] == ["user", "assistant"]


def test_the_sideways_scene_would_be_answered_otherwise_without_its_exif(write, turn_services, store):
    """The control for sideways.jpg: the same pixels without the EXIF turn are read as
    stored, so its "left" comes from turning the photo upright."""
    events = ask(ChatSession(store), turn_services, WHERE, write("stored-sideways.jpg", sideways(None)))
    assert events[-1].status == "complete" and events[-1].text.strip() == "bottom"


def test_an_old_conversations_photo_that_cannot_be_decoded_is_refused_and_the_answer_kept(
        write, turn_services, store):
    """A photo stored before today's checks (too thin for the model) reaches the decoder
    only when its conversation is answered again: a refusal, not the processor's error."""
    from mmchat.conversation import ImagePart
    from mmchat.turn import regenerate

    session = ChatSession(store)
    thread = write("old-thread.png", encode(Image.new("RGB", (1, 20_000), "red"), "PNG"))
    session.conversation.add_user([ImagePart(str(thread)), TextPart(COLOUR)])
    session.conversation.add_assistant("red")
    session.save()
    before = session.conversation.to_json()
    events = list(regenerate(session, turn_services, GREEDY))
    assert isinstance(events[-1], InputRejected), events
    assert "too long and thin" in events[-1].message
    assert session.conversation.to_json() == before


# --- (b') the page's own handlers, as a click on Send runs them ---

@pytest.fixture
def page(turn_services, store, monkeypatch):
    """The page's handlers on the turn layer above; what they show in toasts, in `toasts`."""
    import gradio as gr
    from mmchat.web.chat import ChatHandlers

    turn_services.store = store
    handlers = ChatHandlers(turn_services)
    handlers.toasts = []
    monkeypatch.setattr(gr, "Warning", lambda message, *a, **k: handlers.toasts.append(("warning", message)))
    monkeypatch.setattr(gr, "Info", lambda message, *a, **k: handlers.toasts.append(("info", message)))
    return handlers


def send(page, question: str, path: Path):
    """Send `question` with the photo at `path`; the session and the page's last view."""
    session, *_ = page.on_load("")
    message = {"text": question, "files": [str(path)]}
    view = None
    for view in page.on_submit(session, message, False, None, 8, 0.0, False, "auto", 1.0, progress=None):
        pass
    return session, message, view


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.name)
def test_the_page_shows_each_refusal_and_keeps_the_message_for_another_try(case, write, page):
    session, message, view = send(page, COLOUR, write(case.name, case.make()))
    chat, box, announcement = view.chat, view.box, view.announcement
    assert len(page.toasts) == 1 and page.toasts[0][0] == "warning" and case.says in page.toasts[0][1]
    assert announcement == page.toasts[0][1]  # read out to a screen reader too
    assert chat == [] and session.conversation.turns == []
    assert box["value"] == message  # the question and the photo stay in the box


@pytest.mark.parametrize("case", [c for c in ANSWERED if c.notice and c.name != "animated.gif"],
                         ids=lambda case: case.name)
def test_the_page_says_which_frame_of_an_animation_it_answered_from(case, write, page):
    session, _message, view = send(page, case.question, write(case.name, case.make()))
    chat = view.chat
    assert [kind for kind, _ in page.toasts] == ["info"] and case.notice in page.toasts[0][1]
    assert session.conversation.turns[-1].text.strip() == case.answer
    assert chat[-1]["role"] == "assistant"


def test_the_page_takes_an_animated_gif_as_a_clip(write, page):
    # Its frames are what people mean by a GIF: it goes to the model as a video clip (media.video),
    # not as its first frame (the API's image_url still takes a GIF as a photo, said so).
    session, _message, view = send(page, COLOUR, write("animated.gif", animation("GIF")))
    question = session.conversation.turns[-2]
    assert [type(part).__name__ for part in question.parts] == ["VideoPart", "TextPart"]
    assert page.toasts == [] and session.conversation.turns[-1].status == "complete"


# --- (c) the HTTP API, a photo as a data: URL ---

MIME = {".png": "image/png", ".jpg": "image/jpeg", ".gif": "image/gif", ".webp": "image/webp",
        ".tif": "image/tiff", ".bmp": "image/bmp", ".heic": "image/heic"}


@pytest.fixture(scope="module")
def api(shapes_engine, tmp_path_factory):
    """The app's server on loopback (the API; the page is not needed here)."""
    from mmchat.config import Config

    config = Config(device="cpu", data_dir=tmp_path_factory.mktemp("hostile-api") / "data", temperature=0.0,
                    stt_backend="none", tts_backend="none", max_image_pixels=MAX_PIXELS)
    with LiveServer(make_services(config, shapes_engine)) as live:
        yield live


def post(api, name: str, data: bytes, question: str = COLOUR) -> httpx.Response:
    url = f"data:{MIME[Path(name).suffix]};base64," + base64.b64encode(data).decode()
    content = [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": question}]
    return httpx.post(api.url + "/v1/chat/completions", timeout=120, json={
        "model": "shapes-vlm", "messages": [{"role": "user", "content": content}], "max_tokens": 8, "temperature": 0,
    })


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.name)
def test_the_api_refuses_each_hostile_file_with_a_400_that_says_why(case, api):
    response = post(api, case.name, case.make())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert case.says in error["message"], error


@pytest.mark.parametrize("case", ANSWERED, ids=lambda case: case.name)
def test_the_api_answers_each_good_photo_as_a_person_sees_it(case, api):
    response = post(api, case.name, case.make(), case.question)
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"].strip() == case.answer
