"""Train a tiny Qwen3-VL that really answers questions about drawn shapes (GitHub issue 3).

Random-weight fixtures only prove that code runs. This model is small enough to
commit (a few MB) and train on a 2-core CPU in minutes, yet it answers, in
English and Chinese, what colour and shape the drawn shapes are, how many there
are, on which side they sit, and what word is printed beside them; it also
answers a follow-up turn about an earlier image, and which of two images shows
a given shape. It also answers describe mode's presets (mmchat.presets, issue 13),
asked in their exact prompt words at every verbosity, with templated answers
(`preset_answer`), and sees bar charts and printed sums for the chart and exercise
presets. Tests can therefore assert on what it says, and an answer flips when an
image is dropped or swapped.

The scenes, charts and sums are drawn with PIL (`draw_scene`, `draw_chart`,
`draw_exercise`); tests draw their images with the same functions. The tokenizer,
processor, chat template and model come from make_fixture_models, so the result
loads like any Qwen3-VL checkpoint.

Usage: python scripts/train_fixture_vlm.py [--config scripts/shapes_vlm_config.toml]
                                           [--out tests/fixtures/shapes-vlm]
It trains in the recipe's stages (its [[train]] tables: the first from a random init
or from a model committed at a given revision, each later one from the model before),
saves, evaluates the saved folder in fp32, NF4 and int4 (through the app's loader, and
for int4 the app's compiled decoder), and writes the model card README.md with the
results.
"""

from __future__ import annotations

import argparse
import itertools
import math
import random
import subprocess
import sys
import tempfile
import time
import tomllib
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

import make_fixture_models

REPO = Path(__file__).resolve().parent.parent
# The evaluation loads the model through the app's own loader.
sys.path.insert(0, str(REPO))
from mmchat.config import Config  # noqa: E402
from mmchat.engine.compiled_decode import CompiledDecoder  # noqa: E402
from mmchat.engine.loading import load_model, plan_load  # noqa: E402
from mmchat.presets import (  # noqa: E402
    CHART, COMPARE, DESCRIBE, EXERCISE, IDENTIFY, READ_DOCUMENT, READ_TEXT, Verbosity,
)

DEFAULT_CONFIG = REPO / "scripts" / "shapes_vlm_config.toml"
DEFAULT_OUT = REPO / "tests" / "fixtures" / "shapes-vlm"

# ---------------------------------------------------------------- what a scene holds

# English name -> Chinese name (the answers in each language).
SHAPES = {"circle": "圆形", "square": "正方形", "triangle": "三角形", "star": "星形"}
COLOURS = {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色", "purple": "紫色", "orange": "橙色"}
POSITIONS = {"left": "左边", "right": "右边", "top": "上边", "bottom": "下边"}
WORDS = ["CAT", "DOG", "SUN", "BUS", "STOP", "OPEN", "EXIT", "7", "42", "305"]
# Scenes are laid out on a GRID x GRID board of cells (see draw_scene).
GRID = 6
RGB = {
    "red": (220, 35, 35),
    "green": (35, 160, 50),
    "blue": (35, 70, 225),
    "yellow": (235, 205, 20),
    "purple": (140, 50, 185),
    "orange": (245, 135, 20),
}


@dataclass(frozen=True)
class Scene:
    """`count` shapes of one kind and colour, grouped in one half of the image;
    `word`, if any, printed in the other half."""

    shape: str
    colour: str
    position: str
    count: int = 1
    word: str | None = None


def random_scene(rng: random.Random, word_probability: float = 0.6) -> Scene:
    return Scene(
        shape=rng.choice(list(SHAPES)),
        colour=rng.choice(list(COLOURS)),
        position=rng.choice(list(POSITIONS)),
        count=rng.randint(1, 4),
        word=rng.choice(WORDS) if rng.random() < word_probability else None,
    )


def draw_scene(scene: Scene, rng: random.Random, size: int = 96) -> Image.Image:
    """Draw `scene` on a GRID x GRID board; `rng` picks the cells, sizes and shades.

    Each shape sits inside one cell and the word starts at a cell's edge. With
    16-px cells the vision tower (16-px patches) sees every shape whole in one
    patch; with shapes at arbitrary offsets it learned far too slowly for a CPU.
    """
    background = tuple(rng.randint(225, 255) for _ in range(3))
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    cell, half = size / GRID, GRID // 2
    # (first column, first row, columns, rows) of the shapes' half and of the word's half.
    halves = {
        "left": ((0, 0, half, GRID), (half, 0, half, GRID)),
        "right": ((half, 0, half, GRID), (0, 0, half, GRID)),
        "top": ((0, 0, GRID, half), (0, half, GRID, half)),
        "bottom": ((0, half, GRID, half), (0, 0, GRID, half)),
    }
    shapes_half, word_half = halves[scene.position]
    col0, row0, cols, rows = shapes_half
    for index in rng.sample(range(cols * rows), scene.count):
        cx = (col0 + index % cols + 0.5) * cell + rng.uniform(-0.5, 0.5)
        cy = (row0 + index // cols + 0.5) * cell + rng.uniform(-0.5, 0.5)
        colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in RGB[scene.colour])
        draw.polygon(_outline(scene.shape, cx, cy, cell * rng.uniform(0.33, 0.37)), fill=colour)
    if scene.word:
        _draw_word(draw, scene.word, word_half, cell, rng)
    return image


def _outline(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    """The polygon of `shape` (a circle is a 32-gon) centred at (cx, cy)."""
    if shape == "circle":
        corners, radii, turn = 32, [r], 0.0
    elif shape == "square":
        corners, radii, turn = 4, [r * 1.2], math.pi / 4
    elif shape == "triangle":
        corners, radii, turn = 3, [r * 1.25], -math.pi / 2
    else:  # star: five points, alternating outer and inner radius
        corners, radii, turn = 10, [r * 1.25, r * 0.5], -math.pi / 2
    return [
        (cx + radii[i % len(radii)] * math.cos(turn + 2 * math.pi * i / corners),
         cy + radii[i % len(radii)] * math.sin(turn + 2 * math.pi * i / corners))
        for i in range(corners)
    ]


def _draw_word(draw: ImageDraw.ImageDraw, word: str, half, cell: float, rng: random.Random) -> None:
    # Pillow's built-in font: the same glyphs on every machine, no font files needed.
    font = ImageFont.load_default(size=round(cell * rng.uniform(0.85, 0.95)))
    left, top, right, bottom = draw.textbbox((0, 0), word, font=font)
    col0, row0, cols, rows = half
    spare_cols = cols - math.ceil((right - left + 2) / cell)
    x = (col0 + rng.randint(0, max(0, spare_cols))) * cell + 1 - left
    y = (row0 + rng.randrange(rows)) * cell + (cell - (bottom - top)) / 2 - top
    draw.text((x, y), word, fill=tuple(rng.randint(0, 60) for _ in range(3)), font=font)


@dataclass(frozen=True)
class Chart:
    """A bar chart: one bar per colour, left to right, `heights` in grid cells (all different)."""

    colours: tuple[str, ...]
    heights: tuple[int, ...]

    @property
    def tallest(self) -> str:
        return self.colours[self.heights.index(max(self.heights))]


@dataclass(frozen=True)
class Exercise:
    """A printed sum of two digits: "3 + 4" over "= ?"."""

    first: int
    second: int

    @property
    def total(self) -> int:
        return self.first + self.second


def random_chart(rng: random.Random) -> Chart:
    bars = rng.randint(2, 3)
    return Chart(tuple(rng.sample(list(COLOURS), bars)), tuple(rng.sample(range(1, 6), bars)))


# The digits of an exercise: 1-5, so 25 sums to learn (1-9's 81 were too many for a
# model this small in the time a CPU allows).
DIGITS = range(1, 6)


def random_exercise(rng: random.Random) -> Exercise:
    return Exercise(rng.choice(DIGITS), rng.choice(DIGITS))


def draw_chart(chart: Chart, rng: random.Random, size: int = 96) -> Image.Image:
    """Bars standing on an axis at the bottom, each centred in a third of the width.

    A third is one column of merged vision tokens (2x2 patches of 16 px), so each bar
    lands in its own tokens, as each shape of a scene does in its own patch.
    """
    image = Image.new("RGB", (size, size), tuple(rng.randint(225, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    cell, third = size / GRID, size / 3
    base = size - cell * 0.5
    ink = tuple(rng.randint(0, 60) for _ in range(3))
    draw.line([(2, base), (size - 2, base)], fill=ink, width=1)
    draw.line([(2, 2), (2, base)], fill=ink, width=1)
    # Two bars take the left and middle thirds or the middle and right ones.
    first = 0 if len(chart.colours) == 3 else rng.randint(0, 1)
    for slot, (name, height) in enumerate(zip(chart.colours, chart.heights, strict=True)):
        centre = (first + slot + 0.5) * third + rng.uniform(-1, 1)
        half_width = third * rng.uniform(0.28, 0.34)
        colour = tuple(max(0, min(255, c + rng.randint(-20, 20))) for c in RGB[name])
        draw.rectangle([centre - half_width, base - height * cell, centre + half_width, base - 1], fill=colour)
    return image


def draw_exercise(exercise: Exercise, rng: random.Random, size: int = 96) -> Image.Image:
    """ "3 + 4" on one row and "= ?" under it, each character filling a merged vision
    token's square (TOKEN_SIDE px), so each digit is read from a token of its own. (One
    row of 16-px characters put two characters in each token, and a 1300-step run read
    the sums 0-15% right.)"""
    image = Image.new("RGB", (size, size), tuple(rng.randint(225, 255) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=round(TOKEN_SIDE * rng.uniform(0.75, 0.85)))
    ink = tuple(rng.randint(0, 60) for _ in range(3))
    row = rng.randint(0, 1)
    lines = [(row, f"{exercise.first}+{exercise.second}"), (row + 1, "=?")]
    for line, text in lines:
        for column, character in enumerate(text):
            left, top, right, bottom = draw.textbbox((0, 0), character, font=font)
            x = (column + 0.5) * TOKEN_SIDE - (left + right) / 2 + rng.uniform(-1, 1)
            y = (line + 0.5) * TOKEN_SIDE - (top + bottom) / 2 + rng.uniform(-1, 1)
            draw.text((x, y), character, fill=ink, font=font)
    return image


# Each merged vision token sees a square of TOKEN_SIDE x TOKEN_SIDE of the image (two
# 16-px patches each way), row by row: 3x3 tokens for a 96-px image.
TOKEN_SIDE = 32


def token_map(image: Image.Image) -> list[int]:
    """What covers each vision token's square, row by row: 0 nothing, 1 dark ink (text,
    digits, a chart's axes), 2 + i the i-th of COLOURS (a shape or a bar).

    Read off the pixels, so it holds for scenes, charts and sums alike: a training
    target for where things are, which the pooled probes cannot teach.
    """
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    palette = np.array([RGB[name] for name in COLOURS], dtype=np.int16)  # [colours, 3]
    classes = []
    for top in range(0, pixels.shape[0] - TOKEN_SIDE + 1, TOKEN_SIDE):
        for left in range(0, pixels.shape[1] - TOKEN_SIDE + 1, TOKEN_SIDE):
            block = pixels[top : top + TOKEN_SIDE, left : left + TOKEN_SIDE].reshape(-1, 3)
            coloured = block[block.max(1) - block.min(1) > 80]
            if len(coloured) > 20:  # a shape or bar: its colour, by the nearest pure one
                nearest = np.abs(coloured[:, None, :] - palette[None]).sum(-1).argmin(1)
                classes.append(2 + int(np.bincount(nearest, minlength=len(COLOURS)).argmax()))
            else:
                classes.append(1 if (block.max(1) < 100).sum() > 8 else 0)
    return classes


def sides_that_fit(image: Image.Image) -> set[str]:
    """Every side ("left", "right", "top", "bottom") that a right answer may name for a
    scene drawn by draw_scene: each half that holds all its shapes, with any
    printed word in the opposite half.

    A scene is drawn from one side, but a lone shape in the bottom-right corner is as
    much at the bottom as on the right, and a model that says either reads the picture
    right; a shape in each row of the right half is on the right only.
    """
    import numpy as np

    pixels = np.asarray(image.convert("RGB"), dtype=np.int16)
    coloured = pixels.max(-1) - pixels.min(-1) > 80  # the shapes (the background is near white)
    ink = pixels.max(-1) < 100  # the word's dark letters
    height, width = coloured.shape
    halves = {"left": (slice(None), slice(0, width // 2)), "right": (slice(None), slice(width // 2, None)),
              "top": (slice(0, height // 2), slice(None)), "bottom": (slice(height // 2, None), slice(None))}

    def only_in(mask, side: str) -> bool:
        return mask[halves[side]].sum() == mask.sum()

    return {side for side in halves if only_in(coloured, side) and only_in(ink, OPPOSITE[side])}


def draw_picture(picture: "Scene | Chart | Exercise", rng: random.Random, size: int = 96) -> Image.Image:
    if isinstance(picture, Chart):
        return draw_chart(picture, rng, size)
    if isinstance(picture, Exercise):
        return draw_exercise(picture, rng, size)
    return draw_scene(picture, rng, size)


# ---------------------------------------------------------------- questions and answers

SINGLE_IMAGE_KINDS = ("colour", "shape", "count", "position", "reading", "exists")
KINDS = SINGLE_IMAGE_KINDS + ("multi_turn", "two_images", "nth_image")

QUESTIONS = {
    "en": {
        "colour": ["What colour is the shape?", "What color are the shapes?", "Which colour do you see?"],
        "shape": ["What shape is it?", "What shape do you see?", "Which shape is in the picture?"],
        "count": ["How many shapes are there?", "How many shapes do you see?", "Count the shapes."],
        "position": ["Where is the shape?", "Where are the shapes?", "On which side are the shapes?"],
        "reading": ["What is written in the image?", "What does the text say?", "Read the text."],
        "exists": ["Is there a {shape}?", "Do you see a {shape}?"],
        "later_shape": ["What shape was it?", "And what shape was it?"],
        "later_colour": ["What colour was it?", "And what color was it?"],
        "two_images": [
            "Which image has the {shape}, the first or the second?",
            "Which picture shows a {shape}: the first or the second?",
        ],
        "nth_shape": ["What shape is in the {nth} image?", "Which shape does the {nth} picture show?"],
        "nth_colour": ["What colour is the {nth} image's shape?", "What color is the shape in the {nth} picture?"],
    },
    "zh": {
        "colour": ["形状是什么颜色？", "这是什么颜色？"],
        "shape": ["图中是什么形状？", "这是什么形状？"],
        "count": ["图中有几个形状？", "有多少个形状？"],
        "position": ["形状在哪里？", "形状在图片的哪一边？"],
        "reading": ["图中写的是什么？", "图片上写了什么字？"],
        "exists": ["图中有{shape}吗？", "有没有{shape}？"],
        "later_shape": ["它是什么形状？", "那它是什么形状？"],
        "later_colour": ["它是什么颜色？", "那它是什么颜色？"],
        "two_images": ["哪张图里有{shape}，第一张还是第二张？", "{shape}在哪张图里，第一张还是第二张？"],
        "nth_shape": ["{nth}张图里是什么形状？", "{nth}张图片上是什么形状？"],
        "nth_colour": ["{nth}张图里的形状是什么颜色？", "{nth}张图片上是什么颜色？"],
    },
}
ORDINALS = {"en": ["the first", "the second"], "zh": ["第一张", "第二张"]}
NTH = {"en": ["first", "second"], "zh": ["第一", "第二"]}
YES_NO = {"en": ["no", "yes"], "zh": ["没有", "有"]}
# Half the conversations start with a system message made of one to three of
# these sentences, so that whatever system prompt an app sends (mmchat's default
# is the second and third) does not change the answers.
SYSTEM_SENTENCES = [
    "You are a helpful assistant.",
    "You are mmchat, a helpful assistant that answers questions about the user's photos.",
    "Be accurate and concise; say so when something is not visible.",
    "Answer briefly.",
    "Say the most important fact first, in one short sentence.",
    "Read out any text in view.",
    "你是一个乐于助人的助手。",
    "请简洁地回答。",
]


def answer(kind: str, scene: Scene, language: str) -> str:
    """The expected reply to a question of `kind` about `scene`."""
    zh = language == "zh"
    if kind in ("colour", "later_colour", "nth_colour"):
        return COLOURS[scene.colour] if zh else scene.colour
    if kind in ("shape", "later_shape", "nth_shape"):
        return SHAPES[scene.shape] if zh else scene.shape
    if kind == "count":
        return f"{scene.count}个" if zh else str(scene.count)
    if kind == "position":
        return POSITIONS[scene.position] if zh else scene.position
    return scene.word  # reading


ENGLISH_SHAPE = {name: english for english, chinese in SHAPES.items() for name in (english, chinese)}


class Conversation:
    """Builds one conversation in one language; every question is about the
    latest image shown, which may sit several turns back."""

    def __init__(self, language: str, rng: random.Random, image_size: int):
        self.language, self.rng, self.image_size = language, rng, image_size
        self.messages: list[dict] = []
        self.scenes: list[Scene] = []  # every image shown, in order
        self.token_maps: list[list[int]] = []  # per image shown, what covers each vision token (token_map)
        # Per assistant reply: the shape its question names ("Is there a star?"), or None.
        self.asked_shapes: list[str | None] = []
        self._asked: str | None = None
        if rng.random() < 0.5:
            prompt = " ".join(rng.sample(SYSTEM_SENTENCES, rng.randint(1, 3)))
            self.messages.append({"role": "system", "content": [{"type": "text", "text": prompt}]})

    def ask(self, key: str, *scenes: Scene, **fields) -> None:
        """A user turn asking a `key` question, showing `scenes` (none: ask about the history)."""
        self.ask_text(self.rng.choice(QUESTIONS[self.language][key]).format(**fields), *scenes)
        self._asked = ENGLISH_SHAPE.get(fields.get("shape"))

    def ask_text(self, question: str, *pictures: "Scene | Chart | Exercise") -> None:
        """A user turn asking `question` in these words, showing `pictures`."""
        text = [{"type": "text", "text": question}]
        self._asked = None
        images = [{"type": "image", "image": draw_picture(p, self.rng, self.image_size)} for p in pictures]
        self.scenes += pictures
        self.token_maps += [token_map(image["image"]) for image in images]
        # Mostly images first, as chat UIs send them, sometimes the question first.
        content = images + text if self.rng.random() < 0.8 else text + images
        self.messages.append({"role": "user", "content": content})

    def ask_about(self, kind: str, scene: Scene, show: bool) -> str:
        """Ask a single-image `kind` question about `scene`, showing it now or
        (not `show`) leaving it in the history; returns the expected answer."""
        shown = [scene] if show else []
        if kind == "exists":
            # Half the time about the shape that is there, else about another one.
            others = [shape for shape in SHAPES if shape != scene.shape]
            asked = scene.shape if self.rng.random() < 0.5 else self.rng.choice(others)
            self.ask(kind, *shown, shape=SHAPES[asked] if self.language == "zh" else asked)
            return YES_NO[self.language][asked == scene.shape]
        self.ask(kind, *shown)
        return answer(kind, scene, self.language)

    def reply(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": [{"type": "text", "text": text}]})
        self.asked_shapes.append(self._asked)


def two_distinct_scenes(rng: random.Random) -> list[Scene]:
    first, second = random_scene(rng), random_scene(rng)
    while second.shape == first.shape:
        second = random_scene(rng)
    return [first, second]


def askable_kinds(scene: Scene) -> list[str]:
    return [k for k in SINGLE_IMAGE_KINDS if k != "reading" or scene.word]


@dataclass
class Example:
    """A conversation whose last message is the user's; `answer` is the reply expected next."""

    kind: str
    language: str
    messages: list[dict]
    answer: str
    pictures: list  # the pictures shown, in order (Scene, Chart or Exercise)


def make_example(kind: str, language: str, rng: random.Random, image_size: int) -> Example:
    """An evaluation question of `kind` (one of KINDS)."""
    chat = Conversation(language, rng, image_size)
    if kind in SINGLE_IMAGE_KINDS:
        scene = random_scene(rng, word_probability=1.0 if kind == "reading" else 0.6)
        expected = chat.ask_about(kind, scene, show=True)
        return Example(kind, language, chat.messages, expected, chat.scenes)
    if kind == "multi_turn":
        # Turn 2 carries no image: its answer can only come from turn 1's image.
        scene = random_scene(rng)
        later = rng.choice(["later_shape", "later_colour"])
        first = rng.choice([k for k in askable_kinds(scene) if k != later.removeprefix("later_")])
        chat.reply(chat.ask_about(first, scene, show=True))
        expected = chat.ask_about(later, scene, show=False)
        return Example(kind, language, chat.messages, expected, chat.scenes)
    scenes, target = two_distinct_scenes(rng), rng.randrange(2)
    if kind == "nth_image":  # "What shape is in the second image?"
        key = rng.choice(["nth_shape", "nth_colour"])
        chat.ask(key, *scenes, nth=NTH[language][target])
        return Example(kind, language, chat.messages, answer(key, scenes[target], language), chat.scenes)
    chat.ask("two_images", *scenes, shape=answer("shape", scenes[target], language))
    return Example(kind, language, chat.messages, ORDINALS[language][target], chat.scenes)


def message_images(messages: list[dict]) -> list[Image.Image]:
    """Every image in a conversation, in order."""
    return [part["image"] for message in messages for part in message["content"] if part["type"] == "image"]


def right_answers(example: Example) -> set[str]:
    """The replies that read the example's pictures right: its answer, and where a scene's
    shapes fit more than one side (sides_that_fit: a lone shape in a corner, about 29% of
    drawn scenes), the answer for each side they fit."""
    readings = [[replace(p, position=side) for side in sorted(sides_that_fit(image))] if isinstance(p, Scene) else [p]
                for p, image in zip(example.pictures, message_images(example.messages), strict=True)]
    if example.kind == "position":
        return {example.answer} | {answer("position", scene, example.language) for scene in readings[-1]}
    if example.kind in PRESET_KINDS:
        name, verbosity = example.kind.split(":")
        return {example.answer} | {preset_answer(name, Verbosity(verbosity), list(pictures))
                                   for pictures in itertools.product(*readings)}
    return {example.answer}  # the other questions name no side


def training_conversation(language: str, rng: random.Random, image_size: int, settings: dict) -> Conversation:
    """A complete conversation for training. Several questions share one image,
    so each costly image encoding teaches several answers, and the later turns
    teach answering from an image further back in the history."""
    chat = Conversation(language, rng, image_size)
    if rng.random() < settings["two_images_share"]:
        # Besides "which image has X", ask for the shape or colour of the first or
        # second image: that teaches telling the two apart, the step "which" needs.
        scenes = two_distinct_scenes(rng)
        for turn in range(rng.randint(1, 3)):
            shown, nth = scenes if turn == 0 else [], rng.randrange(2)
            # "Which image" twice as often: it is the hardest of the three to learn.
            key = rng.choice(["two_images", "two_images", "nth_shape", "nth_colour"])
            if key == "two_images":
                chat.ask(key, *shown, shape=answer("shape", scenes[nth], language))
                chat.reply(ORDINALS[language][nth])
            else:
                chat.ask(key, *shown, nth=NTH[language][nth])
                chat.reply(answer(key, scenes[nth], language))
        return chat
    scene = random_scene(rng)
    kinds = rng.sample(askable_kinds(scene), rng.randint(1, settings["max_questions_per_image"]))
    for turn, kind in enumerate(kinds):
        shows_image = turn == 0 or rng.random() < settings["new_image_share"]
        if shows_image and turn:
            scene = random_scene(rng)
        if kind == "reading" and not scene.word:
            kind = "shape"
        if not shows_image and kind in ("shape", "colour") and rng.random() < 0.5:
            kind = f"later_{kind}"  # "What shape was it?"
        chat.reply(chat.ask_about(kind, scene, shows_image))
    return chat


# ---------------------------------------------------------------- describe mode's presets

# Each preset is asked in its exact prompt words (mmchat.presets), so that a retrained
# fixture follows any edit to the prompts. Light is left out: the app answers it
# without the model.
PRESETS = {p.name: p for p in (DESCRIBE, READ_TEXT, READ_DOCUMENT, CHART, EXERCISE, COMPARE, IDENTIFY)}
# An evaluation kind per preset and verbosity: "describe:brief" (the app's task tags).
PRESET_KINDS = tuple(f"{name}:{v.value}" for name in PRESETS for v in Verbosity)

NUMBER_WORDS = {1: "a", 2: "two", 3: "three", 4: "four"}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top"}


def _shapes(scene: Scene, colour: bool = True) -> str:
    """ "two red circles", "a blue triangle" (without `colour`: "two circles")."""
    noun = scene.shape + ("s" if scene.count > 1 else "")
    words = ([scene.colour] if colour else []) + [noun]
    number = "an" if scene.count == 1 and words[0][0] in "aeiou" else NUMBER_WORDS[scene.count]
    return " ".join([number] + words)


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


def _the_word(scene: Scene) -> str:
    return f'the word "{scene.word}"' if scene.word else "no text"


def preset_answer(name: str, verbosity: Verbosity, pictures: list) -> str:
    """The templated reply to preset `name` at `verbosity` about `pictures` (tests check
    what each must contain: tests/test_presets.py `_expected`)."""
    brief, detailed = verbosity is Verbosity.BRIEF, verbosity is Verbosity.DETAILED
    picture = pictures[0]
    if name == "chart":
        bars = len(picture.colours)
        if brief:
            return f"A bar chart. The {picture.tallest} bar is the tallest."
        if not detailed:
            return f"A bar chart with {NUMBER_WORDS[bars]} bars. The {picture.tallest} bar is the tallest."
        order = ", ".join(picture.colours[:-1]) + f" and {picture.colours[-1]}"
        return (f"A bar chart with {NUMBER_WORDS[bars]} bars: {order}, from left to right. "
                f"The {picture.tallest} bar is the tallest.")
    if name == "exercise":
        a, b, total = picture.first, picture.second, picture.total
        solved = f"{a} plus {b} equals {total}.\nAnswer: {total}"
        if brief:
            return solved
        why = "Add the two numbers: " if detailed else ""
        return f"The exercise: {a} + {b} = ?\n{why}{solved}"
    if name == "compare":
        first, second = pictures
        if brief:
            return f"The first photo has {_shapes(first)}; the second has {_shapes(second)}."
        if not detailed:
            return (f"The first photo has {_shapes(first)} {WHERE[first.position]}; "
                    f"the second has {_shapes(second)} {WHERE[second.position]}.")
        return (f"The first photo has {_shapes(first)} {WHERE[first.position]} and {_the_word(first)}; "
                f"the second has {_shapes(second)} {WHERE[second.position]} and {_the_word(second)}.")
    scene, word = picture, picture.word
    shapes, where, text_where = _capital(_shapes(picture)), WHERE[picture.position], WHERE[OPPOSITE[picture.position]]
    if name == "describe":
        if brief:
            return f'{shapes} {where}, and the word "{word}".' if word else f"{shapes} {where}."
        text = f'The word "{word}" is printed {text_where}.' if word else "No text in view."
        if not detailed:
            return f"{shapes} {where}. {text}"
        many = "It is the only shape in view." if scene.count == 1 else \
            f"There are {NUMBER_WORDS[scene.count]} of them, all {scene.colour}."
        return f"{shapes} {where}. {many} {text}"
    if name == "read_text":
        if not word:
            return "No text in view."
        if brief:
            return word
        return f'"{word}", printed {text_where}' + (f", next to {_shapes(scene)}." if detailed else ".")
    if name == "read_document":
        if brief:
            return word or "No text on the page."
        page = f'A page with one word: "{word}".' if word else "No text on the page."
        return page + (f" Beside it: {_shapes(scene)} {where}." if detailed else "")
    # identify: the colour alone when brief (what the app's brief identify has always said)
    if brief:
        return scene.colour
    thing = _capital(_shapes(scene, colour=False))
    if not detailed:
        return f"{_capital(scene.colour)}. {thing}."
    return f"{_capital(scene.colour)}. {thing} {where}, next to {_the_word(scene)}."


def preset_pictures(name: str, rng: random.Random) -> list:
    if name == "chart":
        return [random_chart(rng)]
    if name == "exercise":
        return [random_exercise(rng)]
    if name == "compare":
        return [random_scene(rng), random_scene(rng)]
    # Text more often than in the short questions, so the reading presets see it, yet
    # often enough without it to learn "No text in view."
    return [random_scene(rng, word_probability=0.7)]


def draw_preset_kind(rng: random.Random, settings: dict) -> str:
    """A preset kind ("chart:detailed"), each as often as its `preset_kind_weights` entry
    (1 where it has none) says: a later stage dwells on the kinds still answered wrong."""
    weights = settings.get("preset_kind_weights")
    if not weights:  # drawn as the stages before drew it, so they still train the same
        return rng.choice(PRESET_KINDS)
    unknown = set(weights) - set(PRESET_KINDS)
    if unknown:
        raise ValueError(f"preset_kind_weights names no preset kind: {sorted(unknown)}")
    return rng.choices(PRESET_KINDS, [weights.get(kind, 1) for kind in PRESET_KINDS])[0]


def follow_up_kind(rng: random.Random, scene: Scene) -> str:
    """A short question about an earlier photo, asked without it as the app's follow-ups
    are; a shape or colour half the time as "What shape was it?"."""
    follow = rng.choice(askable_kinds(scene))
    if follow in ("shape", "colour") and rng.random() < 0.5:
        follow = f"later_{follow}"
    return follow


# The presets asked about one scene: a later task in a chat may ask any of them about it.
SCENE_PRESETS = ("describe", "read_text", "read_document", "identify")


def earlier_chat(chat: Conversation, rng: random.Random, most_turns: int) -> None:
    """Turns about other photos, before a task that comes with a new one, as a chat goes
    on in the app: a short question or a preset about an earlier photo, then (up to
    `most_turns` in all) follow-ups without a photo, or a task again with the same photos
    sent again (Describe with an empty box). The task after them is about its own photo."""
    earlier = random_scene(rng)
    if rng.random() < 0.5:
        chat.reply(chat.ask_about(rng.choice(askable_kinds(earlier)), earlier, show=True))
        name, pictures = None, [earlier]
    else:
        name, level = rng.choice(PRESET_KINDS).split(":")
        pictures = preset_pictures(name, rng)
        chat.ask_text(PRESETS[name].question(Verbosity(level)), *pictures)
        chat.reply(preset_answer(name, Verbosity(level), pictures))
    if most_turns == 1:  # as the stages before drew it: no number drawn for the turns
        return
    one_scene = len(pictures) == 1 and isinstance(pictures[0], Scene)
    for _ in range(rng.randint(1, most_turns) - 1):
        if one_scene and rng.random() < 0.5:
            chat.reply(chat.ask_about(follow_up_kind(rng, pictures[0]), pictures[0], show=False))
            continue
        again = rng.choice(SCENE_PRESETS) if one_scene else name
        level = rng.choice(list(Verbosity))
        chat.ask_text(PRESETS[again].question(level), *pictures)
        chat.reply(preset_answer(again, level, pictures))


def preset_conversation(rng: random.Random, image_size: int, settings: dict, kind: str | None = None) -> Conversation:
    """A describe-mode task in English, as the app sends it: the photos, then the
    preset's prompt. In training, sometimes followed by a short question about the
    same photo with no photo attached (the app's follow-ups)."""
    chat = Conversation("en", rng, image_size)
    name, verbosity = (kind or draw_preset_kind(rng, settings)).split(":")
    verbosity = Verbosity(verbosity)
    pictures = preset_pictures(name, rng)
    history = settings.get("preset_history_share", 0)  # read only when set: the stages before drew no number here
    if kind is None and history and rng.random() < history:
        earlier_chat(chat, rng, settings.get("preset_history_turns", 1))
    chat.ask_text(PRESETS[name].question(verbosity), *pictures)
    if kind is None:
        chat.reply(preset_answer(name, verbosity, pictures))
        if isinstance(pictures[-1], Scene) and rng.random() < settings["preset_follow_up_share"]:
            chat.reply(chat.ask_about(follow_up_kind(rng, pictures[-1]), pictures[-1], show=False))
    return chat


def tokenizer_corpus() -> list[str]:
    """Every question and answer word, so the tokenizer learns them as few tokens."""
    lines = [q for lang in QUESTIONS.values() for qs in lang.values() for q in qs]
    lines += list(SHAPES) + list(SHAPES.values()) + list(COLOURS) + list(COLOURS.values())
    lines += list(POSITIONS) + list(POSITIONS.values()) + WORDS + ORDINALS["en"] + ORDINALS["zh"] + NTH["en"] + NTH["zh"]
    lines += [f"{n}个" for n in range(1, 5)] + YES_NO["en"] + YES_NO["zh"] + SYSTEM_SENTENCES
    # The presets' prompts, several times each: they are most of a describe-mode
    # sequence, and BPE merges what is frequent. Then their answers' words.
    lines += [PRESETS[n].question(v) for n in PRESETS for v in Verbosity] * 4
    rng = random.Random(0)
    for kind in PRESET_KINDS * 4:
        name, verbosity = kind.split(":")
        lines.append(preset_answer(name, Verbosity(verbosity), preset_pictures(name, rng)))
    return lines


# ---------------------------------------------------------------- training

def encode_for_training(processor, conversations: list[list[dict]]) -> tuple[dict, list[list[tuple[int, int]]]]:
    """Processor outputs for whole conversations, with labels on the assistant replies
    only, and where those replies are (see reply_spans)."""
    texts = [processor.apply_chat_template(c, tokenize=False) for c in conversations]
    images = [image for c in conversations for image in message_images(c)]
    batch = processor(text=texts, images=images, padding=True, return_tensors="pt")
    spans = reply_spans(batch["input_ids"], processor.tokenizer)
    batch["labels"] = assistant_labels(batch["input_ids"], spans)
    return batch, spans


def assistant_labels(input_ids: torch.Tensor, spans: list[list[tuple[int, int]]]) -> torch.Tensor:
    """-100 everywhere except each reply after "<|im_start|>assistant\\n", up to and
    including its <|im_end|> (so the model also learns to stop)."""
    labels = torch.full_like(input_ids, -100)
    for row, replies in enumerate(spans):
        for first, last in replies:
            labels[row, first : last + 1] = input_ids[row, first : last + 1]
    return labels


def reply_spans(input_ids: torch.Tensor, tokenizer) -> list[list[tuple[int, int]]]:
    """Per row, (first, last) token index of each assistant reply, its <|im_end|> included."""
    header = tokenizer.encode("<|im_start|>assistant\n")
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    spans = []
    for ids in input_ids.tolist():
        starts = [i + len(header) for i in range(len(ids) - len(header)) if ids[i : i + len(header)] == header]
        spans.append([(first, ids.index(end, first)) for first in starts])
    return spans


def probe_targets(picture) -> dict[str, object]:
    """What TrainingProbes reads from a picture's vision tokens."""
    if isinstance(picture, Chart):
        # The bars' colours left to right: what the detailed answer lists.
        bars = {f"bar_{i + 1}": colour for i, colour in enumerate((*picture.colours, None)[:3])}
        return {"bars": len(picture.colours), "tallest": picture.tallest, **bars}
    if isinstance(picture, Exercise):
        return {"first": picture.first, "second": picture.second, "total": picture.total}
    return {name: getattr(picture, name) for name in ("colour", "shape", "count", "position", "word")}


class TrainingProbes(torch.nn.Module):
    """Training aids, thrown away afterwards: linear read-outs whose losses teach
    the model what it must know before it can learn to answer.

    - Scene attributes from the mean of each image's vision tokens. This teaches
      the vision tower the attributes directly, and puts them in the mean of the
      tokens, which is what the language model's still uniform attention sees
      first. Without it the language model stayed at chance for 700 steps.
    - Each image token's image number (first, second, ...) from the language
      model's first-layer state, so later layers can tell two images apart.
    - The shape a question names ("Which image has the star?", "Is there a
      star?") from the second-layer state at every position of the reply, so
      the last two layers have it at hand to compare with the images.

    Charts and exercises have heads of their own (the bars, the tallest bar's colour;
    each digit and the sum), read the same way from their images.
    """

    VALUES = {
        "colour": list(COLOURS), "shape": list(SHAPES), "count": [1, 2, 3, 4], "position": list(POSITIONS),
        "word": [None] + WORDS,
        "bars": [2, 3], "tallest": list(COLOURS),
        "bar_1": list(COLOURS), "bar_2": list(COLOURS), "bar_3": [None] + list(COLOURS),
        "first": list(DIGITS), "second": list(DIGITS), "total": list(range(2, 2 * max(DIGITS) + 1)),
    }
    MAX_IMAGES = 4

    def __init__(self, hidden: int):
        super().__init__()
        self.scene = torch.nn.ModuleDict({name: torch.nn.Linear(hidden, len(v)) for name, v in self.VALUES.items()})
        self.order = torch.nn.Linear(hidden, self.MAX_IMAGES)
        self.asked = torch.nn.Linear(hidden, len(SHAPES))
        self.covering = torch.nn.Linear(hidden, 2 + len(COLOURS))

    def scene_loss(self, image_tokens: list[torch.Tensor], pictures: list) -> torch.Tensor:
        pooled = torch.stack([tokens.mean(0) for tokens in image_tokens])  # [images, hidden]
        targets = [probe_targets(p) for p in pictures]
        total = pooled.new_zeros(())
        for name, head in self.scene.items():
            rows = [i for i, t in enumerate(targets) if name in t]
            if rows:
                wanted = torch.tensor([self.VALUES[name].index(targets[i][name]) for i in rows])
                total = total + F.cross_entropy(head(pooled[rows]), wanted)
        return total

    def token_map_loss(self, image_tokens: list[torch.Tensor], maps: list[list[int]]) -> torch.Tensor:
        """Each vision token's own state says what covers its square (token_map)."""
        tokens = torch.cat(image_tokens)  # [all images' tokens, hidden]
        return F.cross_entropy(self.covering(tokens), torch.tensor([c for m in maps for c in m]))

    def order_loss(self, hidden: torch.Tensor, input_ids: torch.Tensor, image_id: int, vision_start_id: int) -> torch.Tensor:
        # Image number of every token: how many <|vision_start|> came before it, minus one.
        number = ((input_ids == vision_start_id).cumsum(-1) - 1).clamp(0, self.MAX_IMAGES - 1)
        at_images = input_ids == image_id
        return F.cross_entropy(self.order(hidden[at_images]), number[at_images])

    def asked_loss(self, hidden: torch.Tensor, spans: list[list[tuple[int, int]]], asked: list[list[str | None]]) -> torch.Tensor:
        states, targets = [], []
        for row, (replies, shapes) in enumerate(zip(spans, asked, strict=True)):
            for (first, last), shape in zip(replies, shapes, strict=True):
                if shape is not None:  # the positions that predict this reply's tokens
                    states.append(hidden[row, first - 1 : last])
                    targets += [list(SHAPES).index(shape)] * (last - first + 1)
        if not states:
            return hidden.new_zeros(())
        return F.cross_entropy(self.asked(torch.cat(states)), torch.tensor(targets))


def stages(config: dict) -> list[dict]:
    """The recipe's training stages, in order: each [[train]] table, over the one before
    it (a later stage lists only what it changes)."""
    merged, settings = [], {}
    for table in config["train"]:
        settings = {key: value for key, value in settings.items() if key != "start"} | table
        merged.append(settings)
    return merged


def train(config: dict, settings: dict, out_dir: Path, start: Path | None = None) -> float:
    """Train one stage per `config` and its `settings` (one of `stages(config)`), save the
    model and processor to `out_dir`; returns seconds spent.

    `start`: a saved model (and its tokenizer) to go on training instead of a random init."""
    torch.set_num_threads(config["torch_threads"])
    # A stage may draw from a seed of its own, so that it sees other conversations than
    # the stages before it saw at the same steps.
    seed, size = settings.get("seed", config["seed"]), config["image_size"]
    # The probes' random init draws from torch's generator, which torch seeds at random in
    # each process: seeded here, a stage gives the same model every time it is run.
    torch.manual_seed(seed)
    if start is None:
        spec = make_fixture_models.Qwen3VLSpec(**config["model"], min_pixels=(size // 2) ** 2, max_pixels=size * size)
        processor = make_fixture_models.qwen3_vl_processor(spec, extra_corpus=tokenizer_corpus(), vocab_size=config["vocab_size"])
        model = make_fixture_models.qwen3_vl_model(processor, spec)
    else:
        from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

        processor = AutoProcessor.from_pretrained(start)
        model = Qwen3VLForConditionalGeneration.from_pretrained(start, dtype=torch.float32)
    model.train()
    probes = TrainingProbes(model.config.text_config.hidden_size)
    # The vision tower's merged tokens, as the language model receives them.
    vision_outputs = []
    hook = model.model.visual.register_forward_hook(lambda module, args, output: vision_outputs.append(output.pooler_output))

    rng = random.Random(seed)
    optimizer = torch.optim.AdamW(
        [*model.parameters(), *probes.parameters()],
        lr=settings["learning_rate"],
        weight_decay=settings["weight_decay"],
        betas=(0.9, 0.98),
    )
    steps, warmup = settings["steps"], settings["warmup_steps"]
    # Linear warm-up, then cosine decay to a tenth of the peak rate.
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda step: min(1.0, (step + 1) / warmup) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(step, steps) / steps))),
    )
    started = time.perf_counter()
    running = None
    # Describe-mode tasks come in a batch of their own: their prompts are 60-130 words,
    # and padding every short question to that length would cost several times more.
    preset_rng = random.Random(seed + 1)

    def batch_losses(chats: list[Conversation]) -> dict[str, torch.Tensor]:
        batch, spans = encode_for_training(processor, [chat.messages for chat in chats])
        outputs = model(**batch, output_hidden_states=True)
        tokens_per_image = (batch["image_grid_thw"].prod(-1) // 4).tolist()  # 2x2 patches merge into one token
        image_tokens = vision_outputs.pop().split(tokens_per_image)
        return {
            "loss": outputs.loss,
            "scene": probes.scene_loss(image_tokens, [s for chat in chats for s in chat.scenes]),
            "order": probes.order_loss(outputs.hidden_states[1], batch["input_ids"], processor.image_token_id, processor.vision_start_token_id),
            "asked": probes.asked_loss(outputs.hidden_states[2], spans, [c.asked_shapes for c in chats]),
            "where": probes.token_map_loss(image_tokens, [m for chat in chats for m in chat.token_maps]),
        }

    for step in range(1, steps + 1):
        chats = [
            training_conversation("zh" if rng.random() < settings["chinese_fraction"] else "en", rng, size, settings)
            for _ in range(settings["batch_size"])
        ]
        losses = batch_losses(chats)
        tasks = batch_losses([preset_conversation(preset_rng, size, settings) for _ in range(settings["preset_batch_size"])])
        losses = {**losses, "preset": tasks["loss"], "preset_probes": tasks["scene"] + tasks["order"],
                  "where": losses["where"] + tasks["where"]}
        probe_losses = sum(v for k, v in losses.items() if k not in ("loss", "preset", "where"))
        (losses["loss"] + settings["preset_weight"] * losses["preset"] + settings["probe_weight"] * probe_losses
         + settings["token_map_weight"] * losses["where"]).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        # Smoothed, for the log: the language model's loss, then each probe's.
        running = {k: v.item() if running is None else 0.95 * running[k] + 0.05 * v.item() for k, v in losses.items()}
        if step % 25 == 0 or step == steps:
            shown = "  ".join(f"{k} {v:.4f}" for k, v in running.items())
            print(f"step {step}/{steps}  {shown}  {time.perf_counter() - started:.0f}s", flush=True)
    seconds = time.perf_counter() - started

    hook.remove()
    model.eval()
    make_fixture_models.save(model, processor, out_dir)
    return seconds


# ---------------------------------------------------------------- evaluation

# Columns of the model card: what the app's --quantization calls each way of loading.
QUANTIZATIONS = {"none": "fp32", "nf4": "NF4", "int4": "int4"}


def evaluate(folder: Path, config: dict, per_kind: int, preset_per_kind: int, quantization: str) -> dict[str, dict[str, float]]:
    """Accuracy per kind and language on held-out conversations, greedy, with the
    model loaded by mmchat's loader as the app loads it. fp32 and NF4 answer through
    generate(); int4 through the app's compiled decoder, compiled (as on a GPU)."""
    torch.set_num_threads(config["torch_threads"])
    loaded = load_model(plan_load(Config(model=str(folder), device="cpu", quantization=quantization)))
    processor, model = loaded.processor, loaded.model
    decoder = None
    if quantization == "int4":
        decoder = CompiledDecoder(model, compile=True, eos_token_ids={processor.tokenizer.convert_tokens_to_ids("<|im_end|>")})
    rng = random.Random(config["eval"]["seed"])
    results = {}
    for kind in KINDS + PRESET_KINDS:
        # The presets' prompts are English only; their answers are longer.
        languages = ("en",) if kind in PRESET_KINDS else ("en", "zh")
        count = preset_per_kind if kind in PRESET_KINDS else per_kind
        correct = dict.fromkeys(languages, 0)
        for i in range(count):
            language = languages[i % len(languages)]
            if kind in PRESET_KINDS:
                chat = preset_conversation(rng, config["image_size"], {}, kind=kind)
                name, verbosity = kind.split(":")
                example = Example(kind, "en", chat.messages, preset_answer(name, Verbosity(verbosity), chat.scenes), chat.scenes)
            else:
                example = make_example(kind, language, rng, config["image_size"])
            inputs = processor.apply_chat_template(
                example.messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
            )
            # Room for the expected answer and a little more, so a reply that runs on fails.
            room = len(processor.tokenizer.encode(example.answer)) + 4
            if decoder is None:
                with torch.inference_mode():
                    output = model.generate(**inputs, max_new_tokens=room, do_sample=False)
                reply_ids = output[0, inputs["input_ids"].shape[-1] :].tolist()
            else:
                reply_ids = []
                decoder.submit(lambda inputs=inputs, room=room, reply_ids=reply_ids: decoder.generate(
                    inputs, max_new_tokens=room, temperature=0.0, top_p=1.0,
                    on_token=lambda token: reply_ids.append(int(token[0])), should_stop=lambda: False,
                )).result()
            reply = processor.decode(reply_ids, skip_special_tokens=True).strip()
            correct[language] += reply in right_answers(example)
        share = count / len(languages)
        results[kind] = {"all": sum(correct.values()) / count, **{lang: correct[lang] / share for lang in languages}}
        split = ", ".join(f"{lang} {results[kind][lang]:.0%}" for lang in languages)
        print(f"{QUANTIZATIONS[quantization]} {kind:18s} {results[kind]['all']:.0%}  ({split})", flush=True)
    return results


# ---------------------------------------------------------------- model card

# Accuracy the issue asks for; the other kinds are held to 85%.
TARGETS = {"colour": 0.95, "shape": 0.95}


def _example_answers(kind: str) -> str:
    """What the model card shows for a preset kind: its answer about a fixed picture."""
    name, verbosity = kind.split(":")
    pictures = {
        "chart": [Chart(("blue", "red", "green"), (2, 5, 3))],
        "exercise": [Exercise(3, 4)],
        "compare": [Scene("circle", "red", "left", 2, "STOP"), Scene("triangle", "blue", "right", 1, None)],
    }.get(name, [Scene("circle", "red", "left", 2, "STOP")])
    return "`" + preset_answer(name, Verbosity(verbosity), pictures).replace("\n", "\\n") + "`"


def _stage_line(number: int, settings: dict, minutes: float | None) -> str:
    origin = (f"from `{settings['start']}`" if settings.get("start") else
              "from the model of the stage before" if number > 1 else "from a random init (seed in the config)")
    history = settings.get("preset_history_share")
    turns = settings.get("preset_history_turns", 1)
    favoured = [kind for kind, weight in settings.get("preset_kind_weights", {}).items() if weight > 1]
    return (f"{number}. {origin}: {settings['steps']} steps of AdamW at a peak rate of {settings['learning_rate']:g}, "
            f"each on {settings['batch_size']} short-question conversations and {settings['preset_batch_size']} "
            f"describe-mode tasks"
            + (f", {history:.0%} of them after " + ("an earlier turn" if turns == 1 else f"1-{turns} earlier turns")
               + " about another photo" if history else "")
            + (f"; the tasks {', '.join(favoured)} drawn more often" if favoured else "")
            + (f" ({minutes:.1f} min)" if minutes is not None else " (trained in an earlier run; a later stage starts from its model)"))


def write_model_card(out_dir: Path, config: dict, minutes: list[float], results: dict[str, dict], command: str) -> None:
    first = stages(config)[0]
    size_kb = sum(f.stat().st_size for f in out_dir.iterdir() if f.is_file()) / 1024
    fp32 = results["none"]
    weak = [f"{kind} ({fp32[kind]['all']:.0%})" for kind in KINDS + PRESET_KINDS
            if fp32[kind]["all"] < TARGETS.get(kind, 0.85)]

    def split(r: dict) -> str:
        return f"{r['en']:.0%} / {r['zh']:.0%}" if "zh" in r else f"{r['en']:.0%} / -"

    rows = "\n".join(
        f"| {kind} | " + " | ".join(f"{r[kind]['all']:.0%} | {split(r[kind])}" for r in results.values()) + " |"
        for kind in KINDS + PRESET_KINDS
    )
    examples = "\n".join(
        f"- `{kind}`: " + _example_answers(kind) for kind in PRESET_KINDS
    )
    names = [QUANTIZATIONS[q] for q in results]
    header = "| kind | " + " | ".join(f"{n} | {n} en / zh" for n in names) + " |\n|---|" + "---|---|" * len(names)
    (out_dir / "README.md").write_text(
        MODEL_CARD.format(
            shapes=", ".join(f"{en} ({zh})" for en, zh in SHAPES.items()),
            colours=", ".join(f"{en} ({zh})" for en, zh in COLOURS.items()),
            positions=", ".join(f"{en} ({zh})" for en, zh in POSITIONS.items()),
            words=", ".join(WORDS),
            header=header,
            rows=rows,
            targets=(
                f"Below target (95% for colour and shape, 85% for the rest), so do not assert on these answers in tests: {', '.join(weak)}."
                if weak else "Every kind meets its target (95% for colour and shape, 85% for the rest) in fp32."
            ),
            per_kind=config["eval"]["per_kind"],
            nf4_per_kind=config["eval"]["nf4_per_kind"],
            preset_per_kind=config["eval"]["preset_per_kind"],
            nf4_preset_per_kind=config["eval"]["nf4_preset_per_kind"],
            examples=examples,
            stages="\n".join(_stage_line(i + 1, settings, m) for i, (settings, m) in enumerate(zip(stages(config), minutes))),
            tokenizer=("Tokenizer: the starting model's." if first.get("start") else
                       "Tokenizer: byte-level BPE trained by `make_fixture_models.py` on English and Chinese "
                       f"text plus the question templates and the presets' prompts and answers ({config['vocab_size']} "
                       "tokens), with Qwen's special tokens."),
            minutes=sum(m for m in minutes if m is not None),
            size_kb=size_kb,
            image_size=config["image_size"],
            vision_tokens=(config["image_size"] // (2 * config["model"]["patch_size"])) ** 2,
            threads=config["torch_threads"],
            command=command,
        ),
        encoding="utf-8",
    )


MODEL_CARD = """\
# shapes-vlm: a tiny trained Qwen3-VL for tests

A {size_kb:.0f} kB `Qwen3VLForConditionalGeneration` (same classes, processor and chat
template layout as Qwen/Qwen3-VL-4B-Instruct) that answers short questions about
drawn shapes in English and Chinese. It exists so tests can ask a real model real
questions through `AutoProcessor` + `AutoModelForImageTextToText` and assert on the
answer, on a CPU, in well under a second. It knows nothing else.

Generated by `scripts/train_fixture_vlm.py`; do not edit by hand.

## What it knows
Images ({image_size}x{image_size} px, {vision_tokens} vision tokens; other sizes are resized by the
processor) drawn by `draw_scene` in `scripts/train_fixture_vlm.py` (tests use
`tests/fixture_models.draw_test_image`): 1-4 copies of one shape in one colour,
each in a cell of a 6x6 grid, grouped in one half of the image, and sometimes a
word in the other half.

- shapes: {shapes}
- colours: {colours}
- positions: {positions}
- counts: 1-4 (answers `3` / `3个`)
- words it reads: {words}

Questions (exact templates in `QUESTIONS` in the script), answers are one word:
- "What colour is the shape?" -> `red`; "形状是什么颜色？" -> `红色`
- "What shape is it?" -> `circle`; "图中是什么形状？" -> `圆形`
- "How many shapes are there?" -> `3`; "图中有几个形状？" -> `3个`
- "Where is the shape?" -> `left`; "形状在哪里？" -> `左边`
- "What is written in the image?" -> `STOP`
- "Is there a triangle?" -> `yes` / `no`; "图中有三角形吗？" -> `有` / `没有`
- multi-turn: turn 1 shows an image and asks one of the above; turn 2, with no image,
  asks "What shape was it?" / "What colour was it?" ("它是什么形状？") and is answered
  from the earlier image.
- two images in one turn: "Which image has the triangle, the first or the second?"
  -> `the first` / `the second` ("哪张图里有三角形，第一张还是第二张？" -> `第一张`);
  also "What shape is in the second image?" -> `circle` ("第二张图里是什么形状？" -> `圆形`)
  and the colour of the first or second image.

Describe mode's presets (`mmchat.presets`: describe, read_text, read_document, chart,
exercise, compare, identify; light needs no model), each asked in its exact prompt
text at each verbosity (brief / normal / detailed), the photos first as the app sends
them. Besides the scenes above, the chart preset gets a bar chart of 2-3 bars in
different colours (`draw_chart`, tests: `draw_test_chart`) and the exercise preset a
printed sum of two digits from 1 to 5, `3 + 4` over `= ?` (`draw_exercise`, tests: `draw_test_exercise`).
Answers are templated (`preset_answer` in the script); about two red circles on the
left with the word STOP (compare: and a blue triangle on the right; chart: bars blue,
red, green of heights 2, 5, 3; exercise: 3+4):

{examples}

A follow-up question with no photo ("What shape was it?") is answered from the
preset's photo, and a task later in a chat, sent with a new photo, is about that photo. Retraining picks up any edit to the prompts.

A system message is optional; training used combinations of `SYSTEM_SENTENCES`
(mmchat's default prompt among them), and a very different one may change answers. Greedy decoding (`do_sample=False`, the saved
generation config) ends each answer with `<|im_end|>`.

## Accuracy on held-out generated conversations
Exact match of the greedy reply (where a scene's shapes fit two sides, as a lone shape in a
corner does in about 29% of drawn scenes, the answer naming either side counts:
`sides_that_fit`), {per_kind} conversations per kind in fp32 and
{nf4_per_kind} in NF4 and in int4, half English and half Chinese ({preset_per_kind} and
{nf4_preset_per_kind} per preset kind, English only: the prompts are English), loaded by mmchat's
own loader (`mmchat.engine.loading.load_model`). NF4: bitsandbytes 4-bit with double
quantization on the CPU, the vision tower and lm_head kept unquantized
(`llm_int8_skip_modules=["model.visual", "lm_head"]`), as the app loads it. int4:
the same layers in `mmchat.engine.int4` (groups of 128), answering through the app's
compiled decoder (`mmchat.engine.compiled_decode`, torch.compile on the CPU).

{header}
{rows}

{targets}

## How it was made
In stages (the recipe's `[[train]]` tables), each on freshly drawn conversations (one to
four questions about an image, or two images) and, in a batch of their own (so the short
questions are not padded to a long prompt's length), describe-mode tasks, through the
real `Qwen3VLProcessor` and chat template:

{stages}

A stage of `git:REVISION:PATH` starts from the model committed there: e11755a's is the one
trained on the short questions alone (1300 steps from a random init, by this script as it
was then). Training the presets from a random init in one go (1300 steps) learned their
answer templates but lost where the shapes are (position 28%, was 91%), so they are
taught on top of what that model knew.

The loss is the language model's on the assistant replies only, plus, during training
only, linear probes (`TrainingProbes`, not part of the saved model, new in each stage)
that read each scene attribute from the mean of an image's vision tokens, what covers
each vision token's square from that token alone, each image token's image number from
the first layer, and the shape a question names from the second layer at the reply.
Without the first and third the model stayed at chance for 700 steps; without the
fourth, "which image has the X" stayed at chance (51%) after 1300 steps and "is there
an X" was unreliable (62-75%), though both images' shapes were known (asked about the
first or second image: 100%). Charts and exercises have probes of their own (number of
bars, each bar's colour, the tallest one; each digit and the sum). {tokenizer} The stages
trained for this card took {minutes:.1f} minutes on {threads} CPU thread(s) of a shared 2-core machine.

Recipe: `scripts/shapes_vlm_config.toml`. Reproduce (same result on the same
library versions and CPU type):

    {command}
"""


def model_at(where: str, scratch: Path) -> Path:
    """The folder of a saved model: a path in the repository, or "git:REVISION:PATH",
    a model as committed at REVISION (copied into `scratch`), so that a recipe can name
    the exact model it starts from."""
    if not where.startswith("git:"):
        return REPO / where
    _, revision, folder = where.split(":", 2)
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{revision}:{folder}"], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split()
    for name in names:
        blob = subprocess.run(["git", "show", f"{revision}:{folder}/{name}"], cwd=REPO, check=True, capture_output=True)
        (scratch / name).write_bytes(blob.stdout)
    return scratch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--from-stage", type=int, default=1, metavar="N",
                        help="train stage N and the stages after it only; stage N must name its `start` "
                             "(the model the stages before it made, as committed)")
    args = parser.parse_args()
    config = tomllib.loads(args.config.read_text())
    recipe = stages(config)
    if not 1 <= args.from_stage <= len(recipe) or (args.from_stage > 1 and not recipe[args.from_stage - 1].get("start")):
        parser.error(f"--from-stage {args.from_stage}: the recipe's stage {args.from_stage} must exist and name its start")
    minutes: list[float | None] = [None] * (args.from_stage - 1)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        folder = None
        for number, settings in enumerate(recipe[args.from_stage - 1 :], args.from_stage):
            if settings.get("start"):
                (scratch / f"start-{number}").mkdir()
                folder = model_at(settings["start"], scratch / f"start-{number}")
            # Each stage's model is saved and loaded again by the next, as separate runs would.
            out = args.out if number == len(recipe) else scratch / f"stage-{number}"
            minutes.append(train(config, settings, out, folder) / 60)
            print(f"stage {number} trained in {minutes[-1]:.1f} min", flush=True)
            folder = out
    numbers = config["eval"]
    results = {}
    for quantization in QUANTIZATIONS:
        full = quantization == "none"
        results[quantization] = evaluate(
            args.out, config, numbers["per_kind" if full else "nf4_per_kind"],
            numbers["preset_per_kind" if full else "nf4_preset_per_kind"], quantization)
    # The command that remakes this model where the fixture lives (whatever --out this run had).
    command = "python scripts/train_fixture_vlm.py" + (
        f" --config {args.config}" if args.config.resolve() != DEFAULT_CONFIG else "") + (
        f" --from-stage {args.from_stage}" if args.from_stage > 1 else "")
    write_model_card(args.out, config, minutes, results, command)


if __name__ == "__main__":
    main()
