"""Live microphone chunks at any rate and layout -> 16 kHz mono float32, in order.

Browsers record at 48 kHz (sometimes 44.1 kHz), Gradio hands chunks over as int16,
often [N, channels]. PyAV's resampler (FFmpeg's swresample, already here for
`mmchat.media.audio`) keeps its filter state between chunks, so chunk edges leave no clicks
and no samples are lost however the stream is cut.
"""

from __future__ import annotations

import av
import numpy as np

from mmchat.media.audio import SAMPLE_RATE


def to_mono_float(samples: np.ndarray) -> np.ndarray:
    """[N] or [N, C] int16/int32/float -> [N] float32 in -1..1."""
    samples = np.asarray(samples)
    if samples.ndim not in (1, 2):
        raise ValueError(f"audio chunk must be [N] or [N, channels], got shape {samples.shape}")
    if samples.dtype.kind == "i":
        samples = samples / float(np.iinfo(samples.dtype).max + 1)
    samples = samples.astype(np.float32, copy=False)
    if samples.ndim == 2:
        # Averaged here, not by the resampler: FFmpeg's down-mix adds channels at -3 dB
        # each, which lifts centred speech above full scale (see mmchat.media.audio).
        samples = samples.mean(axis=1, dtype=np.float32)
    return samples


class StreamResampler:
    """Feed chunks at one rate, get 16 kHz back; a new rate starts a new filter."""

    def __init__(self) -> None:
        self._rate: int | None = None
        self._resampler: av.AudioResampler | None = None

    def __call__(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        audio = to_mono_float(samples)
        if sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {sample_rate}")
        if sample_rate == SAMPLE_RATE and self._resampler is None:
            return audio
        pieces = []
        if sample_rate != self._rate:
            pieces.append(self.flush())
            self._rate = sample_rate
            self._resampler = (
                None if sample_rate == SAMPLE_RATE
                else av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            )
        if self._resampler is None:
            pieces.append(audio)
        elif audio.size:
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(audio)[None, :], format="flt", layout="mono")
            frame.sample_rate = sample_rate
            frame.pts = None  # chunk timing is ours to keep; the filter only needs order
            pieces.extend(out.to_ndarray()[0] for out in self._resampler.resample(frame))
        return np.concatenate(pieces) if pieces else np.zeros(0, np.float32)

    def flush(self) -> np.ndarray:
        """The few samples the filter still holds back (end of stream, or a new rate)."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        tail = [out.to_ndarray()[0] for out in self._resampler.resample(None)]
        self._resampler, self._rate = None, None
        return np.concatenate(tail).astype(np.float32) if tail else np.zeros(0, np.float32)
