"""The committed shapes-vlm answers from what it sees, through plain transformers.

Every test asks the same question about different images and expects different,
correct answers, so it fails if an image were dropped, ignored or swapped.
"""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForImageTextToText, AutoProcessor

from fixture_models import draw_test_image, shapes_vlm_path


@pytest.fixture(scope="module")
def vlm():
    folder = shapes_vlm_path()
    return AutoProcessor.from_pretrained(folder), AutoModelForImageTextToText.from_pretrained(folder)


def user(text, *images):
    return {"role": "user", "content": [{"type": "image", "image": i} for i in images] + [{"type": "text", "text": text}]}


def assistant(text):
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def ask(vlm, messages) -> str:
    processor, model = vlm
    inputs = processor.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
    )
    with torch.inference_mode():
        output = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    return processor.decode(output[0, inputs["input_ids"].shape[-1] :], skip_special_tokens=True).strip()


@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_names_the_colour_it_sees(vlm, colour):
    photo = draw_test_image("circle", colour, "left", count=2, word="CAT")
    assert ask(vlm, [user("What colour is the shape?", photo)]) == colour


@pytest.mark.parametrize(("shape", "expected"), [("circle", "圆形"), ("triangle", "三角形"), ("star", "星形")])
def test_answers_in_chinese(vlm, shape, expected):
    assert ask(vlm, [user("图中是什么形状？", draw_test_image(shape, "green", "right"))]) == expected


@pytest.mark.parametrize("shape", ["triangle", "square"])
def test_second_turn_answers_from_the_earlier_image(vlm, shape):
    turn_one = [user("What colour is the shape?", draw_test_image(shape, "purple", "top", count=3))]
    colour = ask(vlm, turn_one)
    assert colour == "purple"
    # The second turn carries no image: only the history can tell the shape.
    assert ask(vlm, turn_one + [assistant(colour), user("What shape was it?")]) == shape


@pytest.fixture(scope="module")
def triangle_and_circle():
    """Two photos that differ in shape, colour, count and position."""
    return draw_test_image("triangle", "red", "left", seed=1), draw_test_image("circle", "blue", "bottom", count=2, seed=2)


def test_tells_which_of_two_images_has_the_shape(vlm, triangle_and_circle):
    triangle, circle = triangle_and_circle
    question = "Which image has the triangle, the first or the second?"
    assert ask(vlm, [user(question, triangle, circle)]) == "the first"
    assert ask(vlm, [user(question, circle, triangle)]) == "the second"
    assert ask(vlm, [user("哪张图里有三角形，第一张还是第二张？", circle, triangle)]) == "第二张"


def test_answers_about_the_first_or_second_image(vlm, triangle_and_circle):
    triangle, circle = triangle_and_circle
    question = "What shape is in the second image?"
    assert ask(vlm, [user(question, triangle, circle)]) == "circle"
    assert ask(vlm, [user(question, circle, triangle)]) == "triangle"
    assert ask(vlm, [user("What colour is the first image's shape?", circle, triangle)]) == "blue"
