"""Load (issue 16), short: bench/load.py's own code, 6 API clients for 20 seconds against
`python app.py` with shapes-vlm, every answer checked against its own question.

The full run (20 clients, 5 minutes, memory over time) is the bench's; this keeps the
same path working in CI: the app started as a user starts it, clients that each have
their own key, photos and history, streamed and whole answers, follow-ups answered
from the client's own earlier photo.
"""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CLIENTS = 6
SECONDS = 20.0
KINDS = ("colour", "shape", "follow-up colour", "follow-up shape")


def _bench():
    spec = importlib.util.spec_from_file_location("bench_load", ROOT / "bench" / "load.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


load = _bench()


def test_clients_asking_at_once_each_get_their_own_right_answers():
    with load.serve_app(concurrency=1) as server:
        result = load.run_load(server, CLIENTS, SECONDS, warmup=5.0, sample_seconds=1.0)
    assert not result.errors, result.error_examples
    wrong = [(w.client, w.question.kind, w.question.expected, w.answer) for w in result.wrong]
    assert not wrong
    # Every client was answered, more than once: none starved behind the others.
    assert sorted(result.answers_by_client) == list(range(CLIENTS))
    assert min(result.answers_by_client.values()) >= 2
    # Every kind of question was answered, streamed and whole.
    assert set(result.answers_by_kind) == {(kind, stream) for kind in KINDS for stream in (True, False)}
    assert result.rss, "the server's memory was never sampled"
    assert "Traceback" not in server.log_text, server.log_text[-4000:]


def test_a_follow_up_carries_the_clients_own_history_and_expects_its_own_photo():
    # What makes a misdelivered answer show: a follow-up's right answer is in that
    # client's photo only.
    rng = random.Random(0)
    first = load.Question.draw(rng, "colour", stream=True)
    follow = first.follow_up(first.expected, "shape", stream=False)
    assert first.expected in load.COLOURS and follow.expected in load.SHAPES
    assert follow.expected == first.shape and follow.messages[:1] == first.messages
    assert follow.messages[1] == {"role": "assistant", "content": first.expected}
    assert follow.messages[2]["content"] == "What shape was it?"
    body = follow.body()
    assert body["stream"] is False and body["temperature"] == 0
    assert first.body()["stream_options"] == {"include_usage": True}
