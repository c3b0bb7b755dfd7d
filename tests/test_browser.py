"""The page in a real browser: upload a photo, ask, watch the answer stream, press Stop."""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import make_services, voice_services_for, with_config
from mmchat.server import build_page
from mmchat.web.page import build_ui, launch_options

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/dev-setup.sh)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# What the page plays through Web Audio (the voice socket's answer): each piece's seconds,
# and how many were cut off while playing or waiting to.
PLAYED_JS = """
window.played = []; window.stopped = 0;
const start = AudioBufferSourceNode.prototype.start, stop = AudioBufferSourceNode.prototype.stop;
AudioBufferSourceNode.prototype.start = function (...args) {
  window.played.push(this.buffer.duration);
  this.addEventListener("ended", () => { this.ended = true; });
  return start.apply(this, args);
};
AudioBufferSourceNode.prototype.stop = function (...args) {
  if (!this.ended) window.stopped += 1;
  return stop.apply(this, args);
};
"""


_CJK = re.compile(r"[\u2e80-\u9fff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def _tokens_with_cjk(tokenizer) -> list[int]:
    """The ids of the tokens that write Chinese, Japanese or Korean characters (or pieces of them)."""
    pieces = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
    return [i for i, piece in enumerate(pieces) if _CJK.search(piece) or "\ufffd" in piece]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(services):
    """The real Gradio app on loopback; returns (url, demo)."""
    demo = build_ui(services)
    port = _free_port()
    demo.queue(default_concurrency_limit=services.config.concurrency)
    options = {k: v for k, v in launch_options(services.config).items() if k not in ("server_port", "share")}
    demo.launch(prevent_thread_lock=True, server_port=port, **options)
    return f"http://127.0.0.1:{port}/", demo


@pytest.fixture
def served_app(config, qwen_engine):
    """The app with a model that never ends an answer by itself, so Stop has something to stop."""
    saved_eos = qwen_engine.model.generation_config.eos_token_id
    qwen_engine.model.generation_config.eos_token_id = None
    url, demo = _serve(make_services(config, qwen_engine))
    try:
        yield url
    finally:
        demo.close()
        qwen_engine.model.generation_config.eos_token_id = saved_eos


@contextmanager
def chromium(*extra_flags):
    """A headless Chromium page that records console errors in `page.errors`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser, page = _browser(p, profile, extra_flags)
        try:
            yield page
        finally:
            browser.close()


@contextmanager
def two_chromiums():
    """Two headless Chromiums with profiles of their own: two people, two sessions."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p, tempfile.TemporaryDirectory() as one, tempfile.TemporaryDirectory() as other:
        (first, first_page), (second, second_page) = _browser(p, one, ()), _browser(p, other, ())
        try:
            yield first_page, second_page
        finally:
            first.close()
            second.close()


def _browser(playwright, profile: str, extra_flags):
    browser = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, headless=True, args=FLAGS + list(extra_flags),
        viewport={"width": 1100, "height": 900})
    page = browser.new_page()
    page.errors = []
    page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: page.errors.append(str(e)))
    return browser, page


@needs_chromium
def test_photo_question_streams_and_stops(served_app, photos, tmp_path):
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(served_app, wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        stop = page.locator("#stop-button")
        expect(stop).to_be_hidden()  # nothing to stop yet
        expect(page.get_by_role("button", name="Export")).to_be_disabled()  # nothing to export yet

        page.locator("#message input[type=file]").set_input_files(str(photos[0]))
        page.locator("#message textarea").fill("What is in this photo?")
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)  # the upload preview
        page.locator("#message textarea").press("Enter")

        # the question and its photo are in the chat at once
        expect(page.locator('[data-testid="user"] img')).to_have_count(1, timeout=15_000)
        expect(page.locator('[data-testid="user"]').last).to_contain_text("What is in this photo?")
        answer = page.locator('[data-testid="bot"]').last
        expect(answer).not_to_have_text("", timeout=30_000)
        first = len(answer.inner_text())
        page.wait_for_timeout(1500)
        assert len(answer.inner_text()) > first, "the answer should keep growing while it streams"
        expect(stop).to_be_visible()

        page.keyboard.press("Escape")  # the keyboard way to Stop (same as clicking #stop-button)
        expect(answer).to_contain_text("(stopped)", timeout=15_000)
        page.wait_for_timeout(500)  # let the page finish rendering the final message
        stopped = answer.inner_text()
        page.wait_for_timeout(1500)
        assert answer.inner_text() == stopped, "nothing arrives after Stop"

        # The finished answer went to the screen-reader live region, once, whole.
        expect(page.locator("#mmchat-live")).to_contain_text("Stopped.", timeout=10_000)
        expect(stop).to_be_hidden()
        expect(page.get_by_role("button", name="Export")).to_be_enabled()
        names = []
        for button in page.get_by_role("button").all():
            if button.is_visible():
                name = button.evaluate(
                    "e => e.getAttribute('aria-label') || e.innerText || e.title || [...e.querySelectorAll('img')].map(i => i.alt).join(' ')")
                assert name and name.strip(), f"unlabelled button: {button.evaluate('e => e.outerHTML')[:200]}"
                names.append(name.strip())
        # One control per action: the chat's own icons regenerate and edit, the sidebar starts a
        # new chat; no second Stop in the box, no bin, no Regenerate or Edit buttons beside them.
        assert names.count("Retry") == 1 and names.count("Edit") == 1 and names.count("New chat") == 1, names
        for duplicate in ("Stop", "Clear", "Regenerate", "Edit last message"):
            assert duplicate not in names, names
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        page.reload(wait_until="load")  # the conversation survives a reload
        expect(page.locator('[data-testid="user"]').last).to_contain_text("What is in this photo?", timeout=30_000)
        expect(page.locator('[data-testid="bot"]').last).to_contain_text("(stopped)")
        assert not page.errors, f"console errors: {page.errors}"


def _ask(page, text: str) -> None:
    page.locator("#message textarea").fill(text)
    page.locator("#message textarea").press("Enter")


def _open(page, url: str) -> None:
    from playwright.sync_api import expect

    page.goto(url, wait_until="load", timeout=60_000)
    expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)


@needs_chromium
def test_a_new_question_while_an_answer_streams_stops_it_and_is_answered(served_app):
    from playwright.sync_api import expect

    with chromium() as page:
        _open(page, served_app)
        _ask(page, "First question")
        answers = page.locator('[data-testid="bot"]')
        expect(answers.first).not_to_have_text("", timeout=30_000)
        _ask(page, "Second question")  # Enter while the first answer streams
        expect(page.locator('[data-testid="user"]')).to_have_count(2, timeout=15_000)
        expect(answers).to_have_count(2, timeout=15_000)
        expect(answers.first).to_contain_text("(stopped)", timeout=15_000)  # kept, marked stopped
        expect(answers.last).not_to_have_text("", timeout=30_000)  # the new question is being answered
        assert "(stopped)" not in answers.last.inner_text()
        page.keyboard.press("Escape")
        expect(answers.last).to_contain_text("(stopped)", timeout=15_000)
        messages = page.locator('[data-testid="user"], [data-testid="bot"]')
        roles = [m.get_attribute("data-testid") for m in messages.all()]
        assert roles == ["user", "bot", "user", "bot"], roles
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_a_second_person_sees_their_place_in_line_then_gets_the_answer(served_app):
    from playwright.sync_api import expect

    with two_chromiums() as (first, second):
        _open(first, served_app)
        _open(second, served_app)
        _ask(first, "First question")
        expect(first.locator('[data-testid="bot"]').last).not_to_have_text("", timeout=30_000)
        _ask(second, "Second question")
        waiting = second.locator('[data-testid="bot"]').last
        expect(waiting).to_contain_text("1 person ahead of you", timeout=15_000)
        expect(second.locator("#mmchat-live")).to_contain_text("1 person ahead of you", timeout=10_000)
        first.keyboard.press("Escape")  # the first answer ends, so the second one starts
        expect(waiting).not_to_contain_text("ahead of you", timeout=30_000)
        expect(waiting).not_to_have_text("", timeout=30_000)
        second.keyboard.press("Escape")
        expect(waiting).to_contain_text("(stopped)", timeout=15_000)


@needs_chromium
@pytest.mark.skipif(not shutil.which("espeak-ng") or not shutil.which("sox"), reason="espeak-ng and sox make the speech")
def test_a_question_said_into_the_microphone_is_answered_aloud(config, qwen_engine, speech_to_text, text_to_speech,
                                                               tmp_path):
    from playwright.sync_api import expect

    # Chromium's fake microphone plays this file (48 kHz mono WAV), with quiet around the words.
    said = tmp_path / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "140", "-w", str(tmp_path / "raw.wav"),
                    "What colour is the shape?"], check=True)
    subprocess.run(["sox", str(tmp_path / "raw.wav"), "-r", "48000", "-c", "1", str(said), "pad", "0.5", "1.5"], check=True)
    services = voice_services_for(with_config(config, speak_answers=True, max_new_tokens=24),
                                  qwen_engine, speech_to_text, text_to_speech)
    url, demo = _serve(services)
    try:
        with chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                      f"--use-file-for-fake-audio-capture={said}", "--autoplay-policy=no-user-gesture-required") as page:
            page.goto(url, wait_until="load", timeout=60_000)
            expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
            # Two presses: one to record, one to stop and send; the box stays as it is meanwhile.
            mic = page.get_by_role("button", name=re.compile("^Record a question"))
            mic.click()
            expect(page.get_by_role("button", name="Stop recording and send")).to_have_attribute("aria-pressed", "true")
            expect(page.locator("#message textarea")).to_be_visible()
            page.wait_for_timeout(3000)  # about one pass of the question
            page.get_by_role("button", name="Stop recording and send").click()
            # the transcript becomes the user's message, next to the recording
            expect(page.locator('[data-testid="user"]').last).to_contain_text("shape", timeout=60_000)
            expect(page.locator('[data-testid="bot"]').last).not_to_have_text("", timeout=30_000)
            # and the answer is spoken: the speech player gets audio and plays it
            page.wait_for_function(
                "() => { const a = document.querySelector('#speech audio'); return a && a.duration > 0; }",
                timeout=60_000)
            assert not page.errors, f"console errors: {page.errors}"
    finally:
        demo.close()


# Collects what the screen-reader live region announces: one entry per finished (or refused) turn.
WATCH_ANNOUNCEMENTS = """() => {
  window.announced = [];
  const live = document.getElementById("mmchat-live");
  new MutationObserver(() => { if (live.textContent) window.announced.push(live.textContent); })
    .observe(live, {childList: true, characterData: true, subtree: true});
}"""


@contextmanager
def _page_on(services, **chromium_flags):
    url, demo = _serve(services)
    try:
        with chromium() as page:
            page.goto(url, wait_until="load", timeout=60_000)
            page.wait_for_selector("#mmchat-live", state="attached", timeout=30_000)
            page.evaluate(WATCH_ANNOUNCEMENTS)
            yield page
    finally:
        demo.close()


def _announced(page, count: int) -> list[str]:
    page.wait_for_function(f"() => window.announced.length >= {count}", timeout=60_000)
    return page.evaluate("() => window.announced")


@needs_chromium
def test_an_edit_is_sent_once_and_a_refused_edit_stays_an_edit(config, qwen_engine):
    from playwright.sync_api import expect

    with _page_on(make_services(with_config(config, max_new_tokens=16), qwen_engine)) as page:
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        box, questions = page.locator("#message textarea"), page.locator('[data-testid="user"]')
        box.fill("Old question")
        box.press("Enter")
        _announced(page, 1)

        box.press("ArrowUp")  # in the empty box: the last message comes back to be edited
        expect(box).to_have_value("Old question", timeout=15_000)
        expect(page.locator("#message")).to_contain_text("Edit your last message")
        box.fill("New question")
        box.press("Enter")
        expect(questions.last).to_contain_text("New question", timeout=15_000)
        # Sent: the box is empty and a plain message box again ...
        expect(box).to_have_value("", timeout=15_000)
        expect(page.locator("#message")).not_to_contain_text("Edit your last message")
        # The edited question's answer is finished, and announced although the tiny model
        # gives it the very words of the first answer.
        _announced(page, 2)
        # ... so Enter now sends nothing, rather than the edited question a second time.
        box.press("Enter")
        expect(page.locator(".toast-body", has_text="Please type or say a question")).to_be_visible(timeout=60_000)
        expect(questions).to_have_count(1)

        # A refused edit keeps its words and stays an edit: fixed, it replaces the question.
        box.press("ArrowUp")
        expect(box).to_have_value("New question", timeout=15_000)
        box.fill("   ")
        box.press("Enter")
        expect(page.locator(".toast-body", has_text="The edited message is empty")).to_be_visible(timeout=60_000)
        expect(page.locator("#message")).to_contain_text("Edit your last message")
        box.fill("Third question")
        box.press("Enter")
        expect(questions.last).to_contain_text("Third question", timeout=15_000)
        expect(box).to_have_value("", timeout=15_000)
        expect(questions).to_have_count(1)
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
def test_without_a_model_the_page_says_how_to_try_the_test_model_and_refuses_once(config):
    from playwright.sync_api import expect

    from mmchat.errors import ModelUnavailableError
    from mmchat.model_handle import ModelHandle
    from mmchat.turn import Services

    def load(progress):
        raise ModelUnavailableError("The model X is not on this machine and could not be downloaded. Fix: "
                                    "download it elsewhere (`hf download X`) and pass its folder with --model DIR.")

    with _page_on(Services(config=config, engine=ModelHandle(load, "model").start())) as page:
        status = page.locator("#model-status")
        expect(status).to_contain_text("Model unavailable", timeout=30_000)
        expect(status).to_contain_text("python app.py --model tests/fixtures/shapes-vlm")
        expect(status).to_contain_text("drawn shapes")
        page.locator("#message textarea").fill("What colour is the shape?")
        page.locator("#message textarea").press("Enter")
        (refusal,) = _announced(page, 1)
        assert "hf download X" in refusal
        toasts = page.locator(".toast-body")
        expect(toasts).to_have_count(1)
        assert "`" not in toasts.first.inner_text()  # a toast shows Markdown's backticks as they are
        expect(page.locator("#message textarea")).to_have_value("What colour is the shape?")
        page.screenshot(path=str(Path(config.data_dir).parent / "no-model.png"), full_page=True)


@needs_chromium
def test_export_downloads_a_zip_whose_markdown_shows_the_photo(config, qwen_engine, photos, tmp_path):
    import re
    import zipfile

    from playwright.sync_api import expect

    with _page_on(make_services(with_config(config, max_new_tokens=16), qwen_engine)) as page:
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        page.locator("#message input[type=file]").set_input_files(str(photos[0]))
        expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
        page.locator("#message textarea").fill("What is in this photo?")
        page.locator("#message textarea").press("Enter")
        _announced(page, 1)
        export = page.get_by_role("button", name="Export")
        expect(export).to_contain_text(".zip")  # the label says what the download is
        with page.expect_download(timeout=30_000) as download:
            export.click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
    assert saved.suffix == ".zip"
    with zipfile.ZipFile(saved) as archive:
        archive.extractall(tmp_path / "unpacked")
    (markdown,) = (tmp_path / "unpacked").glob("*/conversation.md")
    text = markdown.read_text(encoding="utf-8")
    assert "What is in this photo?" in text
    (link,) = re.findall(r"!\[photo\]\(([^)]+)\)", text)
    assert (markdown.parent / link).read_bytes() == photos[0].read_bytes()



def _camera_file(tmp_path, colour: str) -> Path:
    """A still picture as Chromium's fake camera plays it (.y4m): a shapes-vlm scene."""
    from fixture_models import draw_test_image

    picture, video = tmp_path / "scene.png", tmp_path / "camera.y4m"
    draw_test_image("circle", colour).convert("RGB").resize((240, 240)).save(picture)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(picture), "-t", "1", "-r", "10",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    return video


@needs_chromium
@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("espeak-ng", "sox", "ffmpeg")),
                    reason="espeak-ng, sox and ffmpeg make the test speech and video")
def test_voice_mode_hears_a_question_about_the_camera_and_answers_aloud(config, speech_to_text, text_to_speech,
                                                                       tmp_path):
    """Hands-free, as a user runs it (the app's server: page and voice socket on one port):
    voice mode on, a question spoken into the (fake) microphone about what the (fake)
    camera shows is heard, transcribed, answered right by shapes-vlm, and spoken, its audio
    played by the page from the voice socket (no Gradio audio player); the page shows the
    turn and its timings."""
    from playwright.sync_api import expect

    from fixture_models import shapes_vlm_path
    from mmchat.config import Config
    from mmchat.engine.local import create_local_engine
    from test_api_support import LiveServer

    # Chromium plays the file in a loop: the long quiet after the words keeps it to one question here.
    said = tmp_path / "said.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(tmp_path / "raw.wav"),
                    "What color is the shape?"], check=True)
    subprocess.run(["sox", str(tmp_path / "raw.wav"), "-r", "48000", "-c", "1", str(said), "pad", "3", "60"],
                   check=True)
    camera = _camera_file(tmp_path, "red")
    engine = create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))
    services = voice_services_for(with_config(config, max_new_tokens=8, temperature=0.0), engine,
                                  speech_to_text, text_to_speech)
    with LiveServer(services, *build_page(services)) as server, \
            chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-audio-capture={said}", f"--use-file-for-fake-video-capture={camera}",
                     "--autoplay-policy=no-user-gesture-required") as page:
        page.add_init_script(PLAYED_JS)
        page.goto(server.url + "/", wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
        expect(page.locator("#record-button")).to_be_visible()
        page.get_by_label("Voice mode").check()
        expect(page.locator("#record-button")).to_be_hidden()  # voice mode listens all along
        state = page.locator("#voice-state")
        expect(state).to_have_attribute("role", "status")
        expect(state).to_contain_text("Listening", timeout=30_000)
        page.wait_for_function("() => document.querySelector('#voice-preview').videoWidth > 0", timeout=30_000)

        question = page.locator('[data-testid="user"]').last
        expect(question).to_contain_text("shape", timeout=60_000)
        expect(page.locator('[data-testid="user"] img')).to_have_count(1)  # the camera's frame went with it
        expect(page.locator('[data-testid="bot"]').last).to_have_text("red", timeout=60_000)
        page.wait_for_function("() => window.played.length > 0", timeout=60_000)  # spoken, by the page itself
        assert page.evaluate("window.played.reduce((sum, seconds) => sum + seconds, 0)") > 0.1
        expect(state).to_contain_text("Listening", timeout=30_000)

        page.get_by_text("Timings").click()
        timings = page.locator("#timings")
        expect(timings).to_contain_text("first audio")
        expect(timings.locator("tbody tr")).to_have_count(1)
        row = timings.locator("tbody tr").first.inner_text()
        assert row.count(" s") >= 4, row  # transcript, first token, first audio, done: all measured
        assert not page.errors, f"console errors: {page.errors}"


@needs_chromium
@pytest.mark.skipif(not all(shutil.which(tool) for tool in ("espeak-ng", "sox", "ffmpeg")),
                    reason="espeak-ng, sox and ffmpeg make the test speech and video")
def test_speaking_over_a_long_spoken_answer_stops_it_and_is_answered(config, qwen_engine, speech_to_text,
                                                                    text_to_speech, tmp_path):
    """Barge-in in the page: the question, then, while the long answer is being spoken,
    another question: the first answer stops (kept, marked stopped), the second is answered."""
    from playwright.sync_api import expect

    from test_api_support import LiveServer

    # The second is a question, not a task's name ("what is this?" would ask the identify preset).
    for name, words in (("first", "What color is the shape?"), ("second", "Tell me more about it.")):
        subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(tmp_path / f"{name}.wav"), words],
                       check=True)
    said = tmp_path / "said.wav"
    subprocess.run(["sox", str(tmp_path / "first.wav"), "-r", "48000", "-c", "1", str(tmp_path / "a.wav"),
                    "pad", "3", "6"], check=True)
    subprocess.run(["sox", str(tmp_path / "second.wav"), "-r", "48000", "-c", "1", str(tmp_path / "b.wav"),
                    "pad", "0", "60"], check=True)
    subprocess.run(["sox", str(tmp_path / "a.wav"), str(tmp_path / "b.wav"), str(said)], check=True)
    generation = qwen_engine.model.generation_config
    saved_eos, saved_suppressed = generation.eos_token_id, generation.suppress_tokens
    generation.eos_token_id = None  # an answer that goes on until stopped
    # ... and is spoken all along: the random model's words in Chinese would be skipped by the
    # English voice (hibari speaks English only), leaving silences in which nothing plays to stop.
    generation.suppress_tokens = _tokens_with_cjk(qwen_engine.tokenizer)
    # Long enough to be still under way at the second question: the random tiny model wrote
    # 1000 tokens, and spoke what it could of them, before it (the answer ended complete).
    services = voice_services_for(with_config(config, max_new_tokens=3000), qwen_engine, speech_to_text,
                                  text_to_speech)
    try:
        with LiveServer(services, *build_page(services)) as server, \
                chromium("--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                         f"--use-file-for-fake-audio-capture={said}", f"--use-file-for-fake-video-capture="
                         f"{_camera_file(tmp_path, 'blue')}", "--autoplay-policy=no-user-gesture-required") as page:
            page.add_init_script(PLAYED_JS)
            page.goto(server.url + "/", wait_until="load", timeout=60_000)
            expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)
            page.get_by_label("Voice mode").check()
            expect(page.locator("#voice-state")).to_contain_text("Speaking", timeout=60_000)
            answers = page.locator('[data-testid="bot"]')
            expect(answers.first).not_to_have_text("", timeout=30_000)
            # The second question comes while the first answer is still being written and spoken.
            expect(page.locator('[data-testid="user"]').last).to_contain_text("more", timeout=60_000)
            expect(answers.first).to_contain_text("(stopped)", timeout=15_000)
            expect(answers).to_have_count(2, timeout=30_000)
            expect(answers.last).not_to_have_text("", timeout=30_000)
            assert page.evaluate("window.stopped") >= 1, "the first answer's audio was stopped in the page"
            assert not page.errors, f"console errors: {page.errors}"
    finally:
        generation.eos_token_id, generation.suppress_tokens = saved_eos, saved_suppressed
