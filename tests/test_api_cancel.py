"""A client that goes away frees the model: mid-stream, mid-answer, or waiting in line.

Real server, real sockets, real threads, on the tiny Qwen3-VL. Its answers are held after
their first piece of text until the test releases them or they are cancelled, so an
answer is still running whenever the client leaves, however fast the machine; only the
server noticing the departure can end it. What is checked is the server's own state:
the admission line's counts, the worker threads by name, and how the engine's stream ended.
"""

from __future__ import annotations

import json
import socket
import threading
import time

import httpx
import pytest

from conftest import make_services, with_config
from mmchat.engine import Completion, GenerationParams
from mmchat.events import TextDelta
from mmchat.store.legacy import ConversationStore
from mmchat.turn.session import ChatSession
from mmchat.turn import UserInput, submit
from test_api_support import LiveServer, alive, wait_until

STORY = [{"role": "user", "content": "Tell a long story"}]
ENDLESS = dict(model="any", messages=STORY, temperature=0, max_tokens=2000)


class HeldEngine:
    """The real engine, held after each piece of text until `release` is set or the
    answer is cancelled; records how each of its streams ended."""

    def __init__(self, engine) -> None:
        self._engine = engine
        self.name = engine.name
        self.release = threading.Event()
        self.endings: list[str] = []

    def count_tokens(self, messages):
        return self._engine.count_tokens(messages)

    def stream(self, messages, params, cancel):
        inner = self._engine.stream(messages, params, cancel)
        ended = "closed before its end"
        try:
            for item in inner:
                if isinstance(item, Completion):
                    ended = item.finish_reason
                yield item
                if isinstance(item, str):
                    while not (self.release.is_set() or cancel.cancelled):
                        time.sleep(0.01)
        finally:
            inner.close()
            self.endings.append(ended)


@pytest.fixture
def held(qwen_engine):
    engine = HeldEngine(qwen_engine)
    yield engine
    engine.release.set()  # whatever happened, nothing stays held after the test


@pytest.fixture
def live(config, held):
    services = make_services(with_config(config, concurrency=1), held)
    with LiveServer(services) as server:
        yield server


def _freed(services) -> bool:
    return services.admission.running == 0 and services.admission.waiting == 0 and not alive()


def _ended_early(held) -> bool:
    return held.endings and held.endings[-1] in ("cancelled", "closed before its end")


def test_a_client_that_leaves_mid_stream_ends_the_generation(live, held):
    client, admission = live.client(), live.services.admission
    stream = client.chat.completions.create(**ENDLESS, stream=True)
    chunks = iter(stream)
    assert next(chunks).choices[0].delta.role == "assistant"
    assert next(chunks).choices[0].delta.content  # the answer is being written...
    assert admission.running == 1 and "mmchat-generate" in alive()
    stream.close()  # ...when the client hangs up
    assert wait_until(lambda: _freed(live.services)), (admission.running, alive())
    assert _ended_early(held), held.endings
    # The next request gets the model at once, and is answered.
    held.release.set()
    reply = client.chat.completions.create(**{**ENDLESS, "max_tokens": 4})
    assert reply.choices[0].finish_reason == "length" and reply.usage.completion_tokens == 4


def test_a_client_that_leaves_while_waiting_in_line_gives_up_its_place(live, held):
    client, admission = live.client(), live.services.admission
    holder = client.chat.completions.create(**ENDLESS, stream=True)
    chunks = iter(holder)
    next(chunks), next(chunks)  # the first answer holds the only place (and is held there)
    body = {**ENDLESS, "stream": True}
    with httpx.stream("POST", live.url + "/v1/chat/completions", json=body, timeout=120) as waiting:
        assert waiting.status_code == 200
        lines = waiting.iter_lines()
        first = next(line for line in lines if line.startswith("data: "))
        assert json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
        assert next(line for line in lines if line) == ": waiting for a place: 1 ahead"
        assert admission.waiting == 1
    assert wait_until(lambda: admission.waiting == 0), admission.waiting
    assert admission.running == 1 and held.endings == []  # the first answer goes on, untouched
    held.release.set()
    assert next(chunks).choices[0].delta.content is not None
    holder.close()
    assert wait_until(lambda: _freed(live.services)), (admission.running, admission.waiting, alive())
    assert held.endings and len(held.endings) == 1  # the one that left never reached the model


def test_a_client_that_leaves_before_a_whole_answer_ends_the_generation(live, held):
    admission = live.services.admission
    body = json.dumps(ENDLESS).encode()
    with socket.create_connection(("127.0.0.1", live.port), timeout=60) as raw:
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        assert wait_until(lambda: admission.running == 1 and "mmchat-generate" in alive())
    assert wait_until(lambda: _freed(live.services)), (admission.running, alive())
    assert _ended_early(held), held.endings
    held.release.set()
    reply = live.client().chat.completions.create(**{**ENDLESS, "max_tokens": 3})
    assert reply.usage.completion_tokens == 3


def test_the_page_and_the_api_wait_in_one_line(live, held, config):
    """An answer started by any other front end (here the turn the page runs) holds the
    only place; an API request waits behind it, and is answered once it ends."""
    services, admission = live.services, live.services.admission
    page_tab = ChatSession(ConversationStore(config.data_dir))
    started = threading.Event()

    def page_answer() -> None:
        for event in submit(page_tab, UserInput("Tell a long story"), services, GenerationParams(2000, 0.0)):
            if isinstance(event, TextDelta):
                started.set()

    page = threading.Thread(target=page_answer, daemon=True)
    page.start()
    assert started.wait(60) and admission.running == 1
    with httpx.stream("POST", live.url + "/v1/chat/completions", timeout=120,
                      json={**ENDLESS, "max_tokens": 3, "stream": True}) as waiting:
        lines = (line for line in waiting.iter_lines() if line)
        next(lines)  # the role
        assert next(lines) == ": waiting for a place: 1 ahead"
        page_tab.cancel_scope.cancel()  # Stop on the page frees the place...
        held.release.set()
        rest = list(lines)
    page.join(60)
    assert rest[-1] == "data: [DONE]"  # ...and the API request is answered
    finish = [json.loads(line[6:])["choices"][0]["finish_reason"] for line in rest[:-1] if line.startswith("data: ")]
    assert finish[-1] == "length"
    assert wait_until(lambda: _freed(services))
