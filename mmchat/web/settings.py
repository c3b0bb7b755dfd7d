"""The page's settings and status: the language, describe mode's remembered choices, the
voices on offer, and the model's status line (with the bundled test model as a way out)."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from ..i18n import LANGUAGE_NAMES, language_of, say
from ..turn import Services
from ..turn.session import ChatSession
from .describe import DESCRIBE_PREFERENCES, chosen_task, menu_words, task_choices, verbosity_choices
from .request import owner_of, page_language
from .view import SKIP, render, timings_table

# Ships with the repository, so a machine that cannot download the default model can still try the page.
TEST_MODEL = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "shapes-vlm"


class SettingsHandlers:
    """Settings → Language, describe mode's task and detail kept per person, the model's status."""

    def __init__(self, services: Services) -> None:
        self.services = services
        self.store = services.open_store()

    def on_language(self, session: ChatSession | None, choice: str, task: str, verbosity: str,
                    request: gr.Request = None):
        """Settings → Language: the server's messages follow (the page's labels change in the browser)."""
        if session is None:
            return SKIP, SKIP, SKIP, SKIP, SKIP
        code = language_code(choice)
        session.language = language_of(code) if code != "auto" else page_language(request, cookie=False)
        return (render(session.conversation, language=session.language),
                timings_table(session.conversation, session.language),
                *menus(session.language, task, verbosity, choice))

    def on_page_menus(self, saved_language, request: gr.Request = None):
        """The menus in the page's language as it loads (their words are made here: see
        describe.task_choices), with the task and detail this person last chose, on any
        browser, and the language chosen in this one."""
        owner = owner_of(request)
        task, verbosity = (self.store.preference(owner, key) for key in DESCRIBE_PREFERENCES)
        return menus(page_language(request), task, verbosity, saved_language)

    def on_describe_choice(self, task: str, verbosity: str, request: gr.Request = None) -> None:
        """Describe mode's task or detail changed: kept for this person (per user with --auth)."""
        chosen = chosen_task(task, verbosity)
        owner = owner_of(request)
        for key, value in zip(DESCRIBE_PREFERENCES, (chosen.preset.name, chosen.verbosity.value)):
            self.store.set_preference(owner, key, value)

    def account(self, request: gr.Request = None) -> str:
        """Who is logged in (with --auth), beside Log out, in the page's language."""
        return say("signed_in_as", page_language(request), name=owner_of(request))

    def model_status(self, request: gr.Request = None):
        """The status line (Markdown) and whether to look again in a second."""
        status = self.services.engine.status
        language = page_language(request)
        if status.error:
            hint = bundled_model_hint(self.services.config)
            text = f"⚠️ **{say('model_unavailable', language)}** {status.error}" + (f"\n\n{hint}" if hint else "")
            return text, gr.Timer(active=False)
        if status.ready:
            name = model_title(self.services.engine.wait().name)
            return say("model_ready", language, name=name), gr.Timer(active=False)
        percent = "" if status.fraction is None else f" ({status.fraction:.0%})"
        return f"⏳ {status.message}{percent}", gr.Timer(active=True)


def language_choices(language: str) -> list[str]:
    """The language menu's entries (their own values, as describe.task_choices says why)."""
    return [say("language_auto", language), *LANGUAGE_NAMES.values()]


def language_code(entry: str | None) -> str:
    """"auto" or a language code, for the language menu's entry (in either language) or a code."""
    codes = {name: code for code, name in LANGUAGE_NAMES.items()}
    return codes.get(entry or "", entry if entry in LANGUAGE_NAMES else "auto")


def menus(language: str, task: str, verbosity: str, chosen_language: str) -> tuple:
    """The task, detail and language menus in `language`, each keeping its choice (Gradio
    6.31 loses a menu's value when its choices change without it)."""
    task_words, verbosity_words = menu_words(chosen_task(task, verbosity), language)
    code = language_code(chosen_language)
    language_words = say("language_auto", language) if code == "auto" else LANGUAGE_NAMES[code]
    return (gr.update(choices=task_choices(language), value=task_words),
            gr.update(choices=verbosity_choices(language), value=verbosity_words),
            gr.update(choices=language_choices(language), value=language_words))


def model_title(name: str) -> str:
    """A model as people call it: a folder's name rather than its whole path
    ("shapes-vlm", not "/home/me/models/shapes-vlm"); a hub id ("Qwen/Qwen3-VL-4B-Instruct") as it is."""
    path = Path(name).expanduser()
    if path.is_absolute() or name.startswith((".", "~")) or path.exists():
        return path.name or name
    return name


def voice_choices(config) -> list[str]:
    """'auto' and the voices installed: the bundled one and those in the voices folder."""
    names = ["auto"]
    if config.tts_backend == "none":  # the menu is disabled; no voice package is needed to start
        return names if config.voice in names else [*names, config.voice]
    from ..tts.voices import installed_voices, voices_dir

    names += [v.name for v in installed_voices(voices_dir(config)) if v.name not in names]
    if config.voice not in names:
        names.append(config.voice)
    return names


def bundled_model_hint(config) -> str | None:
    """How to try the app at once with the test model that ships with it (Markdown; None when it can't help)."""
    if config.engine == "remote":  # the fix is the server's, not a local model
        return None
    if not TEST_MODEL.is_dir() or Path(config.model).expanduser().resolve() == TEST_MODEL:
        return None

    def shown(path: Path) -> Path:  # as typed from where the app was started
        try:
            return path.relative_to(Path.cwd())
        except ValueError:
            return path

    app = shown(TEST_MODEL.parents[2] / "app.py")
    return (
        f"To try mmchat right now, start it with the tiny test model that comes with it: "
        f"`python {app} --model {shown(TEST_MODEL)}`. It knows only drawn shapes (circle, square, triangle, star): "
        "their colour, how many there are and where they are, and a few printed words (CAT, STOP, 42, ...), "
        "in English and Chinese, and answers in a word. Show it a picture of one to four shapes of one colour "
        "on a plain background and ask \"What colour is the shape?\", \"How many shapes are there?\" or "
        "\"What is written in the image?\"."
    )

