"""Spoken commands of voice mode: a whole utterance that is a command, not a question.

Only an utterance that is nothing but the command (give or take "please" and the like)
counts, so "stop sign, what does it say?" is a question and "stop." is a command.
What "describe" may be said as lives with describe mode's other presets (mmchat/presets.py),
which the page's typed commands use too.
"""

from __future__ import annotations

import re
from enum import Enum

from mmchat.presets import DESCRIBE, normalized, whole_utterance

__all__ = ["Command", "normalized", "spoken_command"]


class Command(Enum):
    STOP = "stop"  # stop talking; no new answer
    NEW_CHAT = "new chat"  # start a new conversation
    DESCRIBE = "describe"  # describe what the camera shows
    COMPARE = "compare"  # a question about what changed: the previous frame goes with it
    MOTION = "motion"  # a question about movement: the camera's last seconds go with it, as a clip


_PATTERNS = {
    Command.STOP: r"(?:stop|stop talking|stop it|be quiet|quiet|shut up|cancel|enough|that's enough|停|停止|别说了)",
    Command.NEW_CHAT: r"(?:(?:start )?(?:a )?new (?:chat|conversation)|start over|新对话|新聊天)",
    Command.DESCRIBE: DESCRIBE.words,
    # Questions, not commands: they keep their words and only gain the previous frame.
    # "what change" is how Whisper tiny often hears a quick "what changed".
    Command.COMPARE: r"(?:compare|what(?:'s| has| is)? change[ds]?|what(?:'s| is) different|what's new|有什么变化|哪里不一样)",
}
_COMMANDS = {command: whole_utterance(pattern) for command, pattern in _PATTERNS.items()}
# COMPARE also counts inside a longer question ("what changed on the table?").
_COMPARE_ANYWHERE = re.compile(r"\b(?:compare|what(?:'s| has| is)? changed?|what(?:'s| is) different)\b|有什么变化|哪里不一样")
# A question about movement, anywhere in it ("which way is the car moving?", "did the door
# open just now?"): asked about the camera's last seconds rather than its last frame.
_MOTION_ANYWHERE = re.compile(
    r"\b(?:moving|move[ds]?|movement|just happened|happening|going on|coming (?:closer|towards?)|"
    r"(?:walk|driv|runn|turn|open|clos)ing|just now)\b|在动|动了|移动|刚才|正在发生")


def spoken_command(text: str) -> Command | None:
    """The command `text` (a transcript) is, or None for a question."""
    words = normalized(text)
    for command, pattern in _COMMANDS.items():
        if pattern.match(words):
            return command
    if _COMPARE_ANYWHERE.search(words):
        return Command.COMPARE
    if _MOTION_ANYWHERE.search(words):
        return Command.MOTION
    return None
