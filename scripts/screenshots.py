"""The README's screenshots of the three uses (photo chat, describe mode, voice mode), on a
desktop and a phone, and the chat in Chinese and in the dark theme, taken from the real
app (`app.py`) with the bundled test model.

    .venv/bin/python scripts/screenshots.py [--out assets/screenshots]

Needs Debian's chromium and ffmpeg (scripts/dev-setup.sh installs both). The test model
knows only drawn shapes, so the pictures show drawn shapes; the page is the real one.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from fixture_models import draw_test_image, shapes_vlm_path  # noqa: E402

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
FLAGS = ["--no-sandbox", "--disable-gpu", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def camera_video(folder: Path) -> Path:
    """What the fake camera shows: a drawn yellow star, as a one-second still video."""
    picture, video = folder / "camera.png", folder / "camera.y4m"
    draw_test_image("star", "yellow").convert("RGB").resize((320, 240)).save(picture)
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-loop", "1", "-i", str(picture), "-t", "1", "-r", "10",
                    "-pix_fmt", "yuv420p", str(video)], check=True)
    return video


def start_app(folder: Path, port: int) -> subprocess.Popen:
    command = [sys.executable, str(REPO / "app.py"), "--model", str(shapes_vlm_path()), "--device", "cpu",
               "--port", str(port), "--data-dir", str(folder / "data"), "--max-new-tokens", "16",
               "--temperature", "0", "--speech-language", "en"]
    return subprocess.Popen(command, stdout=open(folder / "app.log", "w"), stderr=subprocess.STDOUT)


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("the app stopped; see its log")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise SystemExit(f"the app did not answer at {url}")


def ask(page, photo: Path, text: str | None, expect) -> None:
    """A photo in the box, then a question (Enter) or, with no text, Describe (Alt+Shift+D)."""
    answers = page.locator('[data-testid="bot"]')
    before = answers.count()
    # A copy under a new name each time: a file input ignores the same file chosen again.
    copy = photo.with_name(f"{photo.stem}-{time.monotonic_ns()}{photo.suffix}")
    copy.write_bytes(photo.read_bytes())
    page.locator("#message input[type=file]").set_input_files(str(copy))
    expect(page.locator("#message img")).to_have_count(1, timeout=15_000)
    if text is None:
        page.keyboard.press("Alt+Shift+D")
    else:
        page.locator("#message textarea").fill(text)
        page.locator("#message textarea").press("Enter")
    expect(answers).to_have_count(before + 1, timeout=60_000)
    expect(page.locator("#mmchat-announcement textarea")).not_to_have_value("", timeout=60_000)
    page.wait_for_timeout(800)


def open_page(page, url: str, expect) -> None:
    """A new page (a browser context of its own, so a new conversation), the model ready."""
    page.goto(url, wait_until="load", timeout=60_000)
    expect(page.locator("#model-status")).to_contain_text("shapes-vlm", timeout=120_000)
    page.wait_for_function("() => !document.querySelector('#model-status').textContent.includes('⏳')", timeout=120_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=REPO / "assets" / "screenshots")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import expect, sync_playwright

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        photos = {}
        for name, shape, colour, word in (("chat", "circle", "red", None), ("describe", "triangle", "blue", "EXIT")):
            photos[name] = folder / f"{name}.png"
            draw_test_image(shape, colour, word=word).resize((288, 288)).save(photos[name])
        port = free_port()
        app = start_app(folder, port)
        url = f"http://127.0.0.1:{port}/"
        try:
            wait_for(url, app)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                            args=FLAGS + [f"--use-file-for-fake-video-capture={camera_video(folder)}"])
                for size_name, size in (("desktop", DESKTOP), ("phone", PHONE)):
                    page = browser.new_page(viewport=size, device_scale_factor=1)
                    open_page(page, url, expect)
                    ask(page, photos["chat"], "What colour is the shape?", expect)
                    ask(page, photos["chat"], "How many shapes are there?", expect)
                    page.screenshot(path=str(out / f"chat-{size_name}.png"))
                    page.close()

                    page = browser.new_page(viewport=size, device_scale_factor=1)
                    open_page(page, url, expect)
                    page.locator("#describe-task input").fill("Identify object and colour")
                    page.keyboard.press("Enter")
                    ask(page, photos["describe"], None, expect)
                    page.screenshot(path=str(out / f"describe-{size_name}.png"))
                    page.close()

                    page = browser.new_page(viewport=size, device_scale_factor=1)
                    open_page(page, url, expect)
                    page.get_by_label("Voice mode").check()
                    expect(page.locator("#voice-state")).to_contain_text("Listening", timeout=60_000)
                    page.wait_for_function("() => document.querySelector('#voice-preview').videoWidth > 0")
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(out / f"voice-{size_name}.png"))
                    page.close()
                # The same chat in Chinese (a Chinese browser), and in the dark theme.
                for name, query, language in (("chat-chinese", "", "zh-CN"), ("chat-dark", "?__theme=dark", "en-US")):
                    context = browser.new_context(viewport=DESKTOP, device_scale_factor=1, locale=language,
                                                  extra_http_headers={"Accept-Language": language})
                    page = context.new_page()
                    open_page(page, url + query, expect)
                    ask(page, photos["chat"], "这个形状是什么颜色？" if language == "zh-CN" else "What colour is the shape?",
                        expect)
                    page.screenshot(path=str(out / f"{name}.png"))
                    context.close()
                browser.close()
        finally:
            app.terminate()
            app.wait(30)
    for path in sorted(out.glob("*.png")):
        print(path.relative_to(REPO) if path.is_relative_to(REPO) else path)


if __name__ == "__main__":
    main()
