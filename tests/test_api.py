"""The OpenAI-compatible chat API, through the official `openai` client, against a real
server on loopback (uvicorn serving mmchat.server's app: the API and the page on one port).

The model is the trained shapes-vlm, so every answer is checked for being right: a
photo dropped, swapped or lost from the history gives a wrong answer, not just text.
"""

from __future__ import annotations

import base64
import json
import socket
import tempfile
import threading
from pathlib import Path

import httpx
import openai
import pytest

from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.config import Config
from mmchat.engine.local import create_local_engine
from mmchat.web.page import build_ui
from test_api_support import LiveServer, alive, data_url, wait_until

WHICH = "Which image has the {}, the first or the second?"


@pytest.fixture(scope="module")
def shapes_engine():
    return create_local_engine(Config(model=str(shapes_vlm_path()), device="cpu", quantization="none"))


def shapes_config(tmp_path, **changes) -> Config:
    changes.setdefault("max_turns_per_minute", 0)  # one client asks far more than a person would (tests/hostile/test_limits.py)
    return Config(model=str(shapes_vlm_path()), device="cpu", data_dir=tmp_path / "data", temperature=0.0,
                  stt_backend="none", tts_backend="none", **changes)


@pytest.fixture(scope="module")
def server(shapes_engine, tmp_path_factory):
    """The app as `python app.py` serves it: the page mounted beside the API."""
    services = make_services(shapes_config(tmp_path_factory.mktemp("api")), shapes_engine)
    with LiveServer(services, build_ui(services)) as live:
        yield live


@pytest.fixture
def client(server):
    return server.client()


MODEL = str(shapes_vlm_path())


def photo(shape: str, colour: str, **scene) -> dict:
    return {"type": "image_url", "image_url": {"url": data_url(draw_test_image(shape, colour, **scene))}}


def ask(text: str, *images: dict) -> list[dict]:
    return [{"role": "user", "content": [*images, {"type": "text", "text": text}]}]


def answer(client, messages, **options) -> str:
    reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8, **options)
    assert reply.choices[0].finish_reason == "stop"
    return reply.choices[0].message.content.strip()


# --- answers ---

def test_models_lists_the_served_model(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL


@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_a_photo_question_is_answered_about_that_photo(client, colour):
    assert answer(client, ask("What colour is the shape?", photo("circle", colour))) == colour


def test_usage_counts_the_real_prompt_photo_included(client, server, shapes_engine, tmp_path):
    image = draw_test_image("star", "green")
    reply = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=8, messages=ask(
        "What shape is it?", {"type": "image_url", "image_url": {"url": data_url(image)}}))
    assert reply.choices[0].message.content.strip() == "star"
    path = tmp_path / "star.png"
    image.save(path)
    # What the engine reads for this question: the server's system prompt, the photo, the words.
    prompt = [{"role": "system", "content": server.services.config.system_prompt},
              {"role": "user", "content": [{"type": "image_url", "image_url": {"url": path.as_uri()}},
                                           {"type": "text", "text": "What shape is it?"}]}]
    assert reply.usage.prompt_tokens == shapes_engine.count_tokens(prompt)
    assert reply.usage.prompt_tokens > shapes_engine.count_tokens([prompt[0], ask("What shape is it?")[0]])
    assert reply.usage.completion_tokens >= 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_two_photos_in_one_message_keep_their_order(client):
    triangle, square = photo("triangle", "green"), photo("square", "green")
    assert answer(client, ask(WHICH.format("triangle"), triangle, square)) == "the first"
    assert answer(client, ask(WHICH.format("triangle"), square, triangle)) == "the second"


def test_a_follow_up_is_answered_from_the_photo_earlier_in_the_history(client):
    first = ask("What colour is the shape?", photo("triangle", "purple", count=2))
    said = answer(client, first)
    assert said == "purple"
    follow_up = [*first, {"role": "assistant", "content": said}, {"role": "user", "content": "What shape was it?"}]
    assert answer(client, follow_up) == "triangle"


def test_a_follow_up_continues_from_the_work_done_for_the_first_request(client, shapes_engine):
    """Each request brings its photos again, in new files; they are still the same photos,
    so the follow-up reads only what is new (photo decode and KV cache reused)."""
    first = ask("What colour is the shape?", photo("square", "purple", seed=5))
    reply = client.chat.completions.create(model=MODEL, messages=first, temperature=0, max_tokens=8)
    reused = shapes_engine.prefix.reused_tokens
    follow_up = first + [{"role": "assistant", "content": reply.choices[0].message.content},
                         {"role": "user", "content": "What shape is it?"}]
    again = client.chat.completions.create(model=MODEL, messages=follow_up, temperature=0, max_tokens=8)
    assert again.choices[0].message.content.strip() == "square"
    assert shapes_engine.prefix.reused_tokens - reused >= reply.usage.prompt_tokens  # the photo's tokens too


def test_the_request_system_message_replaces_the_servers(client):
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                *ask("What colour is the shape?", photo("square", "orange"))]
    reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)
    assert reply.choices[0].message.content.strip() == "orange"
    with_default = client.chat.completions.create(model=MODEL, messages=messages[1:], temperature=0, max_tokens=8)
    assert reply.usage.prompt_tokens != with_default.usage.prompt_tokens  # a different prompt was read


def test_any_model_name_is_answered_by_the_served_model(client):
    reply = client.chat.completions.create(model="gpt-4o", messages=ask("What shape is it?", photo("star", "red")),
                                           temperature=0, max_tokens=8)
    assert reply.choices[0].message.content.strip() == "star"
    assert reply.model == MODEL


def test_max_tokens_cuts_the_answer_with_finish_reason_length(client):
    for argument in ("max_tokens", "max_completion_tokens"):
        reply = client.chat.completions.create(model=MODEL, messages=ask("Where is the shape?", photo("star", "red")),
                                               temperature=0, **{argument: 1})
        assert reply.choices[0].finish_reason == "length", argument
        assert reply.usage.completion_tokens == 1


def test_a_stop_sequence_ends_the_answer_before_it(client):
    messages = ask("What is written in the image?", photo("circle", "blue", word="STOP"))
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)
    assert whole.choices[0].message.content.strip() == "STOP"
    reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8, stop=["OP"])
    assert reply.choices[0].message.content.strip() == "ST"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.prompt_tokens == whole.usage.prompt_tokens  # cut short, the prompt still counts in full
    streamed = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8,
                                              stop="OP", stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices).strip() == "ST"


def test_sampling_options_are_accepted(client):
    reply = client.chat.completions.create(model=MODEL, messages=ask("What shape is it?", photo("square", "red")),
                                           temperature=0.3, top_p=0.5, seed=7, max_tokens=8, n=1,
                                           frequency_penalty=0, user="someone")
    assert reply.choices[0].message.content.strip()


def test_a_seed_makes_a_sampled_answer_repeatable(client):
    messages = ask("What is the weather like today in Paris and why?")  # a question it has no answer to

    def sampled(seed):
        reply = client.chat.completions.create(model=MODEL, messages=messages, temperature=2.0, top_p=1.0,
                                               max_tokens=12, seed=seed)
        return reply.choices[0].message.content

    assert sampled(3) == sampled(3)
    assert len({sampled(seed) for seed in range(6)}) > 1, "the seed must change what is drawn"


# --- streaming ---

def test_streamed_text_equals_the_whole_answer_and_chunks_are_as_clients_expect(client):
    messages = ask("Which image has the star, the first or the second?", photo("circle", "red"), photo("star", "blue"))
    whole = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8)
    chunks = list(client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == whole.choices[0].message.content
    assert whole.choices[0].message.content.strip() == "the second"


def test_the_stream_ends_with_done_and_has_no_usage_unless_asked(server):
    body = {"model": MODEL, "messages": ask("What shape is it?", photo("star", "red")), "stream": True,
            "temperature": 0, "max_tokens": 8}
    with httpx.stream("POST", server.url + "/v1/chat/completions", json=body, timeout=120) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    chunks = [json.loads(line[6:]) for line in events[:-1]]
    assert all("usage" not in chunk for chunk in chunks)
    assert sum(chunk["choices"][0]["finish_reason"] is not None for chunk in chunks) == 1
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks).strip() == "star"


# --- bad input: a 4xx with a message, and the server keeps answering ---

GARBAGE = "data:image/png;base64," + base64.b64encode(b"not a picture at all").decode()
TOO_MANY = [photo("circle", "red") for _ in range(5)]


@pytest.mark.parametrize("change, status, says", [
    (dict(messages=ask("Colour?", {"type": "image_url", "image_url": {"url": GARBAGE}})), 400, "not a photo"),
    (dict(messages=ask("Colour?", *TOO_MANY)), 400, "at most 4"),
    (dict(messages=ask("x" * 8001)), 400, "the limit is 8,000"),
    (dict(messages=ask("Colour?", {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}})),
     400, "data URL"),
    (dict(messages=ask("Colour?", {"type": "image_url", "image_url": {"url": "file:///etc/hostname"}})),
     400, "data URL"),
    (dict(messages=ask("Colour?", {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}})),
     400, "base64"),
    (dict(messages=ask("Colour?", {"type": "image_url", "image_url": {"url": GARBAGE, "detail": "huge"}})),
     400, "detail"),
    (dict(messages=ask("Colour?", {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}})),
     400, "Unsupported content part type"),
    (dict(messages=[{"role": "wizard", "content": "hi"}]), 400, "role"),
    (dict(messages=[{"role": "tool", "content": "hi", "tool_call_id": "1"}]), 400, "tool"),
    (dict(messages=[*ask("Hi"), {"role": "assistant", "content": "Hello"}]), 400, "last message"),
    (dict(messages=[]), 400, "messages"),
    (dict(messages=[{"role": "user", "content": [photo("star", "red")]}]), 400, "question"),
    (dict(n=2), 400, "n"),
    (dict(temperature=5), 400, "temperature"),
    (dict(max_tokens=0), 400, "max_tokens"),
    (dict(max_tokens=10**7), 400, "at most"),
    (dict(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
    (dict(response_format={"type": "json_schema"}), 400, "response_format"),
    (dict(tools=[{"type": "function", "function": {"name": "f"}}]), 400, "tools"),
])
def test_bad_input_is_a_4xx_with_a_message_and_the_next_request_is_answered(client, change, status, says):
    request = dict(model=MODEL, messages=ask("What colour is the shape?", photo("circle", "red")), max_tokens=8)
    request.update(change)
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as refused:
            reply = client.chat.completions.create(**request, stream=stream)
            list(reply) if stream else None
        assert refused.value.status_code == status
        error = refused.value.body
        assert says.lower() in error["message"].lower(), error
        assert error["type"] == "invalid_request_error"
    assert answer(client, ask("What colour is the shape?", photo("circle", "red"))) == "red"


def test_a_body_that_is_not_json_is_a_400(server, client):
    response = httpx.post(server.url + "/v1/chat/completions", content=b"{not json", timeout=60,
                          headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert "json" in response.json()["error"]["message"].lower()
    response = httpx.get(server.url + "/v1/no-such-thing", timeout=60)
    assert response.status_code == 404 and "No such endpoint" in response.json()["error"]["message"]
    assert answer(client, ask("What colour is the shape?", photo("circle", "green"))) == "green"


def test_a_request_larger_than_the_limit_is_refused_from_its_headers(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as raw:
        raw.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: application/json\r\nContent-Length: 999999999999\r\n\r\n{}")
        received = b""
        for _ in range(100):  # the status line and the body may come in separate packets
            if b"accepts" in received:
                break
            piece = raw.recv(65536)
            if not piece:
                break
            received += piece
        head = received.decode(errors="replace")
    assert head.startswith("HTTP/1.1 413"), head
    assert "larger than this server accepts" in head


# --- the page shares the port ---

def test_the_page_is_served_on_the_same_port_with_its_options(server):
    page = httpx.get(server.url + "/", timeout=60)
    assert page.status_code == 200 and "gradio" in page.text.lower()
    blocks = server.app.routes[-1].app.get_blocks()  # the mounted page
    config = server.services.config  # the largest upload of any kind: a clip's limit is above a photo's
    assert blocks.max_file_size == int(max(config.max_upload_mb, config.max_video_mb) * 1_000_000)
    data_dir = server.services.config.data_dir
    # Photos, recordings and exports are served; the rest of the data folder (the database) is not.
    assert str(data_dir / "media") in blocks.allowed_paths and str(data_dir) not in blocks.allowed_paths


# --- model names and keys (servers of their own: other settings) ---

def test_strict_model_names_answer_other_names_with_404(shapes_engine, tmp_path):
    services = make_services(shapes_config(tmp_path, strict_model_names=True, served_model_name="shapes"),
                             shapes_engine)
    with LiveServer(services) as live:
        client = live.client()
        assert [m.id for m in client.models.list().data] == ["shapes"]
        with pytest.raises(openai.NotFoundError) as refused:
            client.chat.completions.create(model="gpt-4o", messages=ask("What shape is it?", photo("star", "red")))
        assert "shapes" in refused.value.body["message"]
        reply = client.chat.completions.create(model="shapes", messages=ask("What shape is it?", photo("star", "red")),
                                               temperature=0, max_tokens=8)
        assert reply.choices[0].message.content.strip() == "star" and reply.model == "shapes"


def test_api_keys_from_the_flag_and_the_file_are_required_when_set(shapes_engine, tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("# team keys\nteam-key-1\n\nteam-key-2  # the bot\n")
    services = make_services(shapes_config(tmp_path, api_key="operator-key", api_keys_file=str(keys)), shapes_engine)
    with LiveServer(services) as live:
        for wrong in ("nope", "team-key", "operator-key team-key-1"):
            with pytest.raises(openai.AuthenticationError) as refused:
                live.client(api_key=wrong).models.list()
            assert "API key" in refused.value.body["message"]
        for key in ("operator-key", "team-key-1", "team-key-2"):
            assert answer(live.client(api_key=key), ask("What shape is it?", photo("square", "red"))) == "square"
        assert httpx.get(live.url + "/v1/models", timeout=60).status_code == 401


def test_serving_beyond_loopback_without_a_key_warns(caplog):
    from mmchat.api.auth import warn_if_open

    with caplog.at_level("WARNING"):
        warn_if_open(Config(host="127.0.0.1"), ())
        warn_if_open(Config(host="0.0.0.0"), ("key",))
        assert not caplog.records
        warn_if_open(Config(host="0.0.0.0"), ())
    assert "without an API key" in caplog.text


def test_nothing_is_left_behind(server, client):
    """API conversations are not saved, and their photos are gone once answered."""
    assert answer(client, ask("What colour is the shape?", photo("star", "blue"))) == "blue"
    assert wait_until(lambda: not alive(("mmchat-api-turn",)))
    data = server.services.config.data_dir
    assert not data.exists() or not any(data.rglob("*.json"))
    assert not list(Path(tempfile.gettempdir()).glob("mmchat-api-*"))


def test_clients_asking_at_once_each_get_their_own_answer(server):
    """Four clients on threads of their own, through the one line (concurrency 1), streaming and not."""
    colours = ["red", "green", "blue", "purple"]
    heard: dict[str, str] = {}

    def ask_about(colour: str, stream: bool) -> None:
        client = server.client()
        messages = ask("What colour is the shape?", photo("star", colour))
        if stream:
            chunks = client.chat.completions.create(model=MODEL, messages=messages, temperature=0, max_tokens=8,
                                                    stream=True)
            heard[colour] = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
        else:
            heard[colour] = answer(client, messages)

    threads = [threading.Thread(target=ask_about, args=(colour, i % 2 == 0)) for i, colour in enumerate(colours)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert heard == {colour: colour for colour in colours}
    assert wait_until(lambda: server.services.admission.running == 0 and not alive())
