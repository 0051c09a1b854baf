"""The run folder: one owner at a time, one run per folder, known to be writable before any work.

`claim(out, resuming)` is the first thing a training does with its folder (before loading data):
it creates the folder, takes an exclusive OS lock on `out/.lock` (flock: released by the kernel
when the process ends, however it ends), writes the owner's PID into it for the message a second
training gets, checks that a file can be written and synced there, refuses a folder that
already holds a run unless that run is being resumed, and removes the temp files a killed
owner left mid-write.
"""

import contextlib
import fcntl
import os
from pathlib import Path

from . import checkpoint
from .atomic import probe_writable
from .cli import command
from .errors import FastganError, os_error

LOCK = ".lock"
RUN_MARKERS = ("config.json", "metrics.jsonl")


class RunFolder:
    """An owned run folder; `release()` (or process exit) gives it up. A folder this claim made
    that still holds nothing but its lock (a start that failed: bad data, too little memory) is
    removed on release: a failed start leaves nothing behind."""

    def __init__(self, path, fd, created=False):
        self.path, self._fd, self.created = Path(path), fd, created

    def release(self):
        if self._fd is not None and self.created and [p.name for p in self.path.iterdir()] == [LOCK]:
            (self.path / LOCK).unlink(missing_ok=True)
            with contextlib.suppress(OSError):
                self.path.rmdir()
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None


def holds_run(out):
    """The newest iteration a run left in `out` (0 if it left files but no checkpoint), or None."""
    out = Path(out)
    found = checkpoint.list_checkpoints(out / "checkpoints")
    if found:
        return int(found[-1].stem)
    return 0 if any((out / m).exists() for m in RUN_MARKERS) else None


def claim(out, resuming, log=print):
    """Create and lock `out` for this process; FastganError (one line) if it cannot be had. A
    folder whose run stopped before its first checkpoint holds no work to lose: a new run may
    start there again (said in a notice)."""
    out = Path(out)
    try:
        if out.exists() and not out.is_dir():
            raise FastganError(f"--out {out} is a file; give a folder for the run")
        created = not out.exists()
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise FastganError(os_error("create the run folder", out, e)) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FastganError(f"run folder {out} is in use by another training (process {owner}); "
                           "wait for it to end or pick another --out") from None
    folder = RunFolder(out, fd, created)
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        probe_writable(out, "write to the run folder")
    except OSError as e:
        folder.release()
        raise FastganError(os_error("write to the run folder", out, e)) from None
    except FastganError:
        folder.release()
        raise
    if not resuming:
        at = holds_run(out)
        if at:
            folder.release()
            raise FastganError(f"--out {out} already holds a run (checkpointed at iteration {at}); continue it with "
                               f"`{command()} --resume {out}`, or pick another --out")
        if at == 0:
            log(f"notice: {out} holds a run stopped before its first checkpoint (nothing to lose); starting it again")
    for stale in (out / "checkpoints").glob("*.tmp"):  # left by a process killed mid-write; ours now
        stale.unlink(missing_ok=True)
    return folder


def fresh_folder_beside(path):
    """A new run folder next to a loose checkpoint file: `<stem>-resumed`, `-resumed-2`, ..."""
    path = Path(path)
    base = path.parent / f"{path.stem}-resumed"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate
