"""Voice mode's listening side: microphone chunks in, the person's turns out.

`EndpointDetector` (endpoint.py) runs Silero VAD over a live stream and says when
speech starts (barge-in acts on it) and when a turn has ended, with its audio;
`TrailingWordHold` (hold.py) makes it wait longer after a trailing "and" or "um";
`StreamingTranscriber` (streaming.py) transcribes a long turn at its inner pauses.
`VoiceLoop` (loop.py) puts them together for one session: the voice socket
(websocket.py) feeds it the page's microphone and camera, and each question heard is
answered at once through `turn.submit` (answering.py), back down the same socket.
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
