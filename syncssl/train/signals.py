"""SIGTERM (what a cluster sends before it pre-empts a job) and SIGINT (Ctrl-C) during training: the step in flight
finishes, a checkpoint is written, and the run stops with :class:`Interrupted` (exit status 128 + the signal's
number, as a shell reports a process the signal ended). A second signal stops at once, as if none were caught."""
from __future__ import annotations

import signal
import threading


class StopRequest:
    """``stop = StopRequest.install()`` … ``stop.restore()``: ``stop.signum`` is the first SIGTERM / SIGINT received
    in between (None: none). Handlers are installed from the main thread only (Python's rule); elsewhere nothing
    changes."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.signum: int | None = None
        self._previous: dict = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum, frame):
        if self.signum is not None:  # the second one: what it would have done without us
            signal.signal(signum, self._previous.get(signum) or signal.SIG_DFL)
            signal.raise_signal(signum)
            return
        self.signum = signum

    @classmethod
    def install(cls) -> StopRequest:
        stop = cls()
        if threading.current_thread() is threading.main_thread():
            stop._previous = {s: signal.signal(s, stop._handle) for s in cls.SIGNALS}
        return stop

    def restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler or signal.SIG_DFL)  # None: a handler not set from Python
        self._previous = {}
