"""Video clips in a conversation, end to end: the API (a real server on loopback, the
official client), the page's handlers, the store, export and import, and the engines.

The model is the trained shapes-vlm. It was trained on photos only, but Qwen3-VL reads a
photo as two identical frames, so a clip of a drawn scene held still is a scene it knows:
its answer is right only when the clip's frames reach it as video.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import av
import httpx
import openai
import pytest

import clips
from clips import clip_data_url, make_clip, make_recording
from conftest import make_services
from fixture_models import draw_test_image, shapes_vlm_path
from mmchat.config import Config
from mmchat.conversation import TextPart, VideoPart
from mmchat.engine import GenerationParams
from mmchat.engine.local import create_local_engine
from mmchat.engine.remote_prompt import RemotePrompt
from mmchat.media.video import CLIPS
from mmchat.model_handle import ModelHandle
from mmchat.store import SQLiteStore
from mmchat.transfer import import_file
from mmchat.turn import Services, UserInput, submit
from mmchat.turn.session import ChatSession
from mmchat.web.chat import ChatHandlers, sorted_files
from mmchat.web.page import build_ui
from mmchat.web.view import render
from test_api_support import LiveServer

MODEL = str(shapes_vlm_path())
QUIET = (12, 0.0, False, "auto", 1.0)  # max tokens, temperature, speak, voice, rate


def still_clip(path: Path, shape: str, colour: str, seconds: float = 2.0) -> Path:
    """A clip of a drawn scene held still for `seconds`."""
    return clips.still_clip(path, draw_test_image(shape, colour), seconds)


def video_part(path: Path) -> dict:
    return {"type": "video_url", "video_url": {"url": clip_data_url(path)}}


@pytest.fixture(scope="module")
def shapes_engine():
    return create_local_engine(Config(model=MODEL, device="cpu", quantization="none"))


@pytest.fixture(scope="module")
def server(shapes_engine, tmp_path_factory):
    config = Config(model=MODEL, device="cpu", data_dir=tmp_path_factory.mktemp("clips") / "data", temperature=0.0,
                    stt_backend="none", tts_backend="none", max_turns_per_minute=0)
    services = make_services(config, shapes_engine)
    with LiveServer(services, build_ui(services)) as live:
        yield live


def ask(client, *content) -> str:
    reply = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=8,
                                           messages=[{"role": "user", "content": list(content)}])
    return reply.choices[0].message.content.strip()


# --- the API ---

@pytest.mark.parametrize("colour", ["red", "blue", "yellow"])
def test_a_clip_sent_as_a_video_url_part_is_answered_about_the_clip(server, tmp_path, colour):
    clip = still_clip(tmp_path / "scene.mp4", "circle", colour)
    said = ask(server.client(), video_part(clip), {"type": "text", "text": "What colour is the shape?"})
    assert said == colour


def test_a_follow_up_about_a_clip_reads_it_from_the_history_without_decoding_it_again(server, tmp_path):
    clip = video_part(still_clip(tmp_path / "scene.webm", "square", "green"))
    client = server.client()
    first = [{"role": "user", "content": [clip, {"type": "text", "text": "What colour is the shape?"}]}]
    reply = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=8, messages=first)
    assert reply.choices[0].message.content.strip() == "green"
    decoded = CLIPS.decoded
    follow_up = [*first, {"role": "assistant", "content": "green"},
                 {"role": "user", "content": [{"type": "text", "text": "What shape is it?"}]}]
    reply = client.chat.completions.create(model=MODEL, temperature=0, max_tokens=8, messages=follow_up)
    assert reply.choices[0].message.content.strip() == "square"
    assert CLIPS.decoded == decoded  # the same bytes again: their frames were kept


@pytest.mark.parametrize("case, words", [
    ("not a clip", "not a video clip"),
    ("8K frames", "7680×4320"),
    ("1,000 frames a second", "frames a second"),
    ("sound only", "only sound"),
])
def test_a_bad_clip_is_a_400_with_one_sentence_and_the_server_serves_on(server, tmp_path, case, words):
    path = tmp_path / "bad.mkv"
    if case == "not a clip":
        path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 1000)
    elif case == "8K frames":
        make_clip(path, seconds=0.2, fps=10, size=(7680, 4320), codec="mpeg4")
    elif case == "1,000 frames a second":
        make_clip(path, seconds=0.05, fps=1000, size=(64, 48))
    else:
        make_clip(path, seconds=1.0, fps=10, sound=True)
        with av.open(str(path)) as source, av.open(str(tmp_path / "sound.mkv"), "w") as out:
            audio = out.add_stream_from_template(source.streams.audio[0])
            for packet in source.demux(source.streams.audio[0]):
                if packet.dts is not None:
                    packet.stream = audio
                    out.mux(packet)
        path = tmp_path / "sound.mkv"
    client = server.client()
    with pytest.raises(openai.BadRequestError) as refused:
        ask(client, video_part(path), {"type": "text", "text": "What happens?"})
    error = refused.value.body
    assert refused.value.status_code == 400 and error["code"] == "invalid_video" and words in error["message"]
    assert error["param"] == "messages[0].content[0].video_url.url"
    assert ask(client, video_part(still_clip(tmp_path / "good.mp4", "circle", "red")),
               {"type": "text", "text": "What colour is the shape?"}) == "red"


def test_a_clip_over_the_size_limit_is_a_413_before_it_is_decoded(server):
    payload = "A" * int(server.services.config.max_video_mb * 1e6 * 4 / 3 + 100)
    reply = httpx.post(server.url + "/v1/chat/completions", timeout=120, json={
        "model": MODEL, "messages": [{"role": "user", "content": [
            {"type": "video_url", "video_url": {"url": "data:video/mp4;base64," + payload}},
            {"type": "text", "text": "What happens?"}]}]})
    assert reply.status_code == 413 and reply.json()["error"]["code"] == "invalid_video"


def test_more_clips_than_a_message_takes_are_refused_before_any_is_decoded(server, tmp_path):
    clip = video_part(make_clip(tmp_path / "many.mp4", seconds=1.0, fps=10, colour=lambda t: (0, 255, 0)))
    decoded = CLIPS.decoded
    with pytest.raises(openai.BadRequestError) as refused:
        ask(server.client(), *[clip] * (server.services.config.max_videos_per_turn + 1),
            {"type": "text", "text": "What happens?"})
    assert refused.value.body["code"] == "too_many_videos" and CLIPS.decoded == decoded


def test_a_clip_must_come_inline(server):
    with pytest.raises(openai.BadRequestError) as refused:
        ask(server.client(), {"type": "video_url", "video_url": {"url": "file:///etc/passwd"}},
            {"type": "text", "text": "What happens?"})
    assert refused.value.body["code"] == "video_url_not_allowed"


# --- the engines ---

def test_qwen3_vl_reads_a_clip_as_video_with_each_frame_pairs_time(shapes_engine, tmp_path):
    clip = make_clip(tmp_path / "moving.mp4", seconds=3.0, fps=30)
    prompt = shapes_engine.prepare([{"role": "user", "content": [
        {"type": "video_url", "video_url": {"url": clip.as_uri()}}, {"type": "text", "text": "Which way?"}]}])
    text = shapes_engine.tokenizer.decode(prompt.tokens["input_ids"][0])
    # Seven frames (0 to 3 s at 2 a second) read in pairs: four pairs, each after its mean time.
    assert [f"<{t} seconds>" in text for t in ("0.2", "1.2", "2.2", "3.0")] == [True] * 4
    inputs = prompt.full_inputs()  # what the model reads: the clip as video, not as photos
    grid = inputs["video_grid_thw"]
    assert grid.tolist()[0][0] == 4 and "pixel_values_videos" in inputs and "pixel_values" not in inputs
    video_tokens = int((prompt.tokens["input_ids"] == shapes_engine.processor.video_token_id).sum())
    assert video_tokens == int(grid.prod()) // shapes_engine.processor.video_processor.merge_size ** 2
    # The clip's placeholders carry its identity in the prompt's key: a follow-up continues past it.
    assert prompt.reusable and len(prompt.spans) == 1 and prompt.photos[0].video


def test_a_family_without_video_gets_a_clip_as_time_stamped_frames(idefics_engine, tmp_path):
    clip = make_clip(tmp_path / "moving.mp4", seconds=3.0, fps=30)
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip.as_uri()}},
                                             {"type": "text", "text": "Which way?"}]}]
    converted, videos = idefics_engine._to_hf_messages(messages)
    content = converted[0]["content"]
    assert videos == [] and [item["text"] for item in content if item["type"] == "text"][:3] == [
        "A video clip of 3.0 seconds, shown as 7 frames, each after its time:", "At 0.0 s:", "At 0.5 s:"]
    assert sum(item["type"] == "image" for item in content) == 7
    assert idefics_engine.count_tokens(messages) > idefics_engine.count_tokens(
        [{"role": "user", "content": [{"type": "text", "text": "Which way?"}]}])


def test_a_remote_server_gets_a_clip_as_time_stamped_photos(tmp_path):
    clip = make_clip(tmp_path / "moving.mp4", seconds=6.0, fps=10)
    prompt = RemotePrompt(max_pixels=200_000)
    prompt.video_parts = False  # as for a server that refused a clip as video (test_remote_engine.py)
    messages = [{"role": "user", "content": [{"type": "video_url", "video_url": {"url": clip.as_uri()}},
                                             {"type": "text", "text": "Which way?"}]}]
    (sent,) = prompt.outgoing(messages)
    kinds = [item["type"] for item in sent["content"]]
    assert "video_url" not in kinds and kinds.count("image_url") == 8  # FRAMES_AS_PHOTOS, spread over the clip
    texts = [item["text"] for item in sent["content"] if item["type"] == "text"]
    # Its last frame is shown 5.9 s in: the frames kept are those at 0, 0.5, ... 5.5 s.
    assert texts[1] == "At 0.0 s:" and texts[-2] == "At 5.5 s:" and texts[-1] == "Which way?"
    assert all(item["image_url"]["url"].startswith("data:image/jpeg;base64,") for item in sent["content"]
               if item["type"] == "image_url")
    encoded = prompt.encoded
    prompt.outgoing(messages)
    assert prompt.encoded == encoded  # each frame encoded once, like a photo


# --- the page, the store, export and import ---

def test_a_webm_is_a_clip_when_it_has_pictures_and_a_recording_when_it_has_only_sound(tmp_path):
    clip = make_clip(tmp_path / "clip.webm", seconds=1.0, fps=10, codec="libvpx-vp9")
    recording = make_recording(tmp_path / "voice.webm")
    photo = tmp_path / "photo.png"
    draw_test_image("circle", "red").save(photo)
    assert sorted_files([str(photo), str(clip), str(recording)]) == ((str(photo),), (str(clip),), [str(recording)])


def test_a_clip_asked_about_in_the_page_is_shown_kept_and_exported(shapes_engine, tmp_path):
    config = Config(model=MODEL, device="cpu", data_dir=tmp_path / "data", temperature=0.0, stt_backend="none",
                    tts_backend="none", max_turns_per_minute=0)
    with SQLiteStore(config.data_dir) as store:
        services = make_services(config, shapes_engine, store)
        handlers = ChatHandlers(services)
        session, *_ = handlers.on_load("")
        upload = still_clip(tmp_path / "upload.mp4", "circle", "blue", seconds=3.0)
        *_, last = handlers.on_submit(session, {"text": "What colour is the shape?", "files": [str(upload)]},
                                      False, None, *QUIET, progress=None)
        question, answer = last.chat[-2:]
        assert answer["content"] == "blue"
        (shown,) = [item for item in question["content"] if isinstance(item, dict) and "file" in item]
        assert shown["file"]["mime_type"] == "video/mp4"
        # Kept by content in the store, with its length; read back as the clip it was.
        (part,) = session.conversation.turns[0].clips
        assert Path(part.path).read_bytes() == upload.read_bytes() and part.path != str(upload)
        assert part.duration == pytest.approx(3.0, abs=0.1)
        reopened = store.load(session.conversation.id)
        assert reopened.turns[0].parts[0] == part and isinstance(reopened.turns[0].parts[1], TextPart)
        # A follow-up without the clip is still about it.
        *_, last = handlers.on_submit(session, {"text": "What shape is it?", "files": []}, False, None, *QUIET,
                                      progress=None)
        assert last.chat[-1]["content"] == "circle"

        export = Path(handlers.on_export(session)["value"])
        with zipfile.ZipFile(export) as archive:
            (member,) = [name for name in archive.namelist() if "/clips/" in name]
            assert member.endswith("clips/clip-1.mp4") and archive.read(member) == upload.read_bytes()
            markdown = archive.read(next(n for n in archive.namelist() if n.endswith(".md"))).decode()
            assert "[video clip, 3 s](clips/clip-1.mp4)" in markdown
        with SQLiteStore(tmp_path / "other") as other:
            imported = import_file(export, other, "local")
            (clip,) = imported.turns[0].clips
            assert isinstance(clip, VideoPart) and Path(clip.path).read_bytes() == upload.read_bytes()
            assert clip.duration == part.duration


def test_a_bad_clip_in_the_page_is_refused_in_one_sentence_and_the_conversation_is_unchanged(shapes_engine,
                                                                                            tmp_path):
    config = Config(model=MODEL, device="cpu", data_dir=tmp_path / "data", temperature=0.0, stt_backend="none",
                    tts_backend="none", max_turns_per_minute=0)
    with SQLiteStore(config.data_dir) as store:
        handlers = ChatHandlers(make_services(config, shapes_engine, store))
        session, *_ = handlers.on_load("")
        *_, last = handlers.on_submit(session, {"text": "What colour is the shape?",
                                                "files": [str(still_clip(tmp_path / "a.mp4", "star", "red"))]},
                                      False, None, *QUIET, progress=None)
        before = session.conversation.to_json()
        broken = tmp_path / "broken.mp4"
        broken.write_bytes(b"not a clip at all" * 500)
        *_, last = handlers.on_submit(session, {"text": "And this one?", "files": [str(broken)]}, False, None,
                                      *QUIET, progress=None)
        assert "broken.mp4 is not a video clip, or it is too damaged to play." in str(last.announcement)
        assert session.conversation.to_json() == before


# --- the clip's sound ---

@pytest.fixture(scope="module")
def speaking_clip(tmp_path_factory):
    """A clip of a still scene, someone saying "the door is open" 1.5 s in."""
    from speech import espeak

    folder = tmp_path_factory.mktemp("speaking")
    words = espeak("The door is open.", folder, rate=16000)
    return make_clip(folder / "door.mp4", seconds=4.0, fps=10, where=lambda t: 0.5, speech=words, speech_at=1.5)


def test_the_speech_in_a_clip_is_heard_with_its_times_and_given_to_the_model(shapes_engine, speech_to_text,
                                                                              speaking_clip, tmp_path):

    config = Config(model=MODEL, device="cpu", data_dir=tmp_path / "data", temperature=0.0, tts_backend="none",
                    max_turns_per_minute=0, speech_language="en")
    with SQLiteStore(config.data_dir) as store:
        services = Services(config=config, engine=ModelHandle.ready(shapes_engine),
                            stt=ModelHandle.ready(speech_to_text), store=store)
        session = ChatSession(store)
        events = list(submit(session, UserInput("What does he say?", videos=(str(speaking_clip),)), services,
                             GenerationParams(max_new_tokens=4, temperature=0.0)))
        assert events[-1].status == "complete"
        (clip,) = session.conversation.turns[0].clips
        start, words = clip.transcript.split("] ", 1)
        assert "door is open" in words.lower()
        begins = float(start.strip("[").split("-")[0])
        assert 1.0 <= begins <= 2.0  # said 1.5 s in, and the model is told so
        prompt = session.conversation.to_openai()[0]["content"]
        assert prompt[1] == {"type": "text", "text": "Speech heard in the clip (seconds from its start):\n"
                                                     + clip.transcript}
        assert store.load(session.conversation.id).turns[0].clips[0].transcript == clip.transcript
        # The chat shows what was heard, under the clip (for people who can't hear it too).
        shown = render(session.conversation)[0]["content"]
        assert any(isinstance(item, str) and item.startswith("Heard in the clip:") and "door is open" in item.lower()
                   for item in shown)

        # Asked not to listen, or with nothing to listen to, the clip comes alone.
        list(submit(session, UserInput("And without?", videos=(str(speaking_clip),), clip_speech=False), services,
                    GenerationParams(max_new_tokens=4, temperature=0.0)))
        assert session.conversation.turns[2].clips[0].transcript == ""
        silent = make_clip(tmp_path / "tone.mp4", seconds=2.0, fps=10, sound=True)
        list(submit(session, UserInput("And this?", videos=(str(silent),)), services,
                    GenerationParams(max_new_tokens=4, temperature=0.0)))
        assert session.conversation.turns[4].clips[0].transcript == ""


def test_the_api_hears_a_clips_speech_and_reads_it_again_in_the_history(shapes_engine, speech_to_text,
                                                                         speaking_clip, tmp_path):
    config = Config(model=MODEL, device="cpu", data_dir=tmp_path / "data", temperature=0.0, tts_backend="none",
                    max_turns_per_minute=0, speech_language="en")

    services = Services(config=config, engine=ModelHandle.ready(shapes_engine), stt=ModelHandle.ready(speech_to_text))
    seen = []
    real = shapes_engine.prepare
    with LiveServer(services) as live:
        client = live.client()
        first = [{"role": "user", "content": [video_part(speaking_clip), {"type": "text", "text": "What is said?"}]}]
        try:
            shapes_engine.prepare = lambda messages: seen.append(messages) or real(messages)
            client.chat.completions.create(model=MODEL, temperature=0, max_tokens=4, messages=first)
            client.chat.completions.create(model=MODEL, temperature=0, max_tokens=4, messages=[
                *first, {"role": "assistant", "content": "yes"}, {"role": "user", "content": "And then?"}])
        finally:
            shapes_engine.prepare = real
    asked, followed = seen[0][-1]["content"], seen[-1][-3]["content"]
    assert "door is open" in asked[1]["text"].lower()
    assert followed[:2] == asked[:2]  # the history's clip, with the same words heard in it
