"""The turn layer: one turn of a conversation as a stream of typed events.

    input (text, photos, speech?) -> checks -> STT? -> Conversation -> admission -> Engine.stream
                                                          -> text deltas -> (SpeechWorker -> audio chunks)

- `pipeline.py`: the three kinds of turn (`submit`, `regenerate`, `edit_last`) and the answer;
  `show_version`, which of Regenerate's answers is the one shown.
- `inputs.py`: a turn's input checked and made into parts (text, photos, a recording).
- `generation.py`: the engine's side of an answer (the model, the prompt that fits, speech).
- `services.py`: what every session shares (models, limits, the admission line, the store).
- `session.py`, `admission.py`, `rate_limit.py`: one person's session, the one line of
  answers waiting for a place, each person's questions a minute.

The page, the voice mode and the HTTP API are thin layers over `submit`, `regenerate`
and `edit_last`; nothing here imports Gradio (an import-linter contract in the suite).
"""

from .generation import OUT_OF_MEMORY
from .inputs import StageClock, UserInput, check_text, clean_text, transcribe_recording
from .pipeline import edit_last, regenerate, show_version, submit
from .services import POLL_SECONDS, Services, Speech

__all__ = [
    "OUT_OF_MEMORY", "POLL_SECONDS", "Services", "Speech", "StageClock", "UserInput", "check_text", "clean_text",
    "edit_last", "regenerate", "show_version", "submit", "transcribe_recording",
]
