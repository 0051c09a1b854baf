"""Every file fastgan writes is written whole or not at all: into a temp file of its own beside the
target, fsynced, then renamed over the target, so a crash at any moment leaves the old file or the
new one. On any error the temp file is removed and one line (FastganError) names the target.

The temp name is unique to the writer (`NAME.<pid>-<random>.tmp`): two processes writing the same
file (two trainings filling one data cache) never write into each other's temp file, and the
last rename wins with a whole file. A run folder's stale `*.tmp` files (a writer killed mid-write)
are removed when the folder is next opened (fastgan.runfolder)."""

import contextlib
import os
import secrets
from pathlib import Path

import numpy as np

from .errors import FastganError, os_error


def temp_name(path, suffix=""):
    """A fresh temp path beside `path`; `suffix` is kept at the end for writers that pick their
    format by it (an animation's .gif or .mp4)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp{suffix}")


@contextlib.contextmanager
def replacing(path, what="write", before_replace=None, suffix=""):
    """`with replacing(path) as tmp:` write the whole file to `tmp`; when the block ends, the
    file is made durable, `before_replace()` runs (e.g. syncing a log the new file vouches for),
    and it takes `path`'s place. An OSError in the block or after becomes FastganError("cannot
    {what} {path}: ...")."""
    path = Path(path)
    tmp = temp_name(path, suffix)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        if before_replace is not None:
            before_replace()
        os.replace(tmp, path)
    except OSError as e:
        raise FastganError(os_error(what, path, e)) from None
    finally:
        with contextlib.suppress(OSError):  # a read-only folder: the write's own error is the one to report
            tmp.unlink(missing_ok=True)


def probe_writable(folder, what="write to"):
    """FastganError (one line) unless a file can be written, synced and removed in `folder` (an
    existing folder): checked before work whose result would go there."""
    probe = temp_name(Path(folder) / ".write-probe")
    try:
        with open(probe, "wb") as f:
            f.write(b"fastgan")
            f.flush()
            os.fsync(f.fileno())
        probe.unlink()
    except OSError as e:
        with contextlib.suppress(OSError):
            probe.unlink(missing_ok=True)
        raise FastganError(os_error(what, folder, e)) from None


def write_text(path, text, what="write"):
    with replacing(path, what) as tmp:
        tmp.write_text(text)


def save_npz(path, arrays, what="write"):
    """The arrays, compressed, as an .npz (read back with allow_pickle=False)."""
    with replacing(path, what) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **{k: np.ascontiguousarray(v) for k, v in arrays.items()})
