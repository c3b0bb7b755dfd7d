"""A small blocking WebSocket client over a real TCP socket (support for tests and benchmarks).

wsproto (which uvicorn serves WebSockets with here) does the framing; sending may
happen on one thread while another receives. `receive_buffer` shrinks the kernel's
receive buffer, so a client that stops reading makes the server's sends wait.
"""

from __future__ import annotations

import socket
import threading
from collections import deque
from urllib.parse import urlsplit

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection, BytesMessage, CloseConnection, Message, Ping, RejectConnection, Request, TextMessage,
)


class Closed(Exception):
    """The server closed the socket; `code` is its close code."""

    def __init__(self, code: int) -> None:
        super().__init__(f"closed with code {code}")
        self.code = code


class WebSocketClient:
    def __init__(self, url: str, *, timeout: float = 60.0, receive_buffer: int | None = None) -> None:
        parts = urlsplit(url)
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connecting, so the TCP window is small from the start
            self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self._socket.settimeout(timeout)
        self._socket.connect((parts.hostname, parts.port))
        self._ws = WSConnection(ConnectionType.CLIENT)
        self._lock = threading.Lock()  # wsproto's state, shared by the sending and receiving threads
        self._messages: deque[str | bytes] = deque()
        self._partial: list = []
        self.close_code: int | None = None
        self._write(Request(host=parts.netloc, target=parts.path or "/"))
        while True:
            event = self._next_event()
            if isinstance(event, AcceptConnection):
                break
            if isinstance(event, RejectConnection):
                raise ConnectionError(f"the server refused the WebSocket ({event.status_code})")

    def _write(self, event) -> None:
        with self._lock:
            data = self._ws.send(event)
        self._socket.sendall(data)

    def send_text(self, text: str) -> None:
        self._write(Message(data=text))

    def send_bytes(self, data: bytes) -> None:
        self._write(Message(data=data))

    def _next_event(self):
        while True:
            with self._lock:
                event = next(self._ws.events(), None)
            if event is not None:
                return event
            data = self._socket.recv(65536)
            with self._lock:
                self._ws.receive_data(data or None)
            if not data and self.close_code is None:
                self.close_code = 1006
                raise Closed(1006)

    def receive(self, timeout: float | None = None) -> str | bytes:
        """The next whole message (text or binary); Closed when the server closes."""
        if timeout is not None:
            self._socket.settimeout(timeout)
        while not self._messages:
            if self.close_code is not None:
                raise Closed(self.close_code)
            event = self._next_event()
            if isinstance(event, (TextMessage, BytesMessage)):
                self._partial.append(event.data)
                if event.message_finished:
                    joined = "".join(self._partial) if isinstance(event, TextMessage) else b"".join(self._partial)
                    self._partial = []
                    self._messages.append(joined)
            elif isinstance(event, Ping):
                self._write(event.response())
            elif isinstance(event, CloseConnection):
                self.close_code = event.code
                try:
                    self._write(event.response())
                except OSError:
                    pass
        return self._messages.popleft()

    def close(self) -> None:
        """Close as a page does (code 1000), without waiting for the server's reply."""
        try:
            if self.close_code is None:
                self._write(CloseConnection(code=1000))
        except Exception:  # noqa: BLE001 - closing a socket the server closed already
            pass
        self._socket.close()

    def __enter__(self) -> "WebSocketClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
