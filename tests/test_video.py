"""Video clips read the way people send them: frames sampled by time, upright, within
budget; every bad clip refused in one sentence before any long decode (media/video.py)."""

from __future__ import annotations

import math
import shutil
import subprocess

import av
import numpy as np
import pytest
from PIL import Image

from clips import make_clip, make_recording, square_colour, square_left
from mmchat.errors import InputError
from mmchat.media.video import CLIPS, MAX_SIDE, ClipLimits, has_pictures, read_clip

LIMITS = ClipLimits()
MB = 10**6


def read(path, limits: ClipLimits = LIMITS):
    return read_clip(path, limits=limits, max_bytes=200 * MB)


def test_frames_are_taken_twice_a_second_in_order_with_their_times(tmp_path):
    clip = read(make_clip(tmp_path / "moving.mp4", seconds=3.0, fps=30, where=lambda t: t / 3.0))
    frames = clip.frames
    assert frames.rate == 2.0 and frames.times == (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)[:len(frames.times)]
    assert len(frames.images) >= 6 and frames.duration == pytest.approx(3.0, abs=0.05)
    # Each frame is the one shown at its time: the square's place follows the clock.
    for when, image in zip(frames.times, frames.images):
        assert square_left(image) == pytest.approx(min(when, 2.97) / 3.0, abs=0.04), when
    assert frames.size == (320, 240) and not frames.has_sound and clip.notice is None


@pytest.mark.parametrize("name, codec", [("clip.webm", "libvpx-vp9"), ("clip.mkv", "libx264"), ("clip.mov", "libx264"),
                                         ("clip.gif", "gif")])
def test_the_containers_people_send_are_read(tmp_path, name, codec):
    path = make_clip(tmp_path / name, seconds=2.0, fps=10, codec=codec)
    assert has_pictures(path)
    frames = read(path).frames
    assert len(frames.images) >= 4
    assert square_left(frames.images[0]) < square_left(frames.images[-1])  # the square moved right


def test_a_variable_frame_rate_clip_is_sampled_by_its_timestamps_not_by_counting_frames(tmp_path):
    # 30 frames in the first second, then 4 a second for three: a phone dropping its rate in the dark.
    times = [i / 30 for i in range(30)] + [1 + i / 4 for i in range(12)]
    clip = read(make_clip(tmp_path / "vfr.mp4", times=times, where=lambda t: t / 4.0))
    for when, image in zip(clip.frames.times, clip.frames.images):
        shown = max(t for t in times if t <= when + 0.13)  # the nearest frame at or around that time
        assert square_left(image) == pytest.approx(shown / 4.0, abs=0.05), when


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command (scripts/dev-setup.sh installs it)")
def test_a_phone_clip_held_upright_is_read_as_ffmpegs_own_player_shows_it(tmp_path):
    landscape = make_clip(tmp_path / "landscape.mp4", seconds=1.0, fps=10, where=lambda t: 0.0)
    rotated = tmp_path / "rotated.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(landscape), "-c", "copy", "-metadata:s:v:0",
                    "rotate=90", str(rotated)], check=True)
    shown = tmp_path / "shown.png"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(rotated), "-frames:v", "1", str(shown)], check=True)
    expected = np.asarray(Image.open(shown).convert("RGB")).astype(int)
    clip = read(rotated)
    frame = np.asarray(clip.frames.images[0].resize((expected.shape[1], expected.shape[0]))).astype(int)
    assert clip.frames.size == (240, 320) and frame.shape == expected.shape
    assert np.abs(frame - expected).mean() < 8  # the same picture, the same way up


def test_a_long_clip_is_sampled_more_sparsely_within_the_frame_and_pixel_budgets(tmp_path):
    limits = ClipLimits(max_frames=16, max_pixels=16 * 100_000)
    clip = read(make_clip(tmp_path / "long.mp4", seconds=20.0, fps=10, size=(1280, 720), where=lambda t: t / 20),
                limits)
    frames = clip.frames
    assert len(frames.images) <= 16 and frames.rate == pytest.approx(16 / 20)
    assert sum(image.width * image.height for image in frames.images) <= limits.max_pixels
    assert frames.times[-1] > 15  # spread over the whole clip, not its first 8 seconds
    assert square_left(frames.images[-1]) > 0.75


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="the ffmpeg command (scripts/dev-setup.sh installs it)")
def test_a_clip_that_does_not_say_its_length_is_sampled_over_all_of_it(tmp_path):
    # A browser's own recording (MediaRecorder's WebM) writes no length: the frames are taken
    # at the full rate, then thinned to every other one each time the budget fills.
    whole = make_clip(tmp_path / "whole.webm", seconds=50, fps=10, size=(160, 120), codec="libvpx-vp9",
                      where=lambda t: t / 50)
    live = tmp_path / "live.webm"
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(whole), "-c", "copy", "-f", "webm", "-live", "1",
                    str(live)], check=True)
    with av.open(str(live)) as container:
        assert container.duration is None and container.streams.video[0].duration is None
    frames = read(live, ClipLimits(max_frames=16)).frames
    assert len(frames.images) <= 16 and frames.times[-1] >= 40  # spread over the whole clip
    for when, image in zip(frames.times, frames.images):
        assert square_left(image) == pytest.approx(when / 50, abs=0.04), when


def test_a_two_hour_clip_is_looked_at_over_its_first_minutes_and_says_so(tmp_path):
    clip = read(make_clip(tmp_path / "film.mp4", seconds=7200, fps=1, size=(64, 48), where=lambda t: (t % 60) / 60))
    frames = clip.frames
    assert frames.duration == pytest.approx(7200, abs=2) and frames.seconds == LIMITS.max_seconds
    assert frames.times[-1] <= LIMITS.max_seconds
    assert clip.notice == "Only the first 2 minutes of film.mp4 are looked at: it is 2.0 hours long."


def test_a_clip_is_decoded_once_however_often_it_is_read(tmp_path):
    path = make_clip(tmp_path / "again.mp4", seconds=1.0, fps=10)
    before = CLIPS.decoded
    first, second = read(path), read(path)
    assert CLIPS.decoded == before + 1 and first.frames is second.frames


def _expect_refusal(source, *words, limits=LIMITS):
    with pytest.raises(InputError) as refused:
        read_clip(source, limits=limits, max_bytes=200 * MB, name="clip.mp4")
    message = refused.value.message
    assert all(word in message for word in words), message
    assert message.count(". ") <= 1 and "\n" not in message and "Traceback" not in message  # one plain sentence or two
    return message


def test_bytes_that_are_not_a_clip_are_refused(tmp_path):
    _expect_refusal(b"this is text, not a video" * 100, "not a video clip")
    _expect_refusal(np.random.default_rng(1).bytes(50_000), "not a video clip")


def test_a_photo_named_as_a_clip_is_refused_as_no_moving_pictures(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (64, 64), "red").save(photo)
    _expect_refusal(photo.read_bytes(), "no moving pictures")


def test_a_sound_recording_is_refused_as_a_clip_and_told_to_go_as_a_recording(tmp_path):
    import soundfile

    sound = tmp_path / "sound.wav"
    soundfile.write(sound, np.zeros(16000, np.float32), 16000)
    _expect_refusal(sound.read_bytes(), "only sound", "recording")
    assert not has_pictures(make_recording(tmp_path / "voice.webm"))  # the page's own recordings: sound-only WebM


def test_a_truncated_clip_is_refused_or_read_as_far_as_it_plays(tmp_path):
    whole = make_clip(tmp_path / "whole.mkv", seconds=4.0, fps=10).read_bytes()
    try:
        clip = read_clip(whole[: len(whole) // 2], limits=LIMITS, max_bytes=200 * MB, name="cut.mkv")
    except InputError as refused:
        assert "damaged" in refused.message
    else:
        assert 1 <= len(clip.frames.images) < 8


def test_8k_frames_are_refused_from_the_header(tmp_path):
    huge = make_clip(tmp_path / "8k.mkv", seconds=0.2, fps=10, size=(7680, 4320), codec="mpeg4")
    message = _expect_refusal(huge.read_bytes(), "7680×4320", str(MAX_SIDE))
    assert message.startswith("The frames of clip.mp4")


def test_a_thousand_frames_a_second_is_refused(tmp_path):
    fast = make_clip(tmp_path / "fast.mkv", seconds=0.05, fps=1000, size=(64, 48))
    _expect_refusal(fast.read_bytes(), "frames a second")


def test_an_empty_file_and_a_clip_with_no_frames_are_refused(tmp_path):
    _expect_refusal(b"", "empty")
    empty = tmp_path / "none.mp4"
    with av.open(str(empty), "w") as out:  # a header, and not one frame
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        out.start_encoding()
    _expect_refusal(empty.read_bytes(), "no moving pictures", "empty")


def test_a_clip_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = make_clip(tmp_path / "big.mp4", seconds=1.0, fps=10)
    with pytest.raises(InputError) as refused:
        read_clip(path, limits=LIMITS, max_bytes=100)
    assert refused.value.key == "clip_too_big" and "the limit is 0 MB" in refused.value.message


def test_a_decode_past_its_time_limit_is_refused(tmp_path):
    path = make_clip(tmp_path / "slow.mp4", seconds=6.0, fps=30, size=(640, 480))
    message = _expect_refusal(path.read_bytes() + b"", "took longer than", limits=ClipLimits(time_limit=0.0))
    assert "shorter or smaller" in message


def test_the_frames_fit_the_budget_a_frame_and_keep_their_shape(tmp_path):
    clip = read(make_clip(tmp_path / "wide.mp4", seconds=1.0, fps=10, size=(1920, 1080)),
                ClipLimits(frame_pixels=200_000))
    for image in clip.frames.images:
        assert image.width * image.height <= 200_000
        assert image.width / image.height == pytest.approx(16 / 9, rel=0.02)
    assert square_colour(clip.frames.images[0])[0] > 200


def test_sound_in_a_clip_is_noted(tmp_path):
    clip = read(make_clip(tmp_path / "talk.mp4", seconds=1.0, fps=10, sound=True))
    assert clip.frames.has_sound and math.isclose(clip.frames.duration, 1.0, abs_tol=0.1)
