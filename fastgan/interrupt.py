"""Ctrl-C: the first asks the training loop to stop after its current chunk (with a checkpoint),
a second stops at once (`Interrupted`, exit code 130)."""

import signal
import threading

from .errors import FastganError


class Interrupted(FastganError):
    """Ctrl-C during start-up, or a second Ctrl-C: stopped at once (exit code 130)."""


class StopOnSigint:
    """The first Ctrl-C sets `requested`; a second one raises KeyboardInterrupt at once. The
    handler in place before is restored on exit."""

    def __init__(self):
        self.requested = False
        self.previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        self.requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
