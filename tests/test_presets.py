"""Describe mode's presets (issue 13): prompts, answer tidying, commands, and the light reading.

The prompts go through the real turn layer to the trained shapes-vlm fixture. Its recipe
(scripts/train_fixture_vlm.py) trains on every preset's exact prompt at every verbosity:
drawn scenes for describe, read_text, read_document, compare and identify, bar charts
for chart and printed sums for exercise. `_expected` says what a right answer
must contain, so a test fails if the photo were dropped or swapped, or if a prompt were
edited without retraining the fixture (it would then answer some other preset's way).

MMCHAT_SHAPES_VLM=/path/to/a/retrained/folder runs them against a candidate model
before it replaces the committed one.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_services
from fixture_models import draw_test_chart, draw_test_exercise, draw_test_image, shapes_vlm_path, sides_that_fit
from mmchat.config import Config
from mmchat.engine import GenerationParams
from mmchat.engine.local import create_local_engine
from mmchat.errors import ModelUnavailableError
from mmchat.media.light import lightness, read_light
from mmchat.model_handle import ModelHandle
from mmchat.presets import (
    BRIEF_CHARS, CHART, COMPARE, DESCRIBE, EXERCISE, IDENTIFY, LIGHT, PRESETS, READ_DOCUMENT, READ_TEXT, Task,
    Verbosity,
    preset_for_words, trim_brief, without_filler,
)
from mmchat.store.legacy import ConversationStore
from mmchat.turn.session import ChatSession
from mmchat.turn import Services, UserInput, regenerate, submit
from mmchat.voice.commands import Command, spoken_command

DATA = Path(__file__).parent / "data"
HOPPER = DATA / "hopper.jpg"  # a real portrait of middling exposure
PAGE = DATA / "page.png"  # a scanned white page, greyscale ("L" mode)


# --- the light reading ---

def _exposed(path: Path, stops: float) -> Image.Image:
    """The photo as a camera would have taken it `stops` brighter (negative: darker), in linear light."""
    srgb = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255
    lin = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4) * 2.0 ** stops
    lin = np.clip(lin, 0, 1)
    out = np.where(lin <= 0.0031308, lin * 12.92, 1.055 * lin ** (1 / 2.4) - 0.055)
    return Image.fromarray(np.round(out * 255).astype(np.uint8))


def test_a_dark_frame_reads_dark():
    # The portrait five stops under: a room with the light off.
    reading = read_light(_exposed(HOPPER, -5))
    assert reading.level == "Very dark" and reading.lightness < 8
    assert reading.spoken == f"Very dark: about {round(reading.lightness)}% brightness."


def test_a_bright_frame_reads_bright():
    page = read_light(PAGE)  # a white page, greyscale file
    assert page.level == "Bright" and 70 <= page.lightness < 88
    overexposed = read_light(_exposed(HOPPER, 3))
    assert overexposed.level in ("Bright", "Very bright") and overexposed.lightness > 75


def test_a_mid_frame_and_the_words_said():
    reading = read_light(HOPPER)
    assert reading.level == "Medium" and 45 <= reading.lightness < 50
    assert reading.spoken == f"Medium: about {round(reading.lightness)}% brightness."


@pytest.mark.parametrize("grey, level", [(0, "Very dark"), (40, "Dark"), (80, "Dim"), (128, "Medium"),
                                         (210, "Bright"), (250, "Very bright")])
def test_levels_follow_lightness_of_a_flat_grey(grey, level):
    reading = read_light(Image.new("RGB", (32, 24), (grey, grey, grey)))
    assert reading.level == level
    # sRGB 128 is a mid grey: lightness about 54, although its luminance is 0.22.
    if grey == 128:
        assert round(reading.lightness) == 54 and abs(reading.luminance - 0.2158) < 1e-3


def test_the_brightest_part_is_found_in_the_upright_photo(tmp_path):
    # Stored with the window (bright) on the left, EXIF orientation 6: shown upright,
    # turned a quarter clockwise, so the window is at the top.
    pixels = np.full((90, 120, 3), 40, np.uint8)
    pixels[:, :40] = 250
    stored = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    stored.save(path, exif=exif)
    assert read_light(path).brightest == "top"
    assert read_light(stored).brightest == "left"
    assert read_light(path).spoken.endswith("Brightest at the top.")
    assert read_light(Image.new("RGB", (30, 30), (90, 90, 90))).brightest is None  # even light: nothing to name


def test_odd_modes_and_frames_read_the_same_as_rgb():
    grey = read_light(Image.new("RGB", (16, 16), (128, 128, 128))).lightness
    assert read_light(Image.new("L", (16, 16), 128)).lightness == pytest.approx(grey)
    assert read_light(Image.new("I;16", (16, 16), 128 * 257)).lightness == pytest.approx(grey)
    assert read_light(Image.new("RGB", (16, 16), (128, 128, 128)).convert("P", palette=Image.Palette.ADAPTIVE)).lightness == pytest.approx(grey)
    assert read_light(np.full((16, 16, 3), 128, np.uint8)).lightness == pytest.approx(grey)  # a webcam frame
    assert read_light(Image.new("RGBA", (16, 16), (0, 0, 0, 0))).level == "Very bright"  # transparent: the page
    assert lightness(1.0) == pytest.approx(100) and lightness(0.0) == 0


def test_light_is_answered_without_the_model():
    assert LIGHT.prompt is None
    with pytest.raises(ValueError):
        LIGHT.question()
    from mmchat.turn.generation import measured

    assert measured(LIGHT, HOPPER) == read_light(HOPPER).spoken
    assert all(p.measure is None for p in PRESETS.values() if p is not LIGHT)


# --- brief answers ---

def test_a_short_first_sentence_is_kept_whole():
    assert trim_brief("A red light at the crossing ahead. Cars are waiting.") == "A red light at the crossing ahead."
    assert trim_brief("  Two steps down,  just ahead ") == "Two steps down, just ahead"


def test_a_long_sentence_is_cut_at_a_clause_and_keeps_its_first_fact():
    text = ("A pedestrian crossing directly ahead with the signal showing a red standing figure, cars passing "
            "from left to right, a bus stop sign on the far side, and a man with a dog waiting at the kerb.")
    brief = trim_brief(text)
    assert len(brief) <= BRIEF_CHARS
    assert brief.startswith("A pedestrian crossing directly ahead with the signal showing a red standing figure")
    assert brief.endswith(".") and not brief.endswith(",.")
    assert text.startswith(brief[:-1])  # cut at a boundary of the original, nothing rewritten
    assert text[len(brief) - 1] == ","  # ...and the boundary was a clause's


def test_a_cut_never_splits_a_word():
    text = "Careful " + " ".join(["something"] * 30)
    brief = trim_brief(text)
    assert len(brief) <= BRIEF_CHARS and brief.endswith("\u2026")
    assert all(word in ("Careful", "something") for word in brief.rstrip("\u2026").split())
    long_word = "https://" + "x" * 200
    assert trim_brief(long_word) == long_word  # nothing to cut at: said whole rather than half a word


def test_filler_openings_go():
    assert without_filler("This image shows a red door with a sign saying \"EXIT\".") == \
        "A red door with a sign saying \"EXIT\"."
    assert without_filler("In the photo, two steps lead down.") == "Two steps lead down."
    assert without_filler("The image is blurred.") == "The image is blurred."  # a fact about the photo stays
    assert DESCRIBE.finish("The picture shows a kerb. Then a road.", Verbosity.BRIEF) == "A kerb."
    assert DESCRIBE.finish("The picture shows a kerb. Then a road.", Verbosity.NORMAL) == "A kerb. Then a road."
    assert trim_brief("前面有台阶。左边是门。") == "前面有台阶。"
    assert READ_TEXT.finish("  This image shows EXIT ") == "This image shows EXIT"  # read text is never rewritten


# --- naming a preset ---

@pytest.mark.parametrize("words, name", [
    ("Describe.", "describe"), ("Please describe what you see", "describe"), ("What is in front of me?", "describe"),
    ("描述一下", "describe"),
    ("Read this.", "read_text"), ("What does the sign say?", "read_text"), ("读一下", "read_text"),
    ("Read the page, please.", "read_document"), ("read the whole document", "read_document"),
    ("Explain the chart.", "chart"), ("describe this diagram", "chart"),
    ("Solve this step by step.", "exercise"), ("help me with the homework", "exercise"),
    ("Compare these two photos.", "compare"), ("compare", "compare"),
    ("What colour is this?", "identify"), ("what color is it", "identify"), ("What's this?", "identify"),
    ("这是什么颜色？", "identify"),
    ("How bright is it?", "light"), ("Light level.", "light"), ("is the light on", "light"),
])
def test_commands_name_their_preset(words, name):
    assert preset_for_words(words) is PRESETS[name]


@pytest.mark.parametrize("words", [
    "What colour is the door?", "read this to me and tell me the price", "stop", "what changed on the table?",
    "Describe the dog's collar.", "Is the light red?", "",
])
def test_questions_are_not_commands(words):
    assert preset_for_words(words) is None


def test_voice_commands_keep_their_meaning():
    assert spoken_command("Describe.") is Command.DESCRIBE
    assert spoken_command("um, what do you see, please") is Command.DESCRIBE
    assert spoken_command("describe what's in front of me") is Command.DESCRIBE
    assert spoken_command("Stop.") is Command.STOP
    assert spoken_command("New conversation.") is Command.NEW_CHAT
    assert spoken_command("What changed on the table?") is Command.COMPARE
    assert spoken_command("stop sign, what does it say?") is None


# --- the prompts ---

def test_every_prompt_differs_by_verbosity_and_brief_describe_is_one_short_sentence():
    for preset in PRESETS.values():
        if preset.prompt is None:
            continue
        prompts = [preset.question(v) for v in Verbosity]
        assert len(set(prompts)) == 3, preset.name
    brief = DESCRIBE.question(Verbosity.BRIEF)
    assert f"one sentence of at most {BRIEF_CHARS} characters" in brief
    # The four asks of the describe prompt: safety first, text verbatim, doubt said, no filler.
    for v in Verbosity:
        prompt = DESCRIBE.question(v).lower()
        assert "safety" in prompt and "word for word" in prompt and "not sure" in prompt and "this image shows" in prompt
    assert COMPARE.needs_two_photos and not DESCRIBE.needs_two_photos


# --- through the turn layer to shapes-vlm ---

GREEDY = GenerationParams(max_new_tokens=8, temperature=0.0)
# The presets' answers run to a few sentences (the longest, compare's detailed one, ~45 tokens).
TASK_GREEDY = GenerationParams(max_new_tokens=64, temperature=0.0)
# (shape, colour, position, count, word): answers that differ in every attribute.
SCENES = [("circle", "red", "left", 2, "STOP"), ("triangle", "blue", "right", 1, "EXIT"),
          ("star", "yellow", "top", 3, "CAT"), ("square", "green", "bottom", 4, "42"),
          ("circle", "purple", "right", 1, None), ("star", "orange", "left", 1, "DOG")]


_ENGINES: dict[str, object] = {}


def _shapes_vlm(quantization: str):
    """The fixture loaded once per way of loading it, for every test of this module."""
    if quantization not in _ENGINES:
        _ENGINES[quantization] = create_local_engine(
            Config(model=str(shapes_vlm_path()), device="cpu", quantization=quantization))
    return _ENGINES[quantization]


@pytest.fixture(scope="module", autouse=True)
def _unload_engines():
    yield
    _ENGINES.clear()


class Asker:
    """Asks questions about drawn scenes through the turn layer, each in a new chat."""

    def __init__(self, config, engine, folder: Path):
        self.services, self.config, self.folder = make_services(config, engine), config, folder

    def __call__(self, question: str, *pictures, params: GenerationParams = GREEDY) -> tuple[str, ChatSession]:
        """`pictures`: scenes as draw_test_image's arguments, or images already drawn."""
        session = ChatSession(ConversationStore(self.config.data_dir))
        paths = []
        for picture in pictures:
            paths.append(str(self.folder / f"{len(list(self.folder.iterdir()))}.png"))
            (picture if isinstance(picture, Image.Image) else draw_test_image(*picture)).save(paths[-1])
        return self.follow_up(session, question, tuple(paths), params), session

    def follow_up(self, session: ChatSession, question: str, photos: tuple[str, ...] = (),
                  params: GenerationParams = GREEDY) -> str:
        return _answer(submit(session, UserInput(question, photos), self.services, params))


@pytest.fixture(params=["none", "nf4", "int4"])
def ask(request, config, tmp_path):
    """In full precision, NF4 and int4, as the app loads it."""
    return Asker(config, _shapes_vlm(request.param), tmp_path)


@pytest.fixture
def ask_fp32(config, tmp_path):
    return Asker(config, _shapes_vlm("none"), tmp_path)


def _answer(events) -> str:
    events = list(events)
    assert events[-1].status == "complete", events
    return events[-1].text.strip()


@pytest.mark.parametrize("scene", SCENES, ids=lambda s: f"{s[1]}-{s[0]}")
def test_identify_brief_gets_the_colour_and_a_follow_up_uses_the_same_photo(ask, scene):
    answer, session = ask(IDENTIFY.question(Verbosity.BRIEF), scene)
    assert IDENTIFY.finish(answer, Verbosity.BRIEF) == scene[1]
    assert ask.follow_up(session, "What shape was it?") == scene[0]  # no photo sent: it is the earlier one


NUMBER = {1: "a", 2: "two", 3: "three", 4: "four"}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}


def _shapes(scene, colour: bool = True) -> str:
    """The scene's shapes as the answers name them: "two red circles", "a blue triangle"."""
    shape, name, _, count, _ = scene
    words = ([name] if colour else []) + [shape + ("s" if count > 1 else "")]
    return " ".join([NUMBER[count] if count > 1 or words[0][0] not in "aeiou" else "an"] + words)


def _where(scene) -> str:
    """Where the answer may say the scene's shapes are: each side its drawn picture fits
    ("on the right" or "at the bottom" for a lone shape in that corner)."""
    return "(?:" + "|".join(WHERE[side] for side in sorted(sides_that_fit(draw_test_image(*scene)))) + ")"


def test_a_lone_shape_in_a_corner_fits_two_sides_and_a_word_in_the_other_half_one():
    assert sides_that_fit(draw_test_image(*SCENES[4])) == {"right", "bottom"}  # a purple circle bottom right
    assert all(sides_that_fit(draw_test_image(*scene)) == {scene[2]} for scene in SCENES if scene[4])


def _expected(preset_name: str, verbosity: Verbosity, pictures) -> list[re.Pattern]:
    """What a right answer must say about the fixture's pictures: scenes as
    draw_test_image's arguments, charts as (colours, heights), exercises as (a, b)."""
    brief, detailed = verbosity is Verbosity.BRIEF, verbosity is Verbosity.DETAILED
    if preset_name == "chart":
        colours, heights = pictures[0]
        tallest = colours[heights.index(max(heights))]
        must = [r"^A bar chart\b", rf"\bThe {tallest} bar is the tallest\."]
        if not brief:
            must.append(rf"\b{NUMBER[len(colours)]} bars\b")
        if detailed:  # every bar, left to right
            must.append(re.escape(", ".join(colours[:-1]) + f" and {colours[-1]}, from left to right"))
    elif preset_name == "exercise":
        a, b = pictures[0]
        must = [rf"\b{a} plus {b} equals {a + b}\.", rf"(?m)^Answer: {a + b}$"]
        if not brief:  # the question read out first, as written
            must.append(rf"^The exercise: {a} \+ {b} = \?")
    elif preset_name == "compare":
        first, second = pictures
        must = [rf"^The first photo has {_shapes(first)}\b[^;]*; the second has {_shapes(second)}\b"]
        if not brief:
            must += [rf"{_shapes(first)} {_where(first)}\b[^;]*;", rf"{_shapes(second)} {_where(second)}\b"]
    else:
        shape, colour, _, _, word = pictures[0]
        text = f'"{re.escape(word)}"' if word else None
        if preset_name == "describe":
            must = [rf"^{_shapes(pictures[0])} {_where(pictures[0])}\b"]
            if text or not brief:
                must.append(text or r"\bNo text in view\.")
        elif preset_name == "read_text":  # brief: the text alone, exactly
            must = [rf"^{re.escape(word)}$" if brief else rf"^{text}"] if word else [r"^No text in view\.$"]
        elif preset_name == "read_document":
            must = [rf"^{re.escape(word)}$" if brief else text] if word else [r"^No text on the page\."]
        else:  # identify, normal and detailed: the colour first, then what it is
            must = [rf"^{colour}\. {_shapes(pictures[0], colour=False)}\b"]
            if detailed:
                must.append(rf"{_where(pictures[0])}, next to " + (f"the word {text}" if word else "no text"))
    return [re.compile(m, re.IGNORECASE) for m in must]


# Single photos that differ in every attribute, one with no text; two pairs for compare.
ONE_PHOTO = [[SCENES[1]], [SCENES[2]], [SCENES[4]]]
TWO_PHOTOS = [[SCENES[0], SCENES[1]], [SCENES[2], SCENES[3]]]
CHARTS = [(("blue", "red", "green"), (2, 5, 3)), (("yellow", "purple"), (1, 4)), (("orange", "green", "blue"), (4, 1, 2))]
EXERCISES = [(3, 4), (5, 2), (1, 5)]  # the fixture's digits are 1-5


def _pictures(preset) -> list[list]:
    """The photos each preset is asked about, as `_expected` takes them."""
    return {"chart": [[c] for c in CHARTS], "exercise": [[e] for e in EXERCISES]}.get(
        preset.name, TWO_PHOTOS if preset.needs_two_photos else ONE_PHOTO)


def _drawn(preset, pictures) -> list:
    if preset is CHART:
        return [draw_test_chart(*p) for p in pictures]
    if preset is EXERCISE:
        return [draw_test_exercise(*p) for p in pictures]
    return pictures


# These cases hold the model to its answers about these fixture pictures only: on
# held-out pictures some presets are still below the model card's 85% target (chart
# detailed in fp32, more in NF4 and int4: its table in tests/fixtures/shapes-vlm/README.md),
# so a new picture here may need a look at the card first.
ASKED = [pytest.param(preset, verbosity, id=f"{preset.name}-{verbosity.value}")
         for preset in (DESCRIBE, READ_TEXT, READ_DOCUMENT, CHART, EXERCISE, COMPARE, IDENTIFY)
         for verbosity in Verbosity if (preset, verbosity) != (IDENTIFY, Verbosity.BRIEF)]


@pytest.mark.parametrize("preset, verbosity", ASKED)
def test_each_preset_gets_the_right_answer_at_each_verbosity(ask_fp32, preset, verbosity):
    for pictures in _pictures(preset):
        answer, _ = ask_fp32(preset.question(verbosity), *_drawn(preset, pictures), params=TASK_GREEDY)
        answer = preset.finish(answer, verbosity)
        assert all(p.search(answer) for p in _expected(preset.name, verbosity, pictures)), answer
    if verbosity is Verbosity.BRIEF and preset is DESCRIBE:
        assert len(answer) <= BRIEF_CHARS and answer.count(".") == 1


def test_a_follow_up_after_a_preset_answers_from_its_photo(ask_fp32):
    # No photo with the follow-up: only the preset's photo can tell the shape.
    answer, session = ask_fp32(DESCRIBE.question(Verbosity.NORMAL), SCENES[2], params=TASK_GREEDY)
    assert answer.startswith("Three yellow stars")
    assert ask_fp32.follow_up(session, "What colour was it?") == "yellow"
    assert ask_fp32.follow_up(session, "How many shapes are there?") == "3"


# --- tasks through the turn layer ---

def test_a_task_is_shown_by_its_name_the_model_gets_its_prompt_and_the_answer_is_tidied(ask_fp32, tmp_path):
    scene = SCENES[0]
    draw_test_image(*scene).save(tmp_path / "scene.png")
    session = ChatSession(ConversationStore(tmp_path / "chats"))
    task = Task(IDENTIFY, Verbosity.BRIEF)
    answer = _answer(submit(session, UserInput("ignored words", (str(tmp_path / "scene.png"),), task=task),
                            ask_fp32.services, GREEDY))
    assert answer == scene[1]
    question = session.conversation.turns[0]
    assert question.shown_text == "Identify object and colour (brief)"
    sent = session.conversation.to_openai()[0]["content"]
    assert [c["text"] for c in sent if c["type"] == "text"] == [IDENTIFY.question(Verbosity.BRIEF)]
    # Regenerate asks the same task again, tidied the same way.
    assert _answer(regenerate(session, ask_fp32.services, GREEDY)) == scene[1]
    assert ask_fp32.follow_up(session, "What shape was it?") == scene[0]  # the same photo


def _no_model(config) -> Services:
    def fail(progress):
        raise ModelUnavailableError("The model is not here.")

    handle = ModelHandle(fail)
    handle.start()
    handle.loaded(10)
    return Services(config=config, engine=handle)


def test_the_light_task_is_answered_from_the_frame_without_the_model(config, tmp_path):
    services = _no_model(config)
    dark, bright = tmp_path / "dark.png", tmp_path / "bright.png"
    _exposed(HOPPER, -5).save(dark)
    _exposed(HOPPER, 3).save(bright)
    session = ChatSession(ConversationStore(tmp_path / "chats"))
    task = Task(LIGHT)
    assert _answer(submit(session, UserInput(images=(str(dark),), task=task), services, GREEDY)).startswith("Very dark")
    assert session.conversation.turns[0].shown_text == "Light level"
    bright_answer = _answer(submit(session, UserInput(images=(str(bright),), task=task), services, GREEDY))
    assert bright_answer.startswith(("Bright", "Very bright"))
    assert _answer(regenerate(session, services, GREEDY)) == bright_answer
    # An ordinary question does need the model, which is not there.
    events = list(submit(session, UserInput("What is it?", (str(bright),)), services, GREEDY))
    assert events[-1].message == "The model is not here."


@pytest.mark.parametrize("task, photos", [(Task(DESCRIBE), 0), (Task(LIGHT), 0), (Task(COMPARE), 1)])
def test_a_task_without_its_photos_is_refused_and_the_chat_is_unchanged(config, tmp_path, task, photos):
    session = ChatSession(ConversationStore(tmp_path / "chats"))
    paths = tuple(str(HOPPER) for _ in range(photos))
    (event,) = submit(session, UserInput(images=paths, task=task), _no_model(config), GREEDY)
    assert "needs" in event.message and task.preset.label in event.message
    assert session.conversation.turns == []
