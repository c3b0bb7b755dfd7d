"""Photos prepared once (issue 11): decoded, fitted and processed once however many turns resend them."""

from __future__ import annotations

import os

import pytest
import torch
from PIL import Image
from transformers import AutoProcessor

from conftest import engine_for
from fixture_models import fixture_model_path
from mmchat.cancel import CancelToken
from mmchat.engine import GenerationParams
from mmchat.history import fit_history
from mmchat.media.images import open_for_model
from mmchat.media.photos import PHOTOS, load_photo


def _user(text, *images):
    content = [{"type": "image_url", "image_url": {"url": p.resolve().as_uri()}} for p in images]
    return {"role": "user", "content": content + [{"type": "text", "text": text}]}


def _photos(folder, sizes):
    paths = []
    for i, size in enumerate(sizes):
        paths.append(folder / f"photo{i}.jpg")
        Image.effect_noise(size, 40 + i).convert("RGB").save(paths[-1])
    return paths


def test_a_stored_photo_is_decoded_once_until_its_file_changes(tmp_path):
    [path] = _photos(tmp_path, [(120, 90)])
    first = load_photo(path, 64 * 64)
    assert load_photo(path, 64 * 64) is first
    assert list(first.getdata()) == list(open_for_model(path, 64 * 64).getdata())
    assert load_photo(path, 32 * 32) is not first, "another pixel budget is another photo"
    Image.new("RGB", (120, 90), "blue").save(path)
    os.utime(path, ns=(1, 1))
    again = load_photo(path, 64 * 64)
    assert again is not first and again.getpixel((0, 0)) == (0, 0, 254)


@pytest.mark.parametrize("family", ["tiny-qwen3-vl", "tiny-idefics3"])
def test_every_turn_prepares_only_its_new_photo_and_only_once(family, tmp_path):
    engine = engine_for(family)
    prepared = []
    real = engine.processor.apply_chat_template
    engine.processor.apply_chat_template = lambda *a, **k: prepared.append(1) or real(*a, **k)
    photos = _photos(tmp_path, [(64, 48), (40, 80), (96, 96), (50, 50)])
    decoded, processed = PHOTOS.decoded, engine._images.processed
    messages = [{"role": "system", "content": "Be brief."}]
    for turn, photo in enumerate(photos):
        messages.append(_user(f"And photo {turn}?", photo))
        fitted = fit_history(messages, engine.count_tokens, 8192)  # counted for the budget...
        *pieces, completion = engine.stream(fitted.messages, GenerationParams(max_new_tokens=4, temperature=0.0),
                                            CancelToken.standalone())  # ...then answered
        assert completion.prompt_tokens == fitted.tokens
        messages.append({"role": "assistant", "content": "".join(pieces) or "ok"})
        assert len(prepared) == turn + 1, "the prompt counted is the prompt answered: prepared once"
        assert PHOTOS.decoded - decoded == turn + 1, "each photo decoded once, when it first comes"
        assert engine._images.processed - processed == turn + 1


@pytest.mark.parametrize("family", ["tiny-qwen3-vl", "tiny-idefics3"])
def test_the_inputs_are_what_the_processor_itself_makes(family, tmp_path):
    """Pixels processed photo by photo and put together must equal the processor's batch."""
    engine = engine_for(family)
    red, tall, big = _photos(tmp_path, [(64, 48), (40, 80), (300, 200)])
    messages = [_user("Look.", red), {"role": "assistant", "content": "A photo."}, _user("And these?", tall, big, red)]
    ours = engine.prepare_inputs(messages)
    processor = AutoProcessor.from_pretrained(fixture_model_path(family))
    hf = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else
           [{"type": "image", "image": open_for_model(item["image_url"]["url"][len("file://"):], engine.max_pixels)}
            if item["type"] == "image_url" else item for item in m["content"]]} for m in messages]
    theirs = processor.apply_chat_template(hf, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt")
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name


def test_forget_makes_the_next_question_pay_what_a_first_one_pays(tmp_path):
    engine = engine_for("tiny-qwen3-vl", prefix_cache_mb=16)
    [path] = _photos(tmp_path, [(96, 64)])
    messages = [_user("What is it?", path)]
    answer = list(engine.stream(messages, GenerationParams(max_new_tokens=3, temperature=0), CancelToken.standalone()))
    decoded, processed = PHOTOS.decoded, engine._images.processed
    engine.forget()
    again = list(engine.stream(messages, GenerationParams(max_new_tokens=3, temperature=0), CancelToken.standalone()))
    assert (PHOTOS.decoded, engine._images.processed) == (decoded + 1, processed + 1)
    assert engine.prefix.hits == 0 and again[:-1] == answer[:-1]  # read from scratch, the same answer


def test_the_same_photo_in_another_file_is_the_same_photo(tmp_path):
    [path] = _photos(tmp_path, [(100, 70)])
    copy = tmp_path / "sent-again.jpg"
    copy.write_bytes(path.read_bytes())  # what an API client resending its photo leads to
    first = load_photo(path, 64 * 64)
    assert load_photo(copy, 64 * 64) is first
    Image.new("RGB", (100, 70), "red").save(copy)  # other bytes: another photo
    assert load_photo(copy, 64 * 64) is not first


def test_the_photo_cache_holds_what_photo_cache_mb_allows(tmp_path):
    """Every new photo is kept until --photo-cache-mb is full (bench/load.py: memory grows into
    this bound, then is flat); 0 keeps none, so a photo sent again is processed again."""
    photos = _photos(tmp_path, [(64, 48), (40, 80)])
    params = GenerationParams(max_new_tokens=2, temperature=0.0)
    for megabytes, processed_twice in ((0, 4), (64, 2)):
        engine = engine_for("tiny-qwen3-vl", photo_cache_mb=megabytes)
        before = engine._images.processed
        for round in range(2):  # the same two photos, asked about twice (in new words: a new prompt)
            for photo in photos:
                list(engine.stream([_user(f"What is it? ({round})", photo)], params, CancelToken.standalone()))
        assert engine._images.processed - before == processed_twice, megabytes
        assert engine._images.cache._bytes <= megabytes * 2**20


def test_clips_and_photos_together_are_what_the_processor_itself_makes(tmp_path):
    """Clips processed one by one beside photos, put together, equal the processor's batch
    (the same frames and metadata given to the real processor in one call)."""
    from transformers.video_utils import VideoMetadata

    from clips import make_clip
    from mmchat.media.video import model_frames

    engine = engine_for("tiny-qwen3-vl")
    red, tall = _photos(tmp_path, [(64, 48), (40, 80)])
    first = make_clip(tmp_path / "first.mp4", seconds=2.0, fps=10, size=(64, 48))
    second = make_clip(tmp_path / "second.mp4", seconds=3.0, fps=10, size=(48, 64), colour=lambda t: (0, 0, 255))
    clip = lambda path: {"type": "video_url", "video_url": {"url": path.as_uri()}}  # noqa: E731
    messages = [{"role": "user", "content": [clip(first), *_user("Look.", red)["content"]]},
                {"role": "assistant", "content": "A clip."},
                {"role": "user", "content": [*_user("And these?", tall)["content"][:1], clip(second), clip(first),
                                             {"type": "text", "text": "And these?"}]}]
    ours = engine.prepare_inputs(messages)
    processor = AutoProcessor.from_pretrained(fixture_model_path("tiny-qwen3-vl"))
    metadata, hf = [], []
    for m in messages:
        content = [{"type": "text", "text": m["content"]}] if isinstance(m["content"], str) else []
        for item in [] if isinstance(m["content"], str) else m["content"]:
            if item["type"] == "image_url":
                content.append({"type": "image", "image": open_for_model(item["image_url"]["url"][len("file://"):],
                                                                        engine.max_pixels)})
            elif item["type"] == "video_url":
                frames = model_frames(item["video_url"]["url"], engine.clip_limits)
                content.append({"type": "video", "video": list(frames.images)})
                count = len(frames.images)
                metadata.append(VideoMetadata(total_num_frames=count, fps=frames.rate, frames_indices=list(range(count))))
            else:
                content.append(item)
        hf.append({"role": m["role"], "content": content})
    theirs = processor.apply_chat_template(hf, add_generation_prompt=True, tokenize=True, return_dict=True,
                                           return_tensors="pt", processor_kwargs={
                                               "video_metadata": metadata, "do_sample_frames": False,
                                               "cap_pixels_per_frame": True})
    assert sorted(ours) == sorted(theirs)
    for name in theirs:
        assert torch.equal(ours[name], theirs[name]), name
