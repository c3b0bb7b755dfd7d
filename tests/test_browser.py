"""The page in a real browser: upload a photo, ask, watch the answer stream, press Stop."""

from __future__ import annotations

import shutil
import socket
import tempfile
from pathlib import Path

import pytest

from conftest import make_services
from mmchat.ui import build_ui

pytestmark = pytest.mark.browser
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def served_app(config, qwen_engine):
    """The real Gradio app on loopback, with a model that never ends an answer by itself."""
    saved_eos = qwen_engine.model.generation_config.eos_token_id
    qwen_engine.model.generation_config.eos_token_id = None  # so Stop has something to stop
    services = make_services(config, qwen_engine)
    demo = build_ui(services)
    port = _free_port()
    from mmchat.ui import launch_options

    demo.queue(default_concurrency_limit=config.concurrency)
    demo.launch(prevent_thread_lock=True, server_port=port, **{k: v for k, v in launch_options(config).items()
                                                                if k not in ("server_port", "share")})
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        demo.close()
        qwen_engine.model.generation_config.eos_token_id = saved_eos


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (scripts/dev-setup.sh)")
def test_photo_question_streams_and_stops(served_app, photos, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    errors: list[str] = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as profile:
        browser = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=FLAGS, viewport={"width": 1100, "height": 900})
        page = browser.new_page()
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
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
        browser.close()
    assert not errors, f"console errors: {errors}"
