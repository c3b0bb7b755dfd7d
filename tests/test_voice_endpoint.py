"""End of turn on a live microphone stream: real Silero VAD, speech made by espeak-ng,
fed as a browser sends it (48 kHz, 100 ms chunks), turns transcribed by the bundled
Whisper tiny.en. All timing is stream time (samples fed), never the wall clock."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import jiwer
import numpy as np
import pytest

from mmchat.media.audio import SAMPLE_RATE, load_audio
from mmchat.config import Config, parse_config
from mmchat.stt import create_speech_to_text
from mmchat.voice import EndpointDetector, EndpointSettings, FalseStart, SpeechStarted, TurnEnded
from mmchat.voice.endpoint import FRAME
from mmchat.voice.hold import TrailingWordHold, ends_mid_thought
from speech import speech_maker

pytestmark = pytest.mark.skipif(
    not (shutil.which("espeak-ng") and shutil.which("sox")), reason="espeak-ng and sox make the test speech"
)

MIC_RATE = 48_000
CHUNK = MIC_RATE // 10  # 100 ms, as Gradio's stream_every=0.1 sends it
JFK = Path(__file__).parent / "data" / "jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
# Sentences Whisper tiny.en hears right in espeak-ng's voice when given whole (it
# mishears many others, "What am I holding" among them, with or without this detector).
QUESTION = "What color is the shape?"


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(_words(reference), _words(hypothesis))


@pytest.fixture(scope="module")
def say(tmp_path_factory):
    """Text -> espeak-ng speech at 48 kHz, trimmed to the voice (so its onset is known)."""
    return speech_maker(tmp_path_factory.mktemp("speech"), MIC_RATE)


@pytest.fixture(scope="module")
def tiny_en():
    return create_speech_to_text(Config(speech_language="en", device="cpu"))


def silence(seconds: float, rate: int = MIC_RATE) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


def feed(audio: np.ndarray, detector: EndpointDetector | None = None, *, rate: int = MIC_RATE,
         chunk: int = CHUNK) -> tuple[list, list[int]]:
    """Every event, and for each the index of the chunk that produced it."""
    detector = detector or EndpointDetector()
    events, chunks = [], []
    for index, offset in enumerate(range(0, len(audio), chunk)):
        for event in detector.feed(audio[offset : offset + chunk], rate):
            events.append(event)
            chunks.append(index)
    return events, chunks


def to_16k(seconds: float) -> int:
    return int(seconds * SAMPLE_RATE)


def test_one_question_is_one_turn_whose_audio_gives_the_words(say, tiny_en):
    question = say(QUESTION)
    stream = np.concatenate([silence(1.0), question, silence(2.0)])
    events, chunks = feed(stream)

    assert [type(e) for e in events] == [SpeechStarted, TurnEnded]
    started, ended = events
    # Barge-in acts on SpeechStarted: it must come within a few chunks of the voice.
    onset_chunk = MIC_RATE * 1.0 // CHUNK
    assert 0 <= chunks[0] - onset_chunk <= 3
    assert abs(started.start - to_16k(1.0)) <= 2 * FRAME
    # The turn holds the whole question, with a little room before it.
    assert ended.reason == "silence"
    assert ended.start < to_16k(1.0) <= ended.start + to_16k(0.4)
    assert ended.audio.dtype == np.float32 and len(ended.audio) >= to_16k(len(question) / MIC_RATE)
    transcript = tiny_en.transcribe(ended.audio, language="en")
    assert wer(QUESTION, transcript.text) <= 0.2, transcript.text


def test_two_questions_with_a_pause_are_two_turns(say, tiny_en):
    first, second = QUESTION, "Is the light red or green?"
    stream = np.concatenate([silence(0.5), say(first), silence(2.0), say(second), silence(1.5)])
    events, _ = feed(stream)

    assert [type(e) for e in events] == [SpeechStarted, TurnEnded] * 2
    turns = [e for e in events if isinstance(e, TurnEnded)]
    assert turns[0].at < turns[1].start
    for said, turn in zip((first, second), turns):
        assert wer(said, tiny_en.transcribe(turn.audio, language="en").text) <= 0.25


def test_a_short_pause_mid_sentence_does_not_cut_the_person_off(say, tiny_en):
    stream = np.concatenate([silence(0.5), say("Look at the cup"), silence(0.3), say("and the plate."),
                             silence(1.5)])
    events, _ = feed(stream)

    assert [type(e) for e in events] == [SpeechStarted, TurnEnded]
    text = tiny_en.transcribe(events[1].audio, language="en").text
    assert wer("Look at the cup and the plate.", text) <= 0.25, text


def _pink_noise(seconds: float, rng: np.random.Generator) -> np.ndarray:
    white = np.fft.rfft(rng.standard_normal(int(seconds * MIC_RATE)))
    freqs = np.fft.rfftfreq(int(seconds * MIC_RATE))
    white[1:] /= np.sqrt(freqs[1:])  # 1/f power
    white[0] = 0
    pink = np.fft.irfft(white, n=int(seconds * MIC_RATE))
    return (0.1 * pink / pink.std()).astype(np.float32)


def _tones(seconds: float) -> np.ndarray:
    """A melody of chords with harmonics, half a second a note: music, not speech."""
    t = np.arange(int(0.5 * MIC_RATE)) / MIC_RATE
    notes = (220.0, 262.0, 330.0, 392.0, 440.0, 523.0, 294.0, 349.0)
    envelope = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.02)  # no clicks between notes
    bars = [
        envelope * sum(a * np.sin(2 * np.pi * f * k * t) for f in (n, n * 1.25) for k, a in ((1, 0.15), (2, 0.06), (3, 0.03)))
        for n in notes
    ]
    melody = np.concatenate(bars * int(np.ceil(seconds / (0.5 * len(notes)))))
    return melody[: int(seconds * MIC_RATE)].astype(np.float32)


@pytest.mark.parametrize("kind", ["silence", "pink-noise", "tones"])
def test_a_minute_without_speech_makes_no_turn_and_no_barge_in(kind):
    rng = np.random.default_rng(0)
    stream = {"silence": lambda: silence(60.0), "pink-noise": lambda: _pink_noise(60.0, rng),
              "tones": lambda: _tones(60.0)}[kind]()
    detector = EndpointDetector()
    events, _ = feed(stream, detector)
    assert events + detector.flush() == []
    assert detector.position == to_16k(60.0) // FRAME * FRAME  # the whole minute was scored


@pytest.mark.parametrize("end_of_turn_ms", [300, 600, 1200])
def test_the_end_of_turn_setting_is_when_the_turn_ends(say, end_of_turn_ms):
    stream = np.concatenate([silence(0.5), say(QUESTION), silence(2.0)])
    events, _ = feed(stream, EndpointDetector(EndpointSettings(end_of_turn_ms=end_of_turn_ms)))

    ended = events[-1]
    assert isinstance(ended, TurnEnded)
    # The voice stops at 0.5 s + the question; Silero's decision may lag it by a frame or two.
    voice_end = to_16k(0.5 + len(say(QUESTION)) / MIC_RATE)
    assert abs(ended.speech_end - voice_end) <= 4 * FRAME
    assert to_16k(end_of_turn_ms / 1000) <= ended.at - ended.speech_end < to_16k(end_of_turn_ms / 1000) + FRAME


def test_the_default_is_the_configured_600_ms():
    config = parse_config([], environ={})
    settings = EndpointSettings.from_config(config)
    assert (settings.end_of_turn_ms, settings.threshold, settings.min_speech_ms, settings.max_turn_seconds) == (
        600, 0.5, 250, 30.0
    )
    assert EndpointSettings.from_config(
        parse_config(["--end-of-turn-ms", "900", "--voice-sensitivity", "0.7"], environ={})
    ) == EndpointSettings(end_of_turn_ms=900, threshold=0.7)


def test_a_click_or_a_cough_is_no_turn(say):
    click = np.zeros(MIC_RATE // 100, np.float32)
    click[::7] = 0.9
    burst = say(QUESTION)[: MIC_RATE // 8]  # 125 ms of voice: shorter than a word
    stream = np.concatenate([silence(1.0), click, silence(1.5), burst, silence(1.5)])
    events, _ = feed(stream)
    assert not any(isinstance(e, TurnEnded) for e in events)
    # If the burst was announced, it is taken back so the page returns to "listening".
    starts = [e for e in events if isinstance(e, SpeechStarted)]
    assert [type(e) for e in events] == [SpeechStarted, FalseStart] * len(starts)


def test_jfk_at_16khz_in_20ms_chunks(tiny_en):
    jfk = load_audio(JFK, max_seconds=60)
    events, _ = feed(np.concatenate([jfk, silence(1.0, SAMPLE_RATE)]), rate=SAMPLE_RATE, chunk=SAMPLE_RATE // 50)

    turns = [e for e in events if isinstance(e, TurnEnded)]
    assert 1 <= len(turns) <= 3  # his long pauses may end a turn; no words may be lost between them
    assert [type(e) for e in events] == [SpeechStarted, TurnEnded] * len(turns)
    text = " ".join(tiny_en.transcribe(t.audio, language="en").text for t in turns)
    assert wer(JFK_TEXT, text) <= 0.15, text


def test_chunk_size_and_sample_format_do_not_change_the_decisions(say):
    stream = np.concatenate([silence(0.7), say(QUESTION), silence(1.0)])
    reference, _ = feed(stream, chunk=CHUNK)
    as_int16_stereo = np.repeat((stream * 32767).astype(np.int16)[:, None], 2, axis=1)  # what Gradio sends
    for chunk, audio in ((MIC_RATE // 50, stream), (MIC_RATE // 2, stream), (CHUNK, as_int16_stereo)):
        events, _ = feed(audio, chunk=chunk)
        assert [type(e) for e in events] == [type(e) for e in reference]
        for got, want in zip(events, reference):
            assert abs(got.at - want.at) <= FRAME and abs(got.start - want.start) <= FRAME


def test_a_turn_longer_than_the_limit_ends_mid_speech():
    jfk = load_audio(JFK, max_seconds=60)
    detector = EndpointDetector(EndpointSettings(max_turn_seconds=3.0))
    events, _ = feed(jfk, detector, rate=SAMPLE_RATE, chunk=SAMPLE_RATE // 10)
    events += detector.flush()

    turns = [e for e in events if isinstance(e, TurnEnded)]
    assert "max_length" in [t.reason for t in turns]
    started = {e.start: e for e in events if isinstance(e, SpeechStarted)}
    for turn in turns:
        speech_start = min(s for s in started if s >= turn.start)
        assert turn.at - speech_start <= to_16k(3.0) + FRAME
    assert turns[-1].reason in ("silence", "stream_end")


def test_stream_end_ends_a_turn_in_progress(say):
    detector = EndpointDetector()
    events, _ = feed(np.concatenate([silence(0.5), say(QUESTION)]), detector)
    assert [type(e) for e in events] == [SpeechStarted]
    tail = detector.flush()
    assert [type(e) for e in tail] == [TurnEnded] and tail[0].reason == "stream_end"
    assert detector.flush() == []


def test_a_trailing_and_makes_the_detector_wait_longer(say, tiny_en):
    # tiny.en drops a trailing "and" from some sentences; from this one it never did.
    first, rest = "Tell me what you see and", "what color the shape is."
    stream = np.concatenate([silence(0.5), say(first), silence(0.9), say(rest), silence(2.0)])
    without, _ = feed(stream)
    assert [type(e) for e in without] == [SpeechStarted, TurnEnded] * 2  # 900 ms: cut off after "and"

    hold = TrailingWordHold(tiny_en)
    held, _ = feed(stream, EndpointDetector(hold=hold))
    assert [type(e) for e in held] == [SpeechStarted, TurnEnded]
    text = tiny_en.transcribe(held[1].audio, language="en").text
    assert wer(f"{first} {rest}", text) <= 0.25, text
    assert not ends_mid_thought(hold.last_text), hold.last_text  # the final pause was asked too


def test_a_held_pause_waits_hold_ms_more_and_is_asked_once(say):
    asked: list[int] = []

    def always(audio: np.ndarray) -> bool:
        asked.append(len(audio))
        return True

    question = say(QUESTION)
    settings = EndpointSettings(end_of_turn_ms=600, hold_ms=700)
    events, _ = feed(np.concatenate([silence(0.5), question, silence(3.0)]), EndpointDetector(settings, hold=always))
    ended = events[-1]
    assert [type(e) for e in events] == [SpeechStarted, TurnEnded]
    assert len(asked) == 1  # one question per pause, however long the pause goes on
    # It was given the speech so far, not the silence after it.
    assert asked[0] <= len(ended.audio) and asked[0] >= to_16k(len(question) / MIC_RATE)
    assert to_16k(1.3) <= ended.at - ended.speech_end < to_16k(1.3) + FRAME


@pytest.mark.parametrize("text, unfinished", [
    ("What color is the shape and", True), ("Is it red, um", True), ("Tell me because...", True),
    ("Look at the", True), ("我想知道这个然后", True), ("What color is the shape?", False), ("", False),
    ("The sand", False),
])
def test_what_counts_as_unfinished(text, unfinished):
    assert ends_mid_thought(text) is unfinished


def test_reset_forgets_a_turn_under_way(say):
    detector = EndpointDetector()
    events, _ = feed(np.concatenate([silence(0.5), say(QUESTION)]), detector)
    assert [type(e) for e in events] == [SpeechStarted]
    detector.reset()  # e.g. what was heard was the assistant's own voice
    after, _ = feed(silence(2.0), detector)
    assert after == [] and detector.flush() == []


@pytest.mark.parametrize("rate", [44_100, 48_000, 8_000])
def test_any_rate_in_uneven_chunks_becomes_16khz_without_losing_samples(rate):
    from mmchat.media.resample import StreamResampler

    t = np.arange(2 * rate) / rate
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    resample = StreamResampler()
    cuts = np.cumsum(np.random.default_rng(0).integers(rate // 50, rate // 2, size=20))
    pieces = [resample(piece, rate) for piece in np.split(tone, cuts[cuts < len(tone)])]
    out = np.concatenate(pieces + [resample.flush()])
    assert abs(len(out) - 2 * SAMPLE_RATE) <= 32
    spectrum = np.abs(np.fft.rfft(out[1000:-1000]))
    peak = np.fft.rfftfreq(len(out) - 2000, 1 / SAMPLE_RATE)[spectrum.argmax()]
    assert abs(peak - 440.0) < 2.0


def test_settings_are_checked():
    with pytest.raises(ValueError, match="threshold"):
        EndpointSettings(threshold=1.5)
    with pytest.raises(ValueError, match="positive"):
        EndpointSettings(end_of_turn_ms=0)


# --- streaming recognition ---


def test_streaming_transcript_of_a_long_turn_matches_the_whole_and_leaves_only_the_tail(tiny_en):
    from mmchat.voice.streaming import StreamingTranscriber

    jfk = load_audio(JFK, max_seconds=60)
    # JFK's long pauses are turns of their own at 600 ms; a patient setting keeps one turn
    # whose inner pauses the transcriber can settle at.
    detector = EndpointDetector(EndpointSettings(end_of_turn_ms=2000))
    stream = StreamingTranscriber(tiny_en, language="en")
    texts, turns = [], []
    audio = np.concatenate([silence(0.5, SAMPLE_RATE), jfk, silence(2.5, SAMPLE_RATE)])
    for offset in range(0, len(audio), SAMPLE_RATE // 10):
        for event in detector.feed(audio[offset : offset + SAMPLE_RATE // 10], SAMPLE_RATE):
            if isinstance(event, TurnEnded):
                turns.append(event)
                texts.append(stream.finish(event))
        stream.update(detector)

    assert len(turns) == 1
    transcript, texts = texts[0], [texts[0].text]
    assert transcript.language == "en" and transcript.duration == len(turns[0].audio) / SAMPLE_RATE
    starts = [s for s, _, _ in transcript.segments]
    assert starts == sorted(starts) and transcript.segments[-1][1] <= transcript.duration + 0.5
    whole = tiny_en.transcribe(turns[0].audio, language="en").text
    assert wer(JFK_TEXT, texts[0]) <= max(0.15, wer(JFK_TEXT, whole) + 0.05), (texts[0], whole)
    # Most of the turn was done while he spoke; only the last stretch was left.
    assert 0 < stream.remainder_samples < len(turns[0].audio) / 2


def test_streaming_a_short_turn_is_one_whole_transcription(say, tiny_en):
    from mmchat.voice.streaming import StreamingTranscriber

    detector, stream = EndpointDetector(), StreamingTranscriber(tiny_en, language="en")
    stream_audio = np.concatenate([silence(0.5), say(QUESTION), silence(1.5)])
    texts = []
    for offset in range(0, len(stream_audio), CHUNK):
        for event in detector.feed(stream_audio[offset : offset + CHUNK], MIC_RATE):
            if isinstance(event, TurnEnded):
                texts.append(stream.finish(event).text)
                assert stream.remainder_samples == len(event.audio)  # too short to settle any of it
        stream.update(detector)
    assert len(texts) == 1 and wer(QUESTION, texts[0]) <= 0.2, texts


def test_a_cancelled_turn_leaves_the_tail_undone(tiny_en):
    from mmchat.cancel import CancelToken
    from mmchat.voice.streaming import StreamingTranscriber

    class Counting:
        """The real tiny.en, counting the audio it is given."""

        name, multilingual = tiny_en.name, tiny_en.multilingual

        def __init__(self):
            self.finishing = False
            self.live_calls_while_finishing = 0  # Whisper work that Stop should have spared

        def transcribe(self, audio, **options):
            if self.finishing and not options["cancel"].cancelled:
                self.live_calls_while_finishing += 1
            return tiny_en.transcribe(audio, **options)

    jfk = load_audio(JFK, max_seconds=60)
    stt = Counting()
    detector = EndpointDetector(EndpointSettings(end_of_turn_ms=2000))
    stream = StreamingTranscriber(stt, language="en")
    cancel = CancelToken.standalone()
    cancel.cancel()  # Stop pressed as the turn ended
    done = []
    audio = np.concatenate([jfk, silence(2.5, SAMPLE_RATE)])
    for offset in range(0, len(audio), SAMPLE_RATE // 10):
        for event in detector.feed(audio[offset : offset + SAMPLE_RATE // 10], SAMPLE_RATE):
            if isinstance(event, TurnEnded):
                stt.finishing = True
                done.append(stream.finish(event, cancel))
        stream.update(detector)
    # Neither the tail nor pieces still queued in the background were worked on.
    assert len(done) == 1 and stt.live_calls_while_finishing == 0
    assert stream.remainder_samples > 0


class RecordingBeams:
    """The real tiny.en, noting the beam each call asks for and how much audio it gets."""

    def __init__(self, stt):
        self._stt, self.name, self.multilingual = stt, stt.name, stt.multilingual
        self.calls: list[tuple[int | None, int]] = []

    def transcribe(self, audio, **options):
        self.calls.append((options.get("beam_size"), len(audio)))
        return self._stt.transcribe(audio, **options)


def test_the_hold_decodes_greedily(say, tiny_en):
    stt = RecordingBeams(tiny_en)
    hold = TrailingWordHold(stt)
    stream = np.concatenate([silence(0.5), say("Tell me what you see and"), silence(0.9),
                             say("what color the shape is."), silence(2.0)])
    held, _ = feed(stream, EndpointDetector(hold=hold))
    assert [type(e) for e in held] == [SpeechStarted, TurnEnded]
    assert stt.calls and {beam for beam, _ in stt.calls} == {1}, stt.calls


def test_streaming_pieces_and_the_remainder_use_their_own_beams(tiny_en):
    from mmchat.voice.streaming import StreamingTranscriber

    stt = RecordingBeams(tiny_en)
    detector = EndpointDetector(EndpointSettings(end_of_turn_ms=2000))
    stream = StreamingTranscriber(stt, language="en", piece_beam_size=5, final_beam_size=1)
    audio = np.concatenate([silence(0.5, SAMPLE_RATE), load_audio(JFK, max_seconds=60), silence(2.5, SAMPLE_RATE)])
    texts = []
    for offset in range(0, len(audio), SAMPLE_RATE // 10):
        for event in detector.feed(audio[offset : offset + SAMPLE_RATE // 10], SAMPLE_RATE):
            if isinstance(event, TurnEnded):
                texts.append(stream.finish(event).text)
        stream.update(detector)

    assert len(texts) == 1 and wer(JFK_TEXT, texts[0]) <= 0.15, texts
    *pieces, (final_beam, final_samples) = stt.calls
    assert pieces and {beam for beam, _ in pieces} == {5}, stt.calls
    assert final_beam == 1 and final_samples == stream.remainder_samples
