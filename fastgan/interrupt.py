"""Ctrl-C and SIGTERM: the first asks the training loop to stop after its current chunk (with a
checkpoint), a second stops at once (`Interrupted`, exit code 130). SIGTERM is how a batch
scheduler or torchrun preempts a job: the stop ends in `Terminated` (exit code 143). Outside the
loop (start-up, shut-down) either signal stops at once, SIGTERM with exit code 143 too."""

import signal
import threading

from .errors import FastganError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(FastganError):
    """Ctrl-C during start-up, or a second signal: stopped at once (exit code 130)."""


class SigTerm(KeyboardInterrupt):
    """SIGTERM outside the training loop (start-up, shut-down): unwinds as Ctrl-C does there, and
    ends in `Terminated`'s exit code."""


def raise_sigterm(signum, frame):
    """The SIGTERM handler outside the training loop (fastgan.train_cli installs it)."""
    raise SigTerm


class Terminated(Exception):
    """The run stopped on SIGTERM after writing its stop checkpoint: exit code 143 (128 + 15), so
    a scheduler sees a preempted job, not a finished one. The message says how to continue."""


class StopOnSignals:
    """The first Ctrl-C or SIGTERM sets `requested` (and `signal`); a second of either raises
    KeyboardInterrupt at once. The handlers in place before are restored on exit."""

    def __init__(self):
        self.requested = False
        self.signal = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self.previous = {s: signal.signal(s, self._handle) for s in SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.requested = True
        self.signal = signum
        for s in SIGNALS:
            signal.signal(s, signal.default_int_handler)

    def __exit__(self, *exc):
        for s, handler in self.previous.items():
            signal.signal(s, handler)
