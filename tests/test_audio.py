"""Audio ingestion: whatever a browser or a person sends becomes 16 kHz mono float32."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from hypothesis import given, settings
from hypothesis import strategies as st

from mmchat.media.audio import SAMPLE_RATE, load_audio
from mmchat.errors import InputError

JFK = Path(__file__).parent / "data" / "jfk.flac"
JFK_SECONDS = 11.0

needs_ffmpeg = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg CLI makes the test files")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *args], check=True)


def envelope(audio: np.ndarray) -> np.ndarray:
    """Loudness per 20 ms: survives lossy codecs and resampling, unlike the waveform."""
    frames = audio[: len(audio) // 320 * 320].reshape(-1, 320)
    return np.sqrt((frames**2).mean(axis=1))


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return load_audio(JFK, max_seconds=60)


def test_flac_24bit_stereo_44k_becomes_16k_mono_float32(reference):
    assert reference.dtype == np.float32
    assert reference.ndim == 1
    assert len(reference) == JFK_SECONDS * SAMPLE_RATE
    assert 0.05 < np.abs(reference).max() <= 1.0


@needs_ffmpeg
@pytest.mark.parametrize(
    "name, codec_args",
    [
        ("mic.webm", ["-c:a", "libopus", "-ar", "48000", "-ac", "2"]),  # Chrome/Firefox MediaRecorder
        ("song.mp3", ["-c:a", "libmp3lame", "-ar", "44100", "-ac", "2"]),
        ("clip.ogg", ["-c:a", "libvorbis", "-ar", "48000", "-ac", "2"]),
        ("memo.m4a", ["-c:a", "aac", "-ar", "44100", "-ac", "2"]),  # Safari, phone voice memos
        ("phone.wav", ["-c:a", "pcm_s16le", "-ar", "8000", "-ac", "1"]),
        ("cd.wav", ["-c:a", "pcm_s16le", "-ar", "44100", "-ac", "2"]),
        ("video.wav", ["-c:a", "pcm_f32le", "-ar", "48000", "-ac", "2"]),
    ],
)
def test_common_formats_decode_to_the_same_speech(tmp_path, reference, name, codec_args):
    path = tmp_path / name
    ffmpeg("-i", str(JFK), *codec_args, str(path))

    audio = load_audio(path, max_seconds=60)

    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SAMPLE_RATE - JFK_SECONDS) < 0.06  # codec padding at most
    n = min(len(audio), len(reference)) // 320 * 320
    correlation = np.corrcoef(envelope(audio[:n]), envelope(reference[:n]))[0, 1]
    assert correlation > 0.95, f"{name}: not the same speech (envelope correlation {correlation:.2f})"


def test_bytes_and_path_give_the_same_samples(reference):
    assert np.array_equal(load_audio(JFK.read_bytes(), max_seconds=60), reference)


@settings(max_examples=25, deadline=None)
@given(
    rate=st.sampled_from([8000, 11025, 16000, 22050, 32000, 44100, 48000, 96000]),
    channels=st.integers(1, 6),
    seconds=st.floats(0.25, 3.0),  # shorter is refused: MIN_SECONDS
    subtype=st.sampled_from(["PCM_16", "PCM_24", "FLOAT"]),
)
def test_any_rate_and_channel_count_keeps_duration_and_pitch(rate, channels, seconds, subtype):
    n = int(rate * seconds)
    tone = 0.5 * np.sin(2 * np.pi * 440.0 * np.arange(n) / rate)
    buffer = io.BytesIO()
    sf.write(buffer, np.repeat(tone[:, None], channels, axis=1), rate, format="WAV", subtype=subtype)

    audio = load_audio(buffer.getvalue(), max_seconds=10)

    assert abs(len(audio) - seconds * SAMPLE_RATE) <= 0.002 * SAMPLE_RATE
    spectrum = np.abs(np.fft.rfft(audio))
    peak_hz = np.argmax(spectrum) * SAMPLE_RATE / len(audio)
    assert abs(peak_hz - 440.0) <= max(2 * SAMPLE_RATE / len(audio), 5.0)


# --- what is refused, and how ---


def test_empty_bytes_empty_file_and_soundless_wav_are_refused(tmp_path):
    empty = tmp_path / "empty.webm"
    empty.write_bytes(b"")
    no_frames = io.BytesIO()
    sf.write(no_frames, np.zeros((0, 2)), 44100, format="WAV")
    for source in (b"", empty, no_frames.getvalue()):
        with pytest.raises(InputError, match="empty"):
            load_audio(source, max_seconds=60)


@pytest.mark.parametrize(
    "data",
    [
        b"this is not audio, just text\n" * 100,
        bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8)),
        JFK.read_bytes()[:300],  # a cut-off download: FLAC header without frames
    ],
    ids=["text", "random-bytes", "truncated-flac"],
)
def test_unreadable_files_get_a_clear_message(data):
    with pytest.raises(InputError, match="The file is not audio"):
        load_audio(data, max_seconds=60)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "gone.wav", max_seconds=60)


@needs_ffmpeg
def test_file_without_audio_track_is_refused(tmp_path):
    picture = tmp_path / "photo.png"
    ffmpeg("-f", "lavfi", "-i", "color=c=red:s=8x8", "-frames:v", "1", str(picture))
    with pytest.raises(InputError, match="not audio: it has no sound track"):
        load_audio(picture, max_seconds=60)


def test_three_hour_file_is_refused_from_its_header_fast(tmp_path):
    # A real, valid 3-hour 16 kHz WAV; the samples are a sparse hole in the file, so
    # it takes no disk, but decoding it would take 700 MB of float32.
    frames = SAMPLE_RATE * 3 * 3600
    data_bytes = frames * 2
    path = tmp_path / "lecture.wav"
    with path.open("wb") as f:
        f.write(b"RIFF" + struct.pack("<I", 36 + data_bytes) + b"WAVEfmt ")
        f.write(struct.pack("<IHHIIHH", 16, 1, 1, SAMPLE_RATE, SAMPLE_RATE * 2, 2, 16))
        f.write(b"data" + struct.pack("<I", data_bytes))
        f.truncate(44 + data_bytes)

    started = time.perf_counter()
    with pytest.raises(InputError, match=r"3\.0 hours long; the limit is 10 minutes"):
        load_audio(path, max_seconds=600)
    assert time.perf_counter() - started < 1.0


@needs_ffmpeg
def test_recording_without_declared_duration_stops_at_the_limit(tmp_path):
    # MediaRecorder streams WebM without a duration in the header, like ffmpeg to a pipe.
    webm = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(JFK), "-c:a", "libopus", "-f", "webm", "-"],
        check=True, capture_output=True,
    ).stdout
    assert len(load_audio(webm, max_seconds=60)) == pytest.approx(JFK_SECONDS * SAMPLE_RATE, abs=SAMPLE_RATE * 0.06)
    with pytest.raises(InputError, match="longer than the limit of 5 seconds"):
        load_audio(webm, max_seconds=5)


def test_clip_of_exactly_the_limit_is_accepted(reference):
    assert len(load_audio(JFK, max_seconds=JFK_SECONDS)) == len(reference)
    with pytest.raises(InputError, match="11 seconds long; the limit is 10 seconds"):
        load_audio(JFK, max_seconds=10)
