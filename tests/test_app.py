"""`python app.py` as a user runs it: serves the page, loads the model, or explains why not."""

from __future__ import annotations

import os
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
    page, log = _run_app(tmp_path, "--model", str(fixture_model_path("tiny-qwen3-vl")), "--device", "cpu",
                         "--stt-backend", "none", "--tts-backend", "none", until="The model is ready")
    assert "mmchat" in page and "gradio" in page.lower()
    assert "Warming up the model" in log and "Traceback" not in log


def test_offline_without_weights_the_app_still_serves_and_names_the_fix(tmp_path):
    page, log = _run_app(tmp_path, "--stt-backend", "none", "--tts-backend", "none",
                         env={"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}, until="Fix:")
    assert "mmchat" in page and "gradio" in page.lower()
    assert "Traceback" not in log
    assert "--model /path/to/folder" in log
