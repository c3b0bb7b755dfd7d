"""The page in a real browser: upload a photo, ask, watch the answer stream, press Stop."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import make_services, voice_services_for, with_config
from mmchat.ui import build_ui, launch_options

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/dev-setup.sh)")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS + list(extra_flags),
            viewport={"width": 1100, "height": 900})
        page = browser.new_page()
        page.errors = []
        page.on("console", lambda m: page.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        try:
            yield page
        finally:
            browser.close()


@needs_chromium
def test_photo_question_streams_and_stops(served_app, photos, tmp_path):
    from playwright.sync_api import expect

    with chromium() as page:
        page.goto(served_app, wait_until="load", timeout=60_000)
        expect(page.locator("#model-status")).to_contain_text("Model:", timeout=30_000)

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

        page.keyboard.press("Escape")  # the keyboard way to Stop (same as clicking #stop-button)
        expect(answer).to_contain_text("(stopped)", timeout=15_000)
        page.wait_for_timeout(500)  # let the page finish rendering the final message
        stopped = answer.inner_text()
        page.wait_for_timeout(1500)
        assert answer.inner_text() == stopped, "nothing arrives after Stop"

        # The finished answer went to the screen-reader live region, once, whole.
        expect(page.locator("#mmchat-live")).to_contain_text("Stopped.", timeout=10_000)
        for button in page.get_by_role("button").all():
            if button.is_visible():
                name = button.evaluate(
                    "e => e.getAttribute('aria-label') || e.innerText || e.title || [...e.querySelectorAll('img')].map(i => i.alt).join(' ')")
                assert name and name.strip(), f"unlabelled button: {button.evaluate('e => e.outerHTML')[:200]}"
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        page.reload(wait_until="load")  # the conversation survives a reload
        expect(page.locator('[data-testid="user"]').last).to_contain_text("What is in this photo?", timeout=30_000)
        expect(page.locator('[data-testid="bot"]').last).to_contain_text("(stopped)")
        assert not page.errors, f"console errors: {page.errors}"


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
            for step in ("Record audio", "Start recording"):
                page.locator(f'#message button[aria-label="{step}"]').click()
            page.wait_for_timeout(3000)  # about one pass of the question
            for step in ("Stop recording", "Attach audio", "Submit"):
                page.locator(f'#message button[aria-label="{step}"]').click()
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
