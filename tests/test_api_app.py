"""`python app.py` serves the page and the API on one port (mmchat.server), as a user runs it."""

from __future__ import annotations

import base64
import io
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

from fixture_models import draw_test_image, shapes_vlm_path
from test_api_support import free_port

ROOT = Path(__file__).resolve().parent.parent


def test_app_serves_the_page_and_the_api_on_one_port(tmp_path):
    port = free_port()
    log = tmp_path / "app.log"
    command = [sys.executable, "app.py", "--port", str(port), "--data-dir", str(tmp_path / "data"),
               "--model", str(shapes_vlm_path()), "--device", "cpu", "--stt-backend", "none",
               "--tts-backend", "none", "--api-key", "k1"]
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, env=dict(os.environ))
        try:
            base = f"http://127.0.0.1:{port}"
            for _ in range(240):  # up to two minutes on a busy machine
                try:
                    if httpx.get(base + "/v1/models", timeout=5).status_code == 401:
                        break
                except httpx.HTTPError:
                    pass
                assert process.poll() is None, log.read_text()
                time.sleep(0.5)
            else:
                raise AssertionError(log.read_text())
            assert "gradio" in httpx.get(base + "/", timeout=30).text.lower()
            buffer = io.BytesIO()
            draw_test_image("square", "yellow").save(buffer, format="PNG")
            image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
            client = openai.OpenAI(base_url=base + "/v1", api_key="k1", max_retries=0, timeout=120)
            reply = client.chat.completions.create(model="gpt-4o", temperature=0, max_tokens=8, messages=[
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": image}},
                                             {"type": "text", "text": "What colour is the shape?"}]}])
            assert reply.choices[0].message.content.strip() == "yellow"
        finally:
            process.terminate()
            process.wait(30)
    assert "Traceback" not in log.read_text()
