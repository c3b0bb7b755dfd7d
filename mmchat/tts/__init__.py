"""Speech out: answers spoken sentence by sentence, interruptible.

Three pieces, each usable alone:
- `SentenceSplitter` (splitter.py) cuts the streamed reply into sentences as soon as
  each is certain to be complete;
- `to_speakable` (speakable.py) turns one of them from markdown into words
  (`SpeakableSentences` is the two together: deltas in, speakable sentences out);
- a `TextToSpeech` (Piper by default, Coqui optionally) turns sentences into
  `AudioChunk`s, lazily, stopping as soon as the turn's cancel token is cancelled.

How a turn loop uses them, keeping its own pacing (text is shown as it comes; each
sentence is spoken once complete)::

    tts = create_text_to_speech(config)          # cached: cheap after the first call
    sentences = SpeakableSentences()
    for delta in engine.stream(conversation, params, cancel):
        yield TextDelta(delta)
        for chunk in tts.stream(sentences.feed(delta), cancel):
            yield chunk                           # AudioChunk(samples, sample_rate, text)
    for chunk in tts.stream(sentences.flush(), cancel):
        yield chunk

`tts.stream` also takes a lazy iterable, so a loop that runs speech in its own thread
can hand it one generator of sentences and let it pull them as the model writes.
"""

from mmchat.tts.factory import create_text_to_speech
from mmchat.tts.protocol import TextToSpeech
from mmchat.tts.speakable import SpeakableSentences, to_speakable
from mmchat.tts.splitter import SentenceSplitter

__all__ = [
    "SentenceSplitter",
    "SpeakableSentences",
    "TextToSpeech",
    "create_text_to_speech",
    "to_speakable",
]
