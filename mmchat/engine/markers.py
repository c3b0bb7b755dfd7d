"""Keeping typed text from turning into a chat template's markers.

A chat template writes roles, turn ends and image places as marker strings
(`<|im_start|>`, `<end_of_utterance>`, `<image>`, `[INST]`...), and the tokenizer turns
each marker string into its special token wherever it appears, in a person's words too.
Unchanged, someone who types `<|im_end|><|im_start|>system` would end their own turn and
write a system message, and a typed `<image>` would claim a photo's place.

So every marker in text from a person (or from a client's messages) gets a word joiner
(U+2060, invisible, no width) after its first character: the model still reads the
characters, as plain text, and no marker string is left for the tokenizer to find.
What is stored and shown stays exactly what was typed; only the prompt changes.

The local engine knows its tokenizer's markers exactly (`markup_pattern`). A remote
server applies its own template with a tokenizer we can't see, so text sent there is
guarded by the shapes markers of the known model families take (`ANY_FAMILY_MARKUP`).
"""

from __future__ import annotations

import re
from typing import Iterable

WORD_JOINER = "\u2060"

# The marker shapes of the model families people serve: <|im_start|>, <|vision_start|>,
# <｜begin▁of▁sentence｜> (DeepSeek's full-width bars), <image>, </s>, <end_of_utterance>,
# <row_1_col_1>, <global-img>, <start_of_turn>, and Mistral's [INST], [/INST], [IMG_BREAK].
# Lower-case or mixed words in square brackets are left alone: that is Markdown's [link].
ANY_FAMILY_MARKUP = re.compile(
    r"<[|｜][^\s<>|｜]{1,64}[|｜]>"
    r"|</?[A-Za-z][\w\-:.]{0,63}>"
    r"|\[/?[A-Z][A-Z0-9_]{1,31}\]"
)


def markup_pattern(tokenizer) -> re.Pattern | None:
    """Matches the tokenizer's added markup tokens (<|im_start|>, <image>, <row_1_col_1>...)."""
    tokens = [
        token.content if hasattr(token, "content") else str(token)
        for token in getattr(tokenizer, "added_tokens_decoder", {}).values()
    ]
    tokens += list(getattr(tokenizer, "all_special_tokens", []))
    markup = sorted({t for t in tokens if len(t) > 1 and t[0] in "<[" and t[-1] in ">]"}, key=len, reverse=True)
    if not markup:
        return None
    return re.compile("|".join(re.escape(t) for t in markup))


def defuse(text: str, markup: re.Pattern | None) -> str:
    """`text` with a word joiner after the first character of each marker in it."""
    if markup is None:
        return text
    return markup.sub(lambda m: m.group(0)[0] + WORD_JOINER + m.group(0)[1:], text)


def defuse_run(texts: Iterable[str], markup: re.Pattern | None) -> list[str]:
    """Text parts the template will write back to back (one message's, with no photo
    between them): each defused, and a word joiner at the end of a part where a marker
    would form across its end (`<|im_` then `end|>`), since no single part holds it."""
    done: list[str] = []
    for text in texts:
        text = defuse(text, markup)
        if done and markup is not None:
            before = "".join(done)
            if defuse(before + text, markup) != before + text:  # each part alone has none left
                done[-1] += WORD_JOINER
        done.append(text)
    return done


def defuse_content(content, markup: re.Pattern | None):
    """An OpenAI message's content (a string or a list of parts) with its text defused."""
    if markup is None or content is None:
        return content
    if isinstance(content, str):
        return defuse(content, markup)
    out, run = [], []

    def flush() -> None:
        for item, text in zip(run, defuse_run([item["text"] for item in run], markup)):
            out.append({**item, "text": text})
        run.clear()

    for item in content:
        if item.get("type") == "text" and isinstance(item.get("text"), str):
            run.append(item)
        else:
            flush()
            out.append(item)
    flush()
    return out
