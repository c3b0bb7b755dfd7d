"""Describe mode's task presets, in one place (issue 13).

A preset is one job a blind or low-vision user asks for again and again (describe the
scene, read this, what colour is it...): the prompt sent as the user's question, how
many photos it needs, and any tidying of the answer. The page's buttons and voice
mode's spoken commands both come here, so a prompt is changed once for both.

The prompts are written for people who will act on the answer without seeing the
photo: the fact that matters for safety comes first, text is read as written, doubt
is said in words (a confident caption that is wrong is worse than a hedged one, and
blind users tend to trust captions), and there is no filler before the facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Callable


class Verbosity(Enum):
    BRIEF = "brief"
    NORMAL = "normal"
    DETAILED = "detailed"


# A brief description is read like alt text: screen-reader guidance has long kept that
# to about 125 characters, and past that a listener waits too long for the next fact.
BRIEF_CHARS = 125

# --- the prompts ---

# Shared by every preset that looks at a scene: what to put first and how to hedge.
_HONESTY = (
    "Say only what you can see. When you are not sure, say so plainly (\"probably\", \"I can't tell\") "
    "instead of guessing, and say if the photo is blurred, dark or cut off."
)
_NO_FILLER = "Start with the facts, not with \"This image shows\" or \"The photo\"."
_SAFETY_FIRST = (
    "First say anything that matters for safety or for the next step: traffic, a road crossing and "
    "the colour of its signal, a step, stairs, a kerb or drop, an obstacle, a door. If there is none, "
    "start with the main subject."
)


def _describe(verbosity: Verbosity) -> str:
    length = {
        Verbosity.BRIEF: f"Answer in one sentence of at most {BRIEF_CHARS} characters.",
        Verbosity.NORMAL: "Answer in two to four short sentences.",
        Verbosity.DETAILED: (
            "Then describe the rest in short sentences: where things are, near to far, people and what "
            "they are doing, colours, and the setting."
        ),
    }[verbosity]
    text = ("Quote a sign or label that matters word for word." if verbosity is Verbosity.BRIEF
            else "Read any text in view word for word, in quotes.")
    return (
        "Describe what is in front of the camera for someone who cannot see it. "
        f"{_SAFETY_FIRST} {text} {length} {_HONESTY} {_NO_FILLER}"
    )


def _read_text(verbosity: Verbosity) -> str:
    where = {
        Verbosity.BRIEF: "Give only the text, nothing before or after it.",
        Verbosity.NORMAL: "After the text, say in a few words what it is on (a sign, a label, a screen).",
        Verbosity.DETAILED: (
            "After the text, say what it is on and where each piece of text is, and mention any symbols "
            "or logos next to it."
        ),
    }[verbosity]
    return (
        "Read the text. Read it out exactly as written, word for word, in reading order: no summary, "
        "no corrections. Mark a word you cannot read as \"unreadable\" and say if text is cut off at an "
        f"edge. If there is no text in view, say \"No text in view.\" {where}"
    )


def _read_document(verbosity: Verbosity) -> str:
    extra = {
        Verbosity.BRIEF: "Read the text only, with no comments.",
        Verbosity.NORMAL: "Before the text, say in a few words what kind of page it is (a letter, a menu, a form).",
        Verbosity.DETAILED: (
            "Before the text, say what kind of page it is; after it, describe anything else on the page: "
            "pictures, stamps, signatures, handwriting."
        ),
    }[verbosity]
    return (
        "Read the whole page out word for word, top to bottom, a column at a time, with nothing summarised "
        "or left out. Say a heading as a heading, read a list item by item and a table row by row, naming "
        "each row's columns. Mark a word you cannot read as \"unreadable\"; if the page is cut off or "
        f"upside down, say so first, so the camera can be moved. {extra}"
    )


def _chart(verbosity: Verbosity) -> str:
    depth = {
        Verbosity.BRIEF: "Keep it to one or two sentences.",
        Verbosity.NORMAL: (
            "Then give the axes or parts and their units, the main values, and the trend or how the parts "
            "connect."
        ),
        Verbosity.DETAILED: (
            "Then give the axes or parts and their units, every series or label with its values in order, "
            "the legend, and anything that stands out (a peak, a gap, an outlier)."
        ),
    }[verbosity]
    return (
        "Explain this chart or diagram for someone who cannot see it. Say first what kind it is, its title, "
        f"and the main point it makes. {depth} Say when a value is read off the picture and so approximate. "
        f"{_NO_FILLER}"
    )


def _exercise(verbosity: Verbosity) -> str:
    steps = {
        Verbosity.BRIEF: "Give the key step and the answer only.",
        Verbosity.NORMAL: "Solve it step by step, one short step per line.",
        Verbosity.DETAILED: "Solve it step by step, one short step per line, saying why each step works.",
    }[verbosity]
    return (
        "Solve the exercise in the photo. First read the question out exactly as written. "
        f"{steps} Write maths in words a screen reader says clearly (\"x squared\", \"a over b\"). "
        "End with a line that starts \"Answer:\". If part of the exercise is unreadable, say which part "
        "and what you assumed."
    )


def _compare(verbosity: Verbosity) -> str:
    depth = {
        Verbosity.BRIEF: "Answer in one sentence: the main difference.",
        Verbosity.NORMAL: "Then list the other differences, and say in a few words what is the same.",
        Verbosity.DETAILED: (
            "Then list every other difference, where in the picture each one is, and what is the same."
        ),
    }[verbosity]
    return (
        "Compare the first and the second photo (when they were taken one after the other, the first is the earlier). Say first the difference that matters most, especially "
        "for safety (something moved, opened, switched on or off, appeared or went). "
        f"{depth} If they look the same, say so. {_HONESTY}"
    )


def _identify(verbosity: Verbosity) -> str:
    if verbosity is Verbosity.BRIEF:
        # Kept this short and in this order so the test fixture (shapes-vlm) answers it too.
        return ("What colour is it? Give its main colour and what it is, in a few words. "
                "Say when you are not sure of a colour.")
    more = "its other colours and any pattern, what it is next to, and " if verbosity is Verbosity.DETAILED else ""
    return (
        "What colour is it, and what is it? Give the main colour of the object in the middle of the view in "
        "everyday words (\"dark blue\", \"light grey\"), then what the object is, then "
        f"{more}any brand, label or size you can read. Lighting changes colours: say when you are not sure of one."
    )


def _happening(verbosity: Verbosity) -> str:
    length = {
        Verbosity.BRIEF: f"Answer in one sentence of at most {BRIEF_CHARS} characters.",
        Verbosity.NORMAL: "Answer in two to four short sentences, in the order things happen.",
        Verbosity.DETAILED: (
            "Then go through the clip in order, in short sentences: who or what moves, which way, how fast, "
            "what appears or leaves, and what is different at the end."
        ),
    }[verbosity]
    return (
        "Say what happens in this clip of the last few seconds, for someone who cannot see it: what moves "
        "or changes, and which way. First say anything that matters for safety: something coming closer, a "
        f"person approaching, a vehicle, a door opening. {length} If nothing moves or changes, say so. "
        f"{_HONESTY} {_NO_FILLER}"
    )


# --- tidying the answer ---

# Openings that spend a listener's time before the first fact.
_FILLER_OPENING = re.compile(
    r"^\s*(?:(?:this|the) (?:image|photo|picture|frame|scene) (?:shows|depicts|contains|features)(?: that)?"
    r"|in (?:this|the) (?:image|photo|picture|frame)|i (?:can )?see)\s*[,:]?\s+",
    re.IGNORECASE,
)
# Where a long sentence may be cut without leaving half a thought: after a clause.
_CLAUSE_END = re.compile(r"[,;:\u2014\u2013]\s|\s[\u2014\u2013-]\s|[\uff0c\uff1b\uff1a\u3001]")
# Chinese needs no space after its full stop.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'\u201d)]?(?:\s+|$)|(?<=[\u3002\uff01\uff1f])[\u201d\u300d]?")
_CJK = re.compile(r"[\u3000-\u9fff\uff00-\uffef]")


def without_filler(text: str) -> str:
    """`text` without an opening like "This image shows", first letter raised again."""
    trimmed, found = _FILLER_OPENING.subn("", text, count=1)
    if not found or not trimmed:
        return text.strip()
    return (trimmed[0].upper() + trimmed[1:]).strip()


def trim_brief(text: str, limit: int = BRIEF_CHARS) -> str:
    """One sentence of at most about `limit` characters, cut at a sentence or clause end.

    The first sentence is kept whole when it fits; a longer one is cut at its last clause
    boundary within the limit, so the start, where the prompt puts any safety fact, always
    stays. Never mid-word: with no boundary at all, at the last space.
    """
    text = without_filler(re.sub(r"\s+", " ", text).strip())
    if not text:
        return text
    sentence_end = _SENTENCE_END.search(text)
    first = text[: sentence_end.end()].strip() if sentence_end else text
    if len(first) <= limit:
        return first
    # A cut after a clause shorter than a third of the limit would drop too much.
    cuts = [m.start() for m in _CLAUSE_END.finditer(first) if limit // 3 <= m.start() <= limit - 1]
    if cuts:
        kept = first[: cuts[-1]].rstrip(" ,;:-\u2014\u2013")
        return kept + ("\u3002" if _CJK.match(kept[-1]) else ".")
    space = first.rfind(" ", 0, limit)
    if space <= 0:  # one very long word (a URL): it is all there is to say
        return first
    return first[:space].rstrip(" ,;:-\u2014\u2013") + "\u2026"


def _tidy_describe(text: str, verbosity: Verbosity) -> str:
    return trim_brief(text) if verbosity is Verbosity.BRIEF else without_filler(text)


# --- the presets ---

@dataclass(frozen=True)
class Preset:
    """One task: what the page shows, what is asked, and how the answer is tidied."""

    name: str
    label: str  # the page's button or menu entry
    prompt: Callable[[Verbosity], str] | None  # None: answered without the model (light)
    images: int = 1  # photos it needs: compare needs two (the earlier one first)
    clips: int = 0  # video clips it needs instead: "what is happening" is about the last seconds
    tidy: Callable[[str, Verbosity], str] | None = None  # applied to the finished answer
    words: str = ""  # regex of the spoken or typed commands that pick it (whole utterance)
    # What the answer is measured from the photo's pixels as, when there is no prompt
    # ("light": the light reading); the turn layer does the measuring (turn/generation.py).
    measure: str | None = None

    def question(self, verbosity: Verbosity = Verbosity.NORMAL) -> str:
        """The text to send as the user's question."""
        if self.prompt is None:
            raise ValueError(f"the {self.name} preset is answered without the model")
        return self.prompt(verbosity)

    def finish(self, answer: str, verbosity: Verbosity = Verbosity.NORMAL) -> str:
        """The answer as it should be shown and spoken."""
        return self.tidy(answer, verbosity) if self.tidy else answer.strip()

    @property
    def needs_two_photos(self) -> bool:
        return self.images == 2


# Whisper writes "what's" and "what is" alike often enough that both must count.
_WHATS = r"what(?:'s| is)"
DESCRIBE = Preset(
    "describe", "Describe", _describe, tidy=_tidy_describe,
    words=rf"(?:describe(?: (?:this|it|that|the scene|the (?:photo|picture|image)|what you see|{_WHATS} in front of me"
          rf"|{_WHATS} around me|my surroundings))?|what do you see|what can you see|{_WHATS} in front of me"
          rf"|{_WHATS} around me|描述|描述一下)",
)
READ_TEXT = Preset(
    "read_text", "Read text", _read_text,
    words=r"(?:read(?: (?:this|it|that|the (?:text|sign|label|words)|the text on (?:it|this)))?"
          r"|what does (?:it|this|that|the sign|the label) say|读|读一下|念一下)",
)
READ_DOCUMENT = Preset(
    "read_document", "Read a page", _read_document,
    words=r"(?:read (?:the|this|this whole|the whole) (?:page|document|letter)|read (?:it|this) all|read everything)",
)
CHART = Preset(
    "chart", "Explain a chart", _chart,
    words=r"(?:(?:explain|describe|read) (?:the|this) (?:chart|graph|diagram|plot|figure)"
          r"|what does (?:the|this) (?:chart|graph|diagram) (?:say|show))",
)
EXERCISE = Preset(
    "exercise", "Solve an exercise", _exercise,
    words=r"(?:solve (?:this|it|the (?:exercise|problem|question|equation))(?: step by step)?"
          r"|help me (?:solve|with) (?:this|the (?:exercise|problem|homework)))",
)
COMPARE = Preset(
    "compare", "Compare two photos", _compare, images=2,
    words=rf"(?:compare(?: (?:them|these|the (?:two )?(?:photos|pictures|images)|these (?:two )?(?:photos|pictures|images)))?"
          rf"|{_WHATS} the difference|what are the differences)",
)
IDENTIFY = Preset(
    "identify", "Identify object and colour", _identify,
    words=rf"(?:what colou?r is (?:this|it|that)|{_WHATS} (?:this|it|that)|what am i holding"
          r"|identify(?: (?:this|it|that))?|这是什么颜色|这是什么)",
)


HAPPENING = Preset(
    "happening", "What is happening", _happening, images=0, clips=1, tidy=_tidy_describe,
    words=rf"(?:{_WHATS} happening|what just happened|what happened|what's going on|what is going on"
          r"|发生了什么|刚才发生了什么|正在发生什么)",
)


LIGHT = Preset(
    "light", "Light level", None, measure="light",
    words=r"(?:(?:how|is it) (?:bright|dark)(?: is it)?(?: in here)?|light(?: level)?|is the light on"
          r"|check the light|亮度)",
)

PRESETS: dict[str, Preset] = {p.name: p for p in (DESCRIBE, READ_TEXT, READ_DOCUMENT, CHART, EXERCISE, COMPARE,
                                                  IDENTIFY, HAPPENING, LIGHT)}

# --- a preset as asked for ---

VERBOSITY_WORDS = {Verbosity.BRIEF: "brief", Verbosity.NORMAL: "normal", Verbosity.DETAILED: "detailed"}


@dataclass(frozen=True)
class Task:
    """A preset asked for at a verbosity: what a describe-mode question is.

    The question keeps it as a tag ("describe:brief") beside the prompt's exact words, so
    the chat shows the task's name rather than the prompt, and the answer is tidied the
    same way when it is regenerated.
    """

    preset: Preset
    verbosity: Verbosity = Verbosity.NORMAL

    @property
    def tag(self) -> str:
        return f"{self.preset.name}:{self.verbosity.value}"

    @classmethod
    def from_tag(cls, tag: str | None) -> "Task | None":
        """The task a tag names; None for no tag, or one this version does not know."""
        name, _, verbosity = (tag or "").partition(":")
        if name not in PRESETS:
            return None
        try:
            return cls(PRESETS[name], Verbosity(verbosity or "normal"))
        except ValueError:
            return None

    @property
    def shown(self) -> str:
        """What the chat shows as the question: "Describe (brief)", "Light level"."""
        if self.preset.prompt is None or self.verbosity is Verbosity.NORMAL:
            return self.preset.label
        return f"{self.preset.label} ({VERBOSITY_WORDS[self.verbosity]})"

    def question(self) -> str:
        """The words sent to the model ("" for a task answered without it)."""
        return "" if self.preset.prompt is None else self.preset.question(self.verbosity)

    def finish(self, answer: str) -> str:
        return self.preset.finish(answer, self.verbosity)


# --- naming a preset in words ---

# Said around a command without changing it (voice mode's commands share these).
FILLER = (r"(?:please|now|okay|ok|hey|oh|um|uh|just|can you|could you|would you|will you|mmchat|thanks|thank you"
          r"|for me)")


def whole_utterance(pattern: str) -> re.Pattern:
    """`pattern` as the whole of what was said, give or take FILLER around it."""
    return re.compile(rf"^(?:{FILLER} )*{pattern}(?: {FILLER})*$")


def normalized(text: str) -> str:
    """Lower case, punctuation gone, spaces single: how Whisper's words are matched."""
    text = re.sub(r"[^\w\s']", " ", text.lower().replace("\u2019", "'"))
    return re.sub(r"\s+", " ", text).strip()


_MATCHERS = [(preset, whole_utterance(preset.words)) for preset in PRESETS.values()]


def preset_for_words(text: str) -> Preset | None:
    """The preset a spoken or typed command names, or None for an ordinary question.

    Only the whole utterance counts: "read this" picks read_text, "read this to me and
    tell me the price" is a question and goes to the model as it is.
    """
    words = normalized(text)
    for preset, pattern in _MATCHERS:
        if pattern.match(words):
            return preset
    return None
