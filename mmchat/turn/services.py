"""What every turn shares: the models, the limits, the one admission line and the store."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable

from ..config import Config
from ..engine import Engine
from ..model_handle import ModelHandle
from ..store import SQLiteStore
from ..tts import TextToSpeech
from .admission import Admission
from .rate_limit import TurnRateLimit

# How often a turn that waits (for the model to load, for a transcription, for speech
# to finish) looks at its cancel token: the longest a Stop can go unnoticed there.
POLL_SECONDS = 0.1
# A stopped turn waits this long at most for its worker threads to end; each is told
# to stop and ends within one token or one sentence, far sooner.
JOIN_SECONDS = 30.0

@dataclass(frozen=True)
class Speech:
    """Speak the answer, with this voice ("auto": the answer's language picks it) and rate."""

    voice: str = "auto"
    rate: float = 1.0


@dataclass
class Services:
    """What every session shares: the models, the limits, and the one admission line."""

    config: Config
    engine: ModelHandle[Engine]
    stt: ModelHandle | None = None  # of a SpeechToText
    tts: Callable[[Speech], "TextToSpeech"] | None = None  # a cached voice for a Speech setting
    admission: Admission | None = None  # built from config.concurrency when not given
    # The saved conversations: one store per process, shared by all that keep conversations
    # (the page; the API's chat completions are stateless and keep none). app.py opens it
    # at start; see open_store.
    store: SQLiteStore | None = None
    turn_limit: TurnRateLimit | None = None  # built from config.max_turns_per_minute when not given

    def __post_init__(self) -> None:
        if self.admission is None:
            self.admission = Admission(self.config.concurrency)
        if self.turn_limit is None:
            self.turn_limit = TurnRateLimit(self.config.max_turns_per_minute)

    def open_store(self) -> SQLiteStore:
        """The store, opened in config.data_dir on first use when none was given. Lazily,
        not in __post_init__: Services are also made for one request (the API) or one
        test, which should not open, migrate and import a data folder each time."""
        with _STORE_OPENING:
            if self.store is None:
                self.store = SQLiteStore(self.config.data_dir)
            return self.store


_STORE_OPENING = threading.Lock()
