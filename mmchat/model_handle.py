"""Load a model in the background, report progress, hand it out when ready.

The page is served at once while weights load; a question asked meanwhile waits for
the model, and the UI shows what the loader is doing.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Callable, Generic, TypeVar

from .errors import ModelUnavailableError, UserFacingError

log = logging.getLogger(__name__)
T = TypeVar("T")
Progress = Callable[[str, "float | None"], None]


@dataclass(frozen=True)
class LoadStatus:
    message: str
    fraction: float | None = None  # None when the step's length is unknown
    ready: bool = False
    error: str | None = None


class ModelHandle(Generic[T]):
    def __init__(self, load: Callable[[Progress], T], name: str = "model") -> None:
        self._load = load
        self._name = name
        self._value: T | None = None
        self._status = LoadStatus(f"Waiting to load the {name}")
        self._done = threading.Event()
        self._started = False
        self._lock = threading.Lock()

    @classmethod
    def ready(cls, value: T, name: str = "model") -> "ModelHandle[T]":
        handle = cls(lambda progress: value, name)
        handle.start()
        handle.wait()
        return handle

    @property
    def status(self) -> LoadStatus:
        return self._status

    def start(self) -> "ModelHandle[T]":
        with self._lock:
            if not self._started:
                self._started = True
                threading.Thread(target=self._run, name=f"load-{self._name}", daemon=True).start()
        return self

    def _progress(self, message: str, fraction: float | None) -> None:
        self._status = LoadStatus(message, fraction)
        log.info("%s%s", message, "" if fraction is None else f" ({fraction:.0%})")

    def _run(self) -> None:
        try:
            self._value = self._load(self._progress)
            self._status = LoadStatus(f"The {self._name} is ready", 1.0, ready=True)
            log.info("%s", self._status.message)
        except UserFacingError as exc:
            self._status = LoadStatus(str(exc), error=str(exc))
            log.error("%s", exc)
        except Exception as exc:  # shown to the user; the traceback goes to the log
            log.exception("loading the %s failed", self._name)
            message = failure_message(self._name, exc)
            log.error("%s", message)  # the start-up error, in plain words, after the traceback
            self._status = LoadStatus(message, error=message)
        finally:
            self._done.set()

    def loaded(self, timeout: float | None = None) -> bool:
        """Whether loading has ended (ready or failed), waiting up to `timeout` for it."""
        self.start()
        return self._done.wait(timeout)

    def wait(self, timeout: float | None = None) -> T:
        """The loaded value; raises ModelUnavailableError if loading failed."""
        self.start()
        if not self._done.wait(timeout):
            raise ModelUnavailableError(f"The {self._name} is still loading: {self._status.message}")
        if self._value is None:
            raise ModelUnavailableError(self._status.error or f"The {self._name} could not be loaded.")
        return self._value


def failure_message(name: str, exc: Exception) -> str:
    """What to tell the user when loading failed with an error that was not written for them.

    The common cause is a damaged download (a cut-off weights file, an edited config.json):
    the libraries report those in their own terms, so they are named here with the fix."""
    detail = f"{type(exc).__name__}: {exc}"
    kind = type(exc).__name__
    text = str(exc).lower()
    if kind in ("SafetensorError", "UnpicklingError", "HeaderTooLarge") or "deserializ" in text \
            or "invalid load key" in text or "header" in text and "safetensors" in text:
        why = "one of its weights files is damaged or incomplete"
    elif kind == "JSONDecodeError":
        why = "one of its settings files (.json, e.g. config.json) is not valid JSON"
    else:
        return f"Loading the {name} failed ({detail}). The log has the details."
    other = ", or choose another one with --model" if name == "model" else ""
    return f"Loading the {name} failed: {why} ({detail}). Download the {name} again{other}."
