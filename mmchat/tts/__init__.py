"""Speech out: answers spoken sentence by sentence, interruptible.

Four pieces, each usable alone:
- `SentenceSplitter` (splitter.py) cuts the streamed reply into sentences as soon as
  each is certain to be complete;
- `to_speakable` (speakable.py) turns one of them from markdown into words
  (`SpeakableSentences` is the two together: deltas in, speakable sentences out);
- a `TextToSpeech` (Piper by default, Coqui optionally) turns sentences into
  `AudioChunk`s, lazily, stopping as soon as the turn's cancel token is cancelled;
- a `SpeechWorker` (worker.py) runs the three on a thread of its own.

How a turn loop uses them: the worker splits, cleans and speaks on its thread, so
the text is shown as it comes and never waits for the voice; each sentence's audio
is handed over once it exists::

    tts = create_text_to_speech(config)          # cached: cheap after the first call
    speaker = SpeechWorker(tts, cancel, emit=audio_queue.put)
    try:
        for piece in engine.stream(messages, params, cancel):
            if isinstance(piece, str):            # the last item is the engine's Completion
                speaker.feed(piece)               # never blocks
                yield TextDelta(piece)
        speaker.finish()                          # the last, unfinished sentence too
        ...                                       # AudioChunks arrive on audio_queue
    finally:
        speaker.close()                           # Stop: ends within one sentence

Alone, `tts.stream(sentences, cancel)` speaks any iterable of sentences lazily, on
the caller's thread.
"""

from mmchat.tts.factory import create_text_to_speech
from mmchat.tts.protocol import TextToSpeech
from mmchat.tts.speakable import SpeakableSentences, to_speakable
from mmchat.tts.splitter import SentenceSplitter
from mmchat.tts.worker import SpeechWorker

__all__ = [
    "SentenceSplitter",
    "SpeakableSentences",
    "SpeechWorker",
    "TextToSpeech",
    "create_text_to_speech",
    "to_speakable",
]
