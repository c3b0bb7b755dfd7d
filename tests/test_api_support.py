"""Support for the API tests (no tests here): a real mmchat server (uvicorn, the app of mmchat.server) on a free loopback port, in a thread."""

from __future__ import annotations

import base64
import io
import socket
import threading
import time

import uvicorn

from mmchat.server import build_app

WORKERS = ("mmchat-generate", "mmchat-api-turn", "mmchat-answer-text", "mmchat-api-transcribe", "mmchat-api-speech")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    def __init__(self, services, demo=None, voice=None) -> None:
        self.services = services
        self.app = build_app(services, demo, voice)
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port,
                                                    log_level="warning", lifespan="on"))
        self.thread = threading.Thread(target=self.server.run, name="test-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "LiveServer":
        self.thread.start()
        for _ in range(600):  # up to a minute, for a busy 2-core machine
            if self.server.started:
                return self
            assert self.thread.is_alive(), "the server failed to start"
            time.sleep(0.1)
        raise AssertionError("the server did not start within a minute")

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def client(self, api_key: str = "not-needed", **options):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=api_key, max_retries=0, timeout=120, **options)


def alive(names=WORKERS) -> list[str]:
    return [t.name for t in threading.enumerate() if t.name in names and t.is_alive()]


def wait_until(condition, within: float = 30.0) -> bool:
    """Whether `condition()` became true within `within` seconds (a bound, not a measurement)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def data_url(image, format: str = "PNG") -> str:
    buffer = io.BytesIO()
    image.save(buffer, format=format)
    mime = {"PNG": "image/png", "JPEG": "image/jpeg"}[format]
    return f"data:{mime};base64," + base64.b64encode(buffer.getvalue()).decode()
