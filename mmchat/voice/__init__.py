"""Voice mode's listening side: microphone chunks in, the person's turns out.

`EndpointDetector` (endpoint.py) runs Silero VAD over a live stream and says when
speech starts (barge-in acts on it) and when a turn has ended, with its audio;
`TrailingWordHold` (hold.py) makes it wait longer after a trailing "and" or "um";
`StreamingTranscriber` (streaming.py) transcribes a long turn at its inner pauses.
The page's voice mode feeds it what Gradio streams and hands each turn to `turn.submit`.
"""

from mmchat.voice.echo import EchoGuard, EchoMatch
from mmchat.voice.endpoint import (
    EndpointDetector, EndpointEvent, EndpointSettings, FalseStart, HoldCallback, SpeechStarted, TurnEnded,
)
from mmchat.voice.hold import TrailingWordHold, ends_mid_thought
from mmchat.voice.streaming import StreamingTranscriber

__all__ = [
    "EchoGuard", "EchoMatch", "EndpointDetector", "EndpointEvent", "EndpointSettings", "FalseStart", "HoldCallback",
    "SpeechStarted",
    "StreamingTranscriber", "TrailingWordHold", "TurnEnded", "ends_mid_thought",
]
