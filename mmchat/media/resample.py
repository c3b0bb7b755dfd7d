"""The project's one resampler: audio at any rate and layout -> mono float32 at a target rate.

Used for recordings as they are decoded (media/audio.py), the live microphone (voice/),
a voice in another language whose rate differs from the main voice's (tts/), and the
API's raw PCM output. PyAV's resampler (FFmpeg's swresample) keeps its filter state
between chunks, so chunk edges leave no clicks and no samples are lost however a stream
is cut.

Channels are averaged here, before resampling, never by FFmpeg: its stereo-to-mono matrix
adds both sides at -3 dB each, which lifts centred speech above full scale.
"""

from __future__ import annotations

import av
import numpy as np

SAMPLE_RATE = 16_000  # what Whisper and the voice activity detector take


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """[N] or [N, C] int16/int32/uint8/float -> [N] float32 in -1..1."""
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio chunk must be [N] or [N, channels], got shape {samples.shape}")
    if samples.dtype.kind == "i":
        samples = samples / float(np.iinfo(samples.dtype).max + 1)
    elif samples.dtype.kind == "u":  # 8-bit PCM: silence is the middle value
        half = float(np.iinfo(samples.dtype).max + 1) / 2
        samples = (samples - half) / half
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return samples


def frame_samples(frame: av.AudioFrame) -> np.ndarray:
    """A decoded frame's samples as [N, C] (planar or packed, any sample format)."""
    array = frame.to_ndarray()
    channels = len(frame.layout.channels)
    if frame.format.is_planar:
        return array.T  # [C, N] -> [N, C]
    return array.reshape(-1, channels)  # [1, N * C] interleaved -> [N, C]


class StreamResampler:
    """Feed chunks at one rate, get `target` Hz mono back; a new rate starts a new filter."""

    def __init__(self, target: int = SAMPLE_RATE) -> None:
        self.target = target
        self._rate: int | None = None
        self._resampler: av.AudioResampler | None = None

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = to_mono_float(samples)
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        if sample_rate == self.target and self._resampler is None:
            return audio
        pieces = []
        if sample_rate != self._rate:
            pieces.append(self.flush())
            self._rate = sample_rate
            self._resampler = (
                None if sample_rate == self.target
                else av.AudioResampler(format="flt", layout="mono", rate=self.target)
            )
        if self._resampler is None:
            pieces.append(audio)
        elif audio.size:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio)[None, :], format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = None  # chunk timing is ours to keep; the filter only needs order
            pieces.extend(out.to_ndarray()[0] for out in self._resampler.resample(frame))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def frame(self, frame: av.AudioFrame) -> np.ndarray:
        """A frame as a decoder gave it, resampled (its own rate, any layout)."""
        return self(frame_samples(frame), frame.sample_rate)

    def flush(self) -> np.ndarray:
        """The few samples the filter still holds back (end of stream, or a new rate)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = [out.to_ndarray()[0] for out in self._resampler.resample(None)]
        self._resampler, self._rate = None, None
        return np.concatenate(tail).astype(np.float32) if tail else np.zeros(0, np.float32)


def resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    """A whole clip at `rate` as mono float32 at `target` Hz."""
    resampler = StreamResampler(target)
    return np.concatenate([resampler(samples, rate), resampler.flush()]).astype(np.float32, copy=False)
