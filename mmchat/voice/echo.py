"""Is what the microphone hears the assistant's own voice coming back from the speakers?

    guard = EchoGuard()
    guard.played(chunk.samples, chunk.sample_rate)   # each TTS chunk sent to the page, in order
    ...
    if isinstance(event, SpeechStarted):             # from the first speech frame, not the pre-roll
        heard = detector.turn_audio()[event.start - detector.turn_start :]
        if not guard.is_echo(heard):
            stop_talking()                           # the person barged in
    guard.clear()                                    # playback stopped: nothing left to echo

The browser's echo cancellation removes most of the echo, not all: what is left comes
back delayed (buffering, the network, the room: 0-600 ms, more when the page starts
playing late), quieter, coloured by the speaker and the room, mixed with noise and
distorted by the canceller. Waveforms do not survive that (a filter or a residual
shifts every phase), but the short-time spectral envelope does: which bands are loud,
and when, is the same pattern, only scaled per band. So both sides become log band
energies every 10 ms, each band's mean over the compared stretch is taken out
(attenuation and colouring are a constant per band in the log domain), and the mic
stretch is correlated with every same-length stretch of the recent playback. A person
speaking over the echo still correlates with it (half of what is heard is echo), so at
the best lag the guard also asks how much of the mic's energy the playback cannot
account for; the score is the correlation less four times that share (see THRESHOLD).
Decide on 500 ms of the person's speech: on 300 ms, double talk passes for echo about
one time in eight (fewer frames to match, as many lags to match them at).

Playback is scheduled on a clock as it is sent: each chunk starts when the one before
it ends, or when it is sent if the page's queue had run dry. The page may start later
than we think, never earlier, so a mic stretch ending now is compared with what was
scheduled up to `max_delay` seconds before now. Older playback, and so playback that
ended more than `max_delay` ago, is forgotten: then nothing is echo.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from mmchat.media.audio import SAMPLE_RATE
from mmchat.media.resample import StreamResampler, to_mono_float

HOP = SAMPLE_RATE // 100  # 10 ms between frames: finer than the echo's smearing needs
WINDOW = 512  # 32 ms frames: a pitch period or more, so harmonics do not flicker the bands
_LOW_HZ, _HIGH_HZ, _BANDS = 150.0, 6000.0, 18
# Energy floor (per band, about -90 dB below full scale): digital silence in the
# playback must not become minus infinity, which would dominate every correlation.
_FLOOR = 1e-9


def _band_matrix() -> np.ndarray:
    """[bins, bands]: rfft power bins summed into log-spaced bands (speech's resolution)."""
    freqs = np.fft.rfftfreq(WINDOW, 1.0 / SAMPLE_RATE)
    edges = np.geomspace(_LOW_HZ, _HIGH_HZ, _BANDS + 1)
    matrix = np.zeros((len(freqs), _BANDS), np.float32)
    for band in range(_BANDS):
        matrix[(freqs >= edges[band]) & (freqs < edges[band + 1]), band] = 1.0
    return matrix


_BANDS_OF_BINS = _band_matrix()
_HANN = np.hanning(WINDOW).astype(np.float32)


def band_energies(audio: np.ndarray) -> np.ndarray:
    """[N] 16 kHz float32 -> [frames, bands] log10 band energies, one frame per HOP."""
    if len(audio) < WINDOW:
        return np.zeros((0, _BANDS), np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(audio, WINDOW)[::HOP]
    power = np.abs(np.fft.rfft(frames * _HANN, axis=1)) ** 2
    return np.log10(power.astype(np.float32) @ _BANDS_OF_BINS + _FLOOR)


@dataclass(frozen=True)
class EchoMatch:
    """How well a mic stretch is explained by the playback at the best lag (for logs, tests)."""

    correlation: float  # -1..1: the band-energy pattern's correlation with the playback
    unexplained: float  # 0..1: share of the mic's loud band-frames the playback cannot account for
    lag: float  # seconds from the stretch's end back to the matching playback's end

    @property
    def score(self) -> float:
        return self.correlation - UNEXPLAINED_WEIGHT * self.unexplained


NO_MATCH = EchoMatch(0.0, 0.0, float("nan"))  # nothing to compare with: unrelated

# Why these numbers. Measured on a grid of echo paths (espeak-ng and Piper voices; delays
# 50 ms-2.5 s; -15 dB; a room's tail, a small speaker's band-pass, a canceller's clipped,
# varying residual; noise at 20 dB SNR) against another voice alone and a person speaking
# over the echo, as loud, from their first word. The correlation alone puts echo at
# 0.5-0.9 and double talk at 0.4-0.8: half of double talk *is* echo. What tells them
# apart is mic energy the playback cannot account for (the person's voice where the
# playback is quiet), so that share costs four times its size. On 500 ms stretches echo
# then scores 0.42 or more in 95 % of cases (median 0.70), double talk 0.18 or less in
# 95 % (median -0.37), another voice at most 0.01: 0.3 sits in the gap, 0.12 from
# each side. On 300 ms the sides overlap (echo p5 0.32, double talk p95 0.44, a chance
# match of another voice up to 0.46: fewer frames, as many lags), so decide on 500 ms.
UNEXPLAINED_WEIGHT = 4.0
THRESHOLD = 0.3


class EchoGuard:
    """Remembers what was played; says whether mic audio is its echo. Thread-safe.

    `max_delay`: how late (seconds) the page may play what was sent, echo path included;
    also how long after playback ends its echo is still expected. `min_seconds`: mic
    stretches shorter than this have too few frames to match and are never echo.
    """

    def __init__(
        self,
        *,
        threshold: float = THRESHOLD,
        max_delay: float = 8.0,
        min_seconds: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = threshold
        self.max_delay = max_delay
        self.min_seconds = min_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> None:
        """Forget all playback (it was stopped: nothing more can come back)."""
        with self._lock:
            self._resampler = StreamResampler()
            self._pending = np.zeros(0, np.float32)  # 16 kHz samples not yet framed
            self._features = np.zeros((0, _BANDS), np.float32)
            self._times = np.zeros(0, np.float64)  # scheduled clock time of each frame's start
            self._end = -np.inf  # clock time the scheduled playback ends

    @property
    def playing_until(self) -> float:
        """Clock time the playback sent so far is expected to end (-inf: nothing sent)."""
        return self._end

    def played(self, samples: np.ndarray, sample_rate: int, *, at: float | None = None) -> None:
        """`samples` ([N] or [N, C], any rate) were sent at `at` (default now), to play after the rest."""
        now = self._clock() if at is None else at
        with self._lock:
            audio = self._resampler(samples, sample_rate)
            if now > self._end:
                # The page's queue ran dry: the last chunk's unframed tail played on its
                # own, not glued to this one.
                self._pending = np.zeros(0, np.float32)
            start = max(now, self._end)
            # Samples still pending (the previous chunk's tail) keep their place in the schedule.
            first = start - len(self._pending) / SAMPLE_RATE
            self._end = start + len(audio) / SAMPLE_RATE
            audio = np.concatenate([self._pending, audio])
            features = band_energies(audio)
            # Frames overlap: the next frame starts one hop after this one, so the last
            # WINDOW - HOP samples are needed again.
            used = len(features) * HOP
            self._pending = audio[used:].copy()
            times = first + np.arange(len(features)) * (HOP / SAMPLE_RATE)
            self._features = np.concatenate([self._features, features])
            self._times = np.concatenate([self._times, times])
            self._trim(now)

    def _trim(self, now: float) -> None:
        keep = self._times >= now - self.max_delay - 30.0  # a whole turn may be asked about
        if not keep.all():
            self._features, self._times = self._features[keep], self._times[keep]

    def match(self, mic: np.ndarray, *, now: float | None = None) -> EchoMatch:
        """The best match of `mic` (16 kHz, its last sample heard `now`) in recent playback."""
        now = self._clock() if now is None else now
        mic = to_mono_float(mic)
        duration = len(mic) / SAMPLE_RATE
        if duration < self.min_seconds:
            return NO_MATCH
        with self._lock:
            self._trim(now)
            # The stretch ended `now`; what it echoes was scheduled to play before that.
            window = (self._times >= now - duration - self.max_delay) & (self._times <= now)
            reference = self._features[window]
            times = self._times[window]
        heard = band_energies(mic)
        if len(heard) < 2 or len(reference) < len(heard):
            return NO_MATCH
        correlation, lag = _best_correlation(heard, reference)
        if lag < 0:
            return NO_MATCH
        share = _unexplained(heard, reference, lag)
        ref_end = times[lag + len(heard) - 1] + WINDOW / SAMPLE_RATE
        return EchoMatch(correlation, share, float(now - ref_end))

    def similarity(self, mic: np.ndarray, *, now: float | None = None) -> float:
        """`match(...).score`: `threshold` or more is echo (1 at best; 0 or less: unrelated)."""
        return self.match(mic, now=now).score

    def is_echo(self, mic: np.ndarray, *, now: float | None = None) -> bool:
        """True when `mic` is explained by what was played: not the person, do not barge in."""
        return self.similarity(mic, now=now) >= self.threshold


def _double_centred(features: np.ndarray) -> np.ndarray:
    # Taking out each frame's mean over bands drops the loudness contour, which all
    # speech shares (any voice's syllables correlate with any other's); what is left is
    # the spectral shape over time, the words and the voice. It also drops a gain that
    # changes over time, as an echo canceller's residual does.
    return features - features.mean(axis=1, keepdims=True)


def _best_correlation(heard: np.ndarray, reference: np.ndarray) -> tuple[float, int]:
    """Max over lags of the correlation of double-centred log energies, and its lag (-1: none)."""
    length = len(heard)
    heard, reference = _double_centred(heard), _double_centred(reference).astype(np.float64)
    h = heard - heard.mean(axis=0)  # the band means: attenuation and colouring
    h_norm = np.sqrt(np.sum(h * h))
    if h_norm == 0.0:
        return 0.0, -1  # digital silence: no pattern to recognise
    windows = np.lib.stride_tricks.sliding_window_view(reference, length, axis=0)  # [lags, bands, length]
    # h sums to zero per band, so each window's own band means drop out of the dot product.
    dots = np.einsum("lbt,tb->l", windows, h)
    # Each window's sum of squares about its band means, from running sums.
    zero = np.zeros((1, reference.shape[1]))
    c1 = np.concatenate([zero, np.cumsum(reference, axis=0)])
    c2 = np.concatenate([zero, np.cumsum(reference**2, axis=0)])
    s1, s2 = c1[length:] - c1[:-length], c2[length:] - c2[:-length]
    energy = np.sum(s2 - s1 * s1 / length, axis=1)
    # A window with (almost) no pattern of its own, silence in the playback, explains nothing.
    valid = energy > 1e-3 * h_norm**2
    if not valid.any():
        return 0.0, -1
    scores = np.where(valid, dots / (h_norm * np.sqrt(np.where(valid, energy, 1.0))), -1.0)
    lag = int(scores.argmax())
    return float(scores[lag]), lag


# In log10 units: bands within 20 dB of their loudest frame set the echo's gain; energy
# 6 dB over the predicted echo is unexplained; only the mic's loudest 25 dB is counted
# (below that is noise the prediction's noise floor covers anyway).
_GAIN_RANGE, _FAR, _LOUD_RANGE = 2.0, 0.6, 2.5
# The predicted echo decays at most this much per 10 ms frame (about 0.6 s to -60 dB): a
# room's reverberation and the loudspeaker ring on after the playback falls quiet.
_TAIL = 0.8
_SLACK = 2


def _unexplained(heard: np.ndarray, reference: np.ndarray, lag: int) -> float:
    """Share of the mic's loud band-frames far above the playback's prediction (plus noise)."""
    length = len(heard)
    # The best lag is only good to a few frames (a room's tail pulls it late), so each
    # frame's prediction is the loudest playback within _SLACK frames of it.
    padded = np.pad(reference, ((_SLACK, _SLACK), (0, 0)), mode="edge")[lag : lag + length + 2 * _SLACK]
    window = padded[_SLACK : _SLACK + length]
    loud_ref = window > window.max(axis=0) - _GAIN_RANGE
    # The median of mic over playback where the playback is loud: a person speaking as
    # well lifts some of those frames, not the median.
    gain = np.array([np.median(heard[loud_ref[:, b], b] - window[loud_ref[:, b], b]) for b in range(window.shape[1])])
    nearby = np.max(np.lib.stride_tricks.sliding_window_view(padded, 2 * _SLACK + 1, axis=0), axis=2)
    echo = 10.0 ** (nearby.astype(np.float64) + gain)
    for t in range(1, len(echo)):
        echo[t] = np.maximum(echo[t], _TAIL * echo[t - 1])
    # The noise floor: each band's mean power over its quietest fifth of frames. A mean,
    # not a low percentile: a band of one or two FFT bins swings 8 dB over its low
    # percentiles in plain noise, which would count as unexplained.
    power = 10.0 ** heard.astype(np.float64)
    quiet = np.sort(power, axis=0)[: max(len(power) // 5, 1)]
    noise = quiet.mean(axis=0)
    predicted = np.log10(echo + noise)
    loud = heard > heard.max() - _LOUD_RANGE
    far = heard - predicted > _FAR
    return float(np.sum(far & loud) / max(int(np.sum(loud)), 1))
