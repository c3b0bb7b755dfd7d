"""Markdown to speakable words: the voice never says "asterisk", reads no code and no URL path."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mmchat.tts.speakable import CODE_BLOCK_PHRASE, SpeakableSentences, to_speakable

REPLY = """## What I see

The photo shows **two cats** on a *red* sofa. One is a tabby, the other is black 🐈‍⬛.

- **Left:** the tabby, asleep
- **Right:** the black cat, looking at the camera 👀
1. First, the light comes from the window.

Here is how to crop it:

```python
from PIL import Image
img = Image.open("cats.jpg")  # Load it. Then crop.
img.crop((0, 0, 100, 100)).save("left.jpg")
```

Read more at https://pillow.readthedocs.io/en/stable/reference/Image.html. Or see the [tutorial](https://example.com/tutorial).
"""

SPOKEN = [
    "What I see",
    "The photo shows two cats on a red sofa.",
    "One is a tabby, the other is black.",
    "Left: the tabby, asleep",
    "Right: the black cat, looking at the camera",
    "1: First, the light comes from the window.",
    "Here is how to crop it:",
    CODE_BLOCK_PHRASE,
    "Read more at pillow.readthedocs.io.",
    "Or see the tutorial.",
]


def speak_streamed(reply: str, step: int) -> list[str]:
    sentences = SpeakableSentences()
    spoken = []
    for i in range(0, len(reply), step):
        spoken += sentences.feed(reply[i : i + step])
    return spoken + sentences.flush()


@pytest.mark.parametrize("step", [1, 3, 7, 1000])
def test_a_markdown_reply_streamed_in_any_pieces_is_spoken_cleanly(step):
    assert speak_streamed(REPLY, step) == SPOKEN


@pytest.mark.parametrize(
    ("unit", "spoken"),
    [
        ("**Bold** and __strong__ and *italic* and _slanted_.", "Bold and strong and italic and slanted."),
        ("# Heading", "Heading"),
        ("### Section ###", "Section"),
        ("- bullet item", "bullet item"),
        ("* star bullet", "star bullet"),
        ("- [x] done task", "done task"),
        ("> quoted text", "quoted text"),
        ("2) second", "2: second"),
        ("Call `resize()` first.", "Call resize() first."),
        ("~~old~~ new", "old new"),
        ("3 * 4 is 12.", "3 times 4 is 12."),
        ("snake_case_name stays", "snake_case_name stays"),
        ("| Cat | 3 |", "Cat, 3"),
        ("|---|:--:|", ""),
        ("---", ""),
        ("***", ""),
        ("Line<br>break", "Line break"),
    ],
)
def test_markdown_markers_are_not_read_out(unit, spoken):
    assert to_speakable(unit) == spoken


@pytest.mark.parametrize(
    ("unit", "spoken"),
    [
        ("See https://www.example.com/a/b?c=1.", "See example.com."),
        ("Docs: <https://docs.python.org/3/>", "Docs: docs.python.org"),
        ("Visit www.wikipedia.org, then rest.", "Visit wikipedia.org, then rest."),
        ("A [guide](https://x.org/guide) and ![a cat](cat.png).", "A guide and a cat."),
        ("the end of a link](https://x.org/a) cut in two", "the end of a link cut in two"),
    ],
)
def test_urls_become_their_site_and_links_their_text(unit, spoken):
    assert to_speakable(unit) == spoken


def test_emoji_are_skipped():
    assert to_speakable("Great job 🎉👍🏽! ✅ Done ❤️ 🇫🇷") == "Great job! Done"
    assert to_speakable("😀🙂") == ""


@pytest.mark.parametrize(
    ("unit", "spoken"),
    [
        ("It costs $4.50.", "It costs 4 dollars 50 cents."),
        ("Only $1 or $0.05 or £2.01.", "Only 1 dollar or 5 cents or 2 pounds 1 penny."),
        ("About $4.5 million.", "About 4.5 million dollars."),
        ("€1,200 total", "1,200 euros total"),
        ("Dr. Smith and Prof. Lee", "Doctor Smith and Professor Lee"),
        ("Mr. Jones, Mrs. Jones, Ms. Jones", "Mister Jones, Missus Jones, Miz Jones"),
    ],
)
def test_what_the_phonemizer_misreads_is_written_out(unit, spoken):
    assert to_speakable(unit) == spoken


def test_code_blocks_are_replaced_by_a_short_phrase():
    assert to_speakable("```\nrm -rf /tmp/x\n```") == CODE_BLOCK_PHRASE
    assert to_speakable("~~~bash\necho hi") == CODE_BLOCK_PHRASE


def test_units_with_nothing_to_say_are_dropped():
    sentences = SpeakableSentences()
    assert sentences.feed("---\n|---|---|\n**\n") == []
    assert sentences.flush() == []


def test_chinese_passes_through():
    assert to_speakable("**你好**，世界。") == "你好，世界。"


MARKDOWN = st.lists(
    st.sampled_from(
        ["**", "*", "__", "_", "`", "#", "##", "- ", "> ", "|", "[", "]", "(", ")", "![", "](", "~~",
         "word", "Cat", "3", "x_y", " ", ",", ".", "😀", "✅", "https://a.b/c", "www.x.org", "$", "4.50"]
    ),
    max_size=30,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(MARKDOWN)
def test_markup_is_never_read_out(unit):
    spoken = to_speakable(unit)
    assert "*" not in spoken and "`" not in spoken and "~~" not in spoken
    assert not re.search(r"[\U0001F000-\U0001FAFF\u2600-\u27BF]", spoken)
    assert "://" not in spoken
    assert spoken == spoken.strip()
