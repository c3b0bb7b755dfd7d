"""A blocking iterator (a turn) run on a thread of its own, its items awaited from asyncio.

A turn blocks (waiting in line, waiting on the model), so it must not run on the event
loop; it gets its own thread rather than one of the server's pool, whose few threads the
page needs too, and a turn waiting in line would hold one for as long as it waits.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Callable, Iterator

_END = object()


class _Raised:
    def __init__(self, exception: BaseException) -> None:
        self.exception = exception


class ThreadedIterator:
    def __init__(self, make: Callable[[], Iterator[Any]], name: str, on_cancel: Callable[[], None],
                 cleanup: Callable[[], None] | None = None) -> None:
        self._make = make
        self._on_cancel = on_cancel
        self._cleanup = cleanup
        self._queue: asyncio.Queue = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._over = False

    def start(self) -> "ThreadedIterator":
        self._thread.start()
        return self

    def cancel(self) -> None:
        """End the work early (the client went away); its thread then ends by itself."""
        self._on_cancel()

    def _put(self, item: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)
        except RuntimeError:  # the event loop is gone (server shutting down): nobody listens
            pass

    def _run(self) -> None:
        try:
            for item in self._make():
                self._put(item)
        except BaseException as exc:  # handed to the awaiting side, raised there
            self._put(_Raised(exc))
        finally:
            try:
                if self._cleanup is not None:
                    self._cleanup()
            finally:
                self._put(_END)

    def __aiter__(self) -> "ThreadedIterator":
        return self

    async def __anext__(self) -> Any:
        if self._over:
            raise StopAsyncIteration
        item = await self._queue.get()
        if item is _END:
            self._over = True
            raise StopAsyncIteration
        if isinstance(item, _Raised):
            self._over = True
            raise item.exception
        return item


async def run_in_thread(work: Callable[[], Any], name: str, on_cancel: Callable[[], None] = lambda: None) -> Any:
    """`work()` on a thread of its own (named, so its end can be checked), awaited."""
    results = [item async for item in ThreadedIterator(lambda: iter([work()]), name, on_cancel).start()]
    return results[0]
