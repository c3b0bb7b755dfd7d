"""The page's accessibility in a real browser: axe-core on each view, the live region, the accessibility tree.

The views: the chat after an answered question about a photo, describe mode (after
Alt+Shift+D, its menu open), voice mode on, Settings open, and the chat on a phone. Each is opened as a user would, with
the trained shapes-vlm answering, then checked for WCAG 2.2 AA failures that axe rates
serious or critical. axe has no rule for live regions, so a MutationObserver records what
the screen-reader live region says over three answers; and Chromium's own accessibility
tree (what a screen reader gets) is searched for controls without a role or a name.
"""

from __future__ import annotations

import struct
import wave
from contextlib import contextmanager
from pathlib import Path

import pytest

from accessibility import axe_violations, blocking_violations, choose_in_menu, unnamed_controls
from conftest import make_services, voice_services_for, with_config
from test_browser import _serve, chromium, needs_chromium

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
ZOOMED_400_PERCENT = {"width": 320, "height": 256}
# Chromium's fake microphone and camera, and no prompt for them: voice mode starts as it does for a user.
FAKE_MEDIA = ("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream")

# Installed before the first question: every change of the live region's text, empty ones too.
RECORD_LIVE_REGION = """() => {
  window.liveRegionTexts = [];
  const live = document.getElementById("mmchat-live");
  new MutationObserver(() => window.liveRegionTexts.push(live.textContent))
    .observe(live, {childList: true, characterData: true, subtree: true});
}"""


def shape_photo(folder: Path, colour: str, word: str | None = None) -> Path:
    """A shapes-vlm scene: a `colour` circle, and `word` printed beside it."""
    from fixture_models import draw_test_image

    path = folder / f"{colour}-circle-{word}.png"
    draw_test_image("circle", colour, word=word).save(path)
    return path


def open_page(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url, wait_until="load", timeout=60_000)
    expect(page.locator("#model-status")).to_contain_text("Model:", timeout=60_000)


def ask_about_photo(page, photo: Path, question: str = "What colour is the shape?") -> str:
    """Upload `photo`, ask about it with the keyboard's Enter, and return the finished answer."""
    from playwright.sync_api import expect

    # Set by the server when a turn ends (the page's hidden announcer), not by the page's script.
    announcer = page.locator("#mmchat-announcement textarea")
    announced = announcer.input_value()
    answers, photos = page.locator('[data-testid="bot"]'), page.locator('[data-testid="user"] img')
    before, photos_before = answers.count(), photos.count()
    page.locator("#message input[type=file]").set_input_files(str(photo))
    expect(page.locator("#message img")).to_have_count(1, timeout=15_000)  # the upload preview
    page.locator("#message textarea").fill(question)
    page.locator("#message textarea").press("Enter")
    expect(answers).to_have_count(before + 1, timeout=30_000)
    expect(announcer).not_to_have_value(announced, timeout=60_000)
    expect(photos).to_have_count(photos_before + 1)  # the photo went with the question
    answer = answers.last.inner_text().strip()
    assert answer == announcer.input_value(), "the chat shows a different answer from the one announced"
    return answer


def chat_view(page, url: str, folder: Path) -> None:
    """The chat after one answered question with a photo, the sidebar listing it."""
    from playwright.sync_api import expect

    open_page(page, url)
    ask_about_photo(page, shape_photo(folder, "red"))
    # The list refreshes after the answer, and the page may still be moving then: the audit
    # looks at the page as it rests (mid-fade, its colours are neither the old nor the new).
    expect(page.locator('#conversation-list [aria-current="true"]')).to_have_count(1, timeout=30_000)
    settled(page)


def settled(page) -> None:
    """Waits for the page's CSS transitions and animations to end."""
    page.wait_for_function("() => document.getAnimations().every(a => a.playState !== 'running')", timeout=10_000)


def settings_view(page, url: str, folder: Path) -> None:
    """The chat view with the Settings accordion opened from the keyboard."""
    from playwright.sync_api import expect

    chat_view(page, url, folder)
    settings = page.get_by_role("button", name="Settings")
    settings.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Temperature (0 = always the same answer)").first).to_be_visible(timeout=10_000)


def voice_view(page, url: str) -> None:
    """Voice mode on, listening through the fake microphone, the camera's picture showing."""
    from playwright.sync_api import expect

    open_page(page, url)
    page.get_by_label("Voice mode").check()
    expect(page.locator("#voice-state")).to_contain_text("Listening", timeout=30_000)
    page.wait_for_function("() => document.querySelector('#voice-preview').videoWidth > 0", timeout=30_000)


def silent_wav(path: Path, seconds: float = 30.0) -> Path:
    """What the fake microphone plays: quiet, so voice mode listens and never hears a question."""
    rate = 48_000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(struct.pack("<h", 0) * int(rate * seconds))
    return path


@contextmanager
def voice_app(config, engine, speech_to_text, text_to_speech, folder: Path):
    """The app's own server (page and voice socket on one port) and a browser with a fake, quiet microphone."""
    from mmchat.server import build_page
    from test_api_support import LiveServer

    services = voice_services_for(with_config(config, max_new_tokens=8), engine, speech_to_text, text_to_speech)
    quiet = silent_wav(folder / "quiet.wav")
    with LiveServer(services, *build_page(services)) as server, \
            chromium(*FAKE_MEDIA, f"--use-file-for-fake-audio-capture={quiet}") as page:
        yield page, server.url + "/"


def _report(violations) -> str:
    return "\n".join(v.describe() for v in violations)


# --- axe-core: zero serious or critical WCAG 2.2 AA failures per view ---

@needs_chromium
def test_the_chat_view_has_no_serious_accessibility_failures(shapes_app, tmp_path):
    with chromium() as page:
        chat_view(page, shapes_app, tmp_path)
        failures = blocking_violations(page)
    assert not failures, _report(failures)


@needs_chromium
def test_describe_mode_has_no_serious_accessibility_failures(shapes_app, tmp_path):
    """After Alt+Shift+D with a photo, the task menu opened and a detailed verbosity chosen."""
    from playwright.sync_api import expect

    with chromium() as page:
        open_page(page, shapes_app)
        page.locator("#message input[type=file]").set_input_files(str(shape_photo(tmp_path, "red")))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        page.keyboard.press("Alt+Shift+D")
        expect(page.locator('[data-testid="bot"]')).to_have_count(1, timeout=30_000)
        expect(page.locator("#mmchat-announcement textarea")).not_to_have_value("", timeout=60_000)
        page.locator("#describe-verbosity input").focus()
        choose_in_menu(page, "Detailed")
        page.locator("#describe-task input").focus()
        page.keyboard.press("ArrowDown")  # the menu open, as a keyboard user sees it
        settled(page)  # as the chat's audit does: the menu, and the list refreshed by the answer, at rest
        failures = blocking_violations(page)
    assert not failures, _report(failures)


@needs_chromium
def test_the_open_settings_have_no_serious_accessibility_failures(shapes_app, tmp_path):
    with chromium() as page:
        settings_view(page, shapes_app, tmp_path)
        failures = blocking_violations(page)
    assert not failures, _report(failures)


@needs_chromium
def test_the_chat_on_a_phone_has_no_serious_accessibility_failures(shapes_app, tmp_path):
    with chromium() as page:
        page.set_viewport_size(PHONE)
        chat_view(page, shapes_app, tmp_path)
        failures = blocking_violations(page)
    assert not failures, _report(failures)


@needs_chromium
def test_the_chat_zoomed_to_400_percent_fits_the_width_and_has_no_serious_failures(shapes_app, tmp_path):
    """WCAG 1.4.10: at 320 CSS px wide (a 1280 px window at 400%, so 200% too) nothing needs sideways scrolling."""
    with chromium() as page:
        page.set_viewport_size(ZOOMED_400_PERCENT)
        chat_view(page, shapes_app, tmp_path)
        overflowing = page.evaluate(WIDER_THAN_THE_WINDOW)
        failures = blocking_violations(page)
    assert not overflowing, f"elements that need sideways scrolling: {overflowing}"
    assert not failures, _report(failures)


# Visible elements that stick out past the window's right edge.
WIDER_THAN_THE_WINDOW = """() => [...document.querySelectorAll("body *")]
  .filter((e) => e.getClientRects().length && e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)
  .map((e) => e.outerHTML.slice(0, 120))"""


@needs_chromium
def test_voice_mode_has_no_serious_accessibility_failures(config, shapes_engine, speech_to_text, text_to_speech,
                                                          tmp_path):
    with voice_app(config, shapes_engine, speech_to_text, text_to_speech, tmp_path) as (page, url):
        voice_view(page, url)
        failures = blocking_violations(page)
    assert not failures, _report(failures)


@needs_chromium
def test_the_page_has_one_h1_naming_the_app(shapes_app, tmp_path):
    """A screen reader's user jumps to the h1 to learn where they are; axe's rule for it is advice, not WCAG."""
    with chromium() as page:
        chat_view(page, shapes_app, tmp_path)
        headings = page.locator("h1").all_inner_texts()
        missing_h1 = [v for v in axe_violations(page, tags=["best-practice"]) if v.rule == "page-has-heading-one"]
    assert headings == ["mmchat"], headings
    assert not missing_h1


@needs_chromium
def test_the_keyboard_goes_round_the_whole_page_and_always_shows_where_it_is(shapes_app, tmp_path):
    """Tab from the top: every control it stops on shows an outline of at least 2 px (WCAG 2.4.7),
    and Tab comes back round to the first one, so no control keeps the keyboard in (2.1.2)."""
    with chromium() as page:
        settings_view(page, shapes_app, tmp_path)
        stops, back_at_start = [], False
        for _ in range(150):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED_ELEMENT)
            if focused is None:  # past the last control, in the browser's own bar; the next Tab starts over
                continue
            if focused["visited"]:
                back_at_start = True
                break
            stops.append(focused)
    unseen = [stop["html"] for stop in stops if stop["outline"] < 2]
    assert back_at_start, f"Tab never came back round; the last controls it reached: {stops[-3:]}"
    assert len(stops) >= 20, f"the keyboard reached only {len(stops)} controls"
    assert not unseen, "controls that show no focus:\n" + "\n".join(unseen)


# What has the keyboard focus, how wide its focus outline is (0 when none), and whether it had it before.
FOCUSED_ELEMENT = """() => {
  const element = document.activeElement;
  if (!element || element === document.body) return null;
  const html = element.outerHTML.slice(0, 160), visited = element.dataset.tabVisited === "yes";
  element.dataset.tabVisited = "yes";
  const style = getComputedStyle(element);
  const outline = style.outlineStyle === "none" ? 0 : parseFloat(style.outlineWidth);
  return {html, outline, visited};
}"""


@pytest.fixture
def endless_app(config, qwen_engine):
    """The tiny random Qwen3-VL, which never ends an answer by itself: each one runs to the longest
    answer set, so a longer setting shows in the answer, and Stop has work to stop (shapes-vlm's
    answers end in a word)."""
    saved_eos = qwen_engine.model.generation_config.eos_token_id
    qwen_engine.model.generation_config.eos_token_id = None
    url, demo = _serve(make_services(with_config(config, max_new_tokens=8), qwen_engine))
    try:
        yield url
    finally:
        demo.close()
        qwen_engine.model.generation_config.eos_token_id = saved_eos


def tab_to(page, selector: str, text: str = "", backwards: bool = False) -> None:
    """Press Tab (or Shift+Tab) until an element that `selector` picks, with `text` in it, has the keyboard focus."""
    focused = """([selector, text]) => {
      const element = document.activeElement;
      return !!element && element.matches(selector) && element.textContent.includes(text);
    }"""
    for _ in range(80):
        if page.evaluate(focused, [selector, text]):
            return
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
    raise AssertionError(f"the keyboard cannot reach {selector}")


@needs_chromium
def test_a_keyboard_alone_uploads_asks_follows_up_changes_a_setting_and_stops(endless_app, tmp_path):
    """The journey without the mouse: the page opens in the message box; Upload a file opens the
    file chooser from the keyboard; Enter asks, and asks a follow-up; Settings open and the longest
    answer changes from the keyboard; Escape stops the longer answer that follows."""
    from playwright.sync_api import expect

    with chromium() as page:
        # Playwright takes over file choosers once something listens for them; that takes a moment to
        # reach the browser, so it starts before the page, not with the key press that opens one.
        page.on("filechooser", lambda chooser: None)
        open_page(page, endless_app)
        answers, announcer = page.locator('[data-testid="bot"]'), page.locator("#mmchat-announcement textarea")
        assert page.evaluate("() => document.activeElement.matches('#message textarea')"), "not in the message box"

        tab_to(page, '#message button[aria-label="Upload a file"]', backwards=True)
        with page.expect_file_chooser() as chooser:
            page.keyboard.press("Enter")
        chooser.value.set_files(str(shape_photo(tmp_path, "green")))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        tab_to(page, "#message textarea")
        page.keyboard.type("What colour is the shape?")
        page.keyboard.press("Enter")
        expect(page.locator('[data-testid="user"] img')).to_have_count(1, timeout=15_000)
        expect(announcer).not_to_have_value("", timeout=60_000)  # the answer ended, at the 8 tokens set at start
        short_answer = answers.first.inner_text()

        page.keyboard.type("And what shape is it?")
        page.keyboard.press("Enter")
        expect(answers).to_have_count(2, timeout=30_000)
        expect(page.locator('[data-testid="user"]').last).to_contain_text("And what shape is it?")
        expect(announcer).not_to_have_value(short_answer, timeout=60_000)  # the follow-up's answer ended too

        tab_to(page, "button.label-wrap", "Settings")
        page.keyboard.press("Enter")
        tab_to(page, 'input[aria-label="number input for Longest answer (tokens)"]')
        page.keyboard.press("Control+A")
        page.keyboard.type("4088")  # the slider's last step (8 + 16 × 255)
        page.keyboard.press("Tab")  # leaving the field sets it
        expect(page.locator("input[aria-label='range slider for Longest answer (tokens)']")).to_have_value("4088")

        tab_to(page, "#message textarea", backwards=True)
        page.keyboard.type("Tell me more.")
        page.keyboard.press("Enter")
        expect(answers).to_have_count(3, timeout=30_000)
        # Three times the 8-token answer and still going: the longer setting is in force.
        page.wait_for_function("(short) => [...document.querySelectorAll('[data-testid=bot]')].pop().innerText.length"
                               " > 3 * short", arg=len(short_answer), timeout=60_000)
        page.keyboard.press("Escape")
        expect(answers.last).to_contain_text("(stopped)", timeout=15_000)
        assert not page.errors, f"console errors: {page.errors}"


# --- the live region, which no axe rule checks ---

@needs_chromium
def test_each_finished_answer_is_announced_once_and_no_partial_answer_ever_is(shapes_app, tmp_path):
    from playwright.sync_api import expect

    # Answers of several tokens ("305" streams as "3", "30", "305"), so there are partial answers to not announce.
    questions = [(shape_photo(tmp_path, "red", "305"), "What is written in the image?", "305"),
                 (shape_photo(tmp_path, "blue", "42"), "What is written in the image?", "42"),
                 (shape_photo(tmp_path, "purple"), "What colour is the shape?", "purple")]
    with chromium() as page:
        page.goto(shapes_app, wait_until="load", timeout=60_000)
        page.wait_for_selector("#mmchat-live", state="attached", timeout=30_000)
        page.evaluate(RECORD_LIVE_REGION)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=60_000)
        answers = []
        for photo, question, _ in questions:
            answers.append(ask_about_photo(page, photo, question))
            # the page's script says it 50 ms after the server's update
            page.wait_for_function(f"() => window.liveRegionTexts.filter(Boolean).length >= {len(answers)}",
                                   timeout=30_000)
        page.wait_for_timeout(1000)  # time for a late or repeated announcement to arrive, so the test sees it
        said = [text for text in page.evaluate("() => window.liveRegionTexts") if text]
        # The chat log's own live region would read each answer as it streams, token by token.
        loud_logs = page.locator('[role="log"]:not([aria-live="off"])').count()

    assert answers == [expected for *_, expected in questions], answers  # three answers that can be told apart
    assert said == answers, f"the live region said {said}; each finished answer should be said once: {answers}"
    assert loud_logs == 0, "the chat log's own live region is not muted"


# --- Chromium's accessibility tree: every control has a role and a name ---

@needs_chromium
def test_every_control_has_a_role_and_a_name(shapes_app, tmp_path):
    with chromium() as page:
        settings_view(page, shapes_app, tmp_path)
        page.get_by_role("button", name="Timings").click()
        lacking = unnamed_controls(page)
    assert not lacking, "controls without a role or a name:\n" + "\n".join(map(str, lacking))
