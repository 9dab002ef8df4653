"""The queue in front of the model: a bounded number of answers at once, a bounded number waiting, 429 beyond.

The embedded model writes one answer at a time; requests past it wait their turn in a queue of fixed length, and a
request that finds the queue full is told to come back (``Busy``: 429 with ``Retry-After``) instead of piling up
threads and memory. Each admitted request runs its events (``Service.ask``, ``Service.run_agent``) in a thread of
its own, which hands them to the event loop; when the reader goes away (a client that disconnected mid-stream) the
thread stops at the next event and closes the generator, which frees the model at once (``Generation.close``).
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Generic, TypeVar

from rag.errors import RagError

T = TypeVar("T")

_END = object()


class Busy(RagError):
    """The queue is full: come back after ``retry_after`` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"the model is busy; retry after {retry_after} s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class GateState:
    running: int
    waiting: int
    capacity: int  # running + waiting at most
    cancelled: int  # answers stopped because their client went away


class Gate:
    """``concurrency`` answers at once and ``queue`` waiting; ``admit`` refuses the next with ``Busy``."""

    def __init__(self, concurrency: int, queue: int) -> None:
        self.concurrency = concurrency
        self.capacity = concurrency + queue
        self._slots = threading.Semaphore(concurrency)
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0
        self._cancelled = 0
        self._seconds: deque[float] = deque(maxlen=20)  # how long recent answers held the model

    def state(self) -> GateState:
        with self._lock:
            return GateState(self._running, self._admitted - self._running, self.capacity, self._cancelled)

    def retry_after(self) -> int:
        """Seconds until a place is likely free: the recent answers' mean time, times the answers ahead per slot."""
        with self._lock:
            mean = sum(self._seconds) / len(self._seconds) if self._seconds else 5.0
            ahead = max(1, self._admitted - self.concurrency + 1)
        return max(1, math.ceil(mean * ahead / self.concurrency))

    def admit(self) -> Ticket:
        """A place in the queue, or ``Busy``. The place is held until the ticket's events have run (or it is
        dropped unused: ``Ticket.drop``)."""
        with self._lock:
            full = self._admitted >= self.capacity
            if not full:
                self._admitted += 1
        if full:
            raise Busy(self.retry_after())
        return Ticket(self)

    def _leave(self) -> None:
        with self._lock:
            self._admitted -= 1


class Ticket(Generic[T]):
    """One admitted request: ``events(make)`` runs ``make()`` when the model is free and yields its events."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self._used = False

    def __del__(self) -> None:  # a response that never started (its client left first) gives its place back
        self.drop()

    def drop(self) -> None:
        """Give the place back without running anything."""
        if not self._used:
            self._used = True
            self.gate._leave()

    async def events(self, make: Callable[[], Iterator[T]]) -> AsyncIterator[T]:
        assert not self._used, "a ticket runs once"
        self._used = True
        gate = self.gate
        loop = asyncio.get_running_loop()
        out: asyncio.Queue[object] = asyncio.Queue()
        gone = threading.Event()  # the reader stopped: the client went away

        def hand(item: object) -> None:
            try:
                loop.call_soon_threadsafe(out.put_nowait, item)
            except RuntimeError:  # the loop closed (the server is stopping): nobody is reading
                gone.set()

        def work() -> None:
            try:
                while not gate._slots.acquire(timeout=0.2):
                    if gone.is_set():
                        return  # left the queue before its turn
                started = time.monotonic()
                with gate._lock:
                    gate._running += 1
                try:
                    run(make(), started)
                finally:
                    with gate._lock:
                        gate._running -= 1
                    gate._slots.release()
            except BaseException as exc:  # noqa: BLE001 - handed to the reader, which raises it
                hand(_Failed(exc))
            finally:
                gate._leave()
                hand(_END)

        def run(events: Iterator[T], started: float) -> None:
            try:
                for event in events:
                    if gone.is_set():
                        with gate._lock:
                            gate._cancelled += 1
                        return
                    hand(event)
            finally:
                close = getattr(events, "close", None)
                if close is not None:
                    close()  # a generator stopped early frees the model now (the answer step closes its stream)
                with gate._lock:
                    gate._seconds.append(time.monotonic() - started)

        threading.Thread(target=work, name="rag-api-answer", daemon=True).start()
        try:
            while (item := await out.get()) is not _END:
                if isinstance(item, _Failed):
                    raise item.error
                yield item  # type: ignore[misc]
        finally:
            gone.set()
