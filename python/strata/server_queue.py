"""The request queue of `strata serve`: one model, one generation at a time, first come first served.

The core has no batched multi-sequence decode yet, so requests cannot share a step. A single
worker thread takes jobs in arrival order (a fair FIFO queue) and runs each to completion;
the asyncio event loop only waits on events the worker posts to it, so it never blocks on
the model. A job whose client went away is cancelled: if still queued it is skipped, if
running it stops after the token being decoded, and the next job starts.
"""

from __future__ import annotations

import asyncio
import collections
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .errors import StrataError


class QueueFullError(StrataError):
    """More requests are waiting than the server accepts (``max_queue``)."""


@dataclass
class JobRecord:
    """What became of a finished job (kept for the last few, for /health and tests)."""

    status: str  # "done", "cancelled" or "error"
    tokens_generated: int


class Job:
    """One request's work. ``work(job)`` runs in the worker thread and reports through
    :meth:`emit`; the request handler reads the reports with :meth:`next_event`."""

    def __init__(self, work: Callable[[Job], None], loop: asyncio.AbstractEventLoop) -> None:
        self._work = work
        self._loop = loop
        self._events: asyncio.Queue = asyncio.Queue()
        self._cancelled = threading.Event()
        self.tokens_generated = 0

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop as soon as possible (thread-safe, idempotent)."""
        self._cancelled.set()

    def emit(self, *event: object) -> None:
        """Posts an event tuple to the handler's event loop (from any thread)."""
        try:
            self._loop.call_soon_threadsafe(self._events.put_nowait, event)
        except RuntimeError:  # the loop is closed: nobody is listening any more
            pass

    async def next_event(self) -> tuple:
        """The next event: ("piece", ...), ... as posted by the work, then exactly one of
        ("done",), ("error", exception) or ("cancelled",)."""
        return await self._events.get()

    def run(self) -> JobRecord:
        if self.cancelled:
            self.emit("cancelled")
            return JobRecord("cancelled", 0)
        try:
            self._work(self)
        except Exception as e:  # noqa: BLE001 -- reported to the client; the server carries on
            self.emit("error", e)
            return JobRecord("error", self.tokens_generated)
        if self.cancelled:
            self.emit("cancelled")
            return JobRecord("cancelled", self.tokens_generated)
        self.emit("done")
        return JobRecord("done", self.tokens_generated)


class Scheduler:
    """A FIFO queue of jobs served by one worker thread."""

    def __init__(self, max_queue: int = 64) -> None:
        if max_queue < 1:
            raise ValueError("max_queue must be >= 1")
        self.max_queue = max_queue
        self._queue: collections.deque[Job] = collections.deque()
        self._cv = threading.Condition()
        self._closed = False
        self._current: Job | None = None
        self.recent: collections.deque[JobRecord] = collections.deque(maxlen=64)
        self.counts = collections.Counter()
        self._thread = threading.Thread(target=self._run, name="strata-serve-worker",
                                        daemon=True)
        self._thread.start()

    @property
    def queued(self) -> int:
        with self._cv:
            return sum(1 for j in self._queue if not j.cancelled)

    @property
    def busy(self) -> bool:
        return self._current is not None

    def submit(self, job: Job) -> None:
        """Appends ``job`` to the queue. Raises QueueFullError or StrataError (closed)."""
        with self._cv:
            if self._closed:
                raise StrataError("the server is shutting down")
            # Jobs cancelled while waiting no longer count against the limit.
            if sum(1 for j in self._queue if not j.cancelled) >= self.max_queue:
                raise QueueFullError(f"too many requests waiting (max_queue = {self.max_queue})")
            self._queue.append(job)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue and not self._closed:
                    self._cv.wait()
                if not self._queue:
                    return
                job = self._queue.popleft()
                self._current = job
            try:
                record = job.run()
            finally:
                self._current = None
            self.recent.append(record)
            self.counts[record.status] += 1

    def close(self, timeout: float = 10.0) -> None:
        """Cancels every job, waiting or running, and stops the worker."""
        with self._cv:
            self._closed = True
            for job in self._queue:
                job.cancel()
            if self._current is not None:
                self._current.cancel()
            self._cv.notify_all()
        self._thread.join(timeout)
