"""The one exception type a user sees: it says what went wrong and what to do."""

import errno


class FastganError(Exception):
    """A problem with the user's input, data or files; `train.py` prints it as one line."""


def os_error(what, path, e):
    """One line for an OSError while writing `path`: what failed, where, and the OS's reason."""
    reason = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        reason += " (free some space, or pick another --out)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason += " (pick an --out you can write to)"
    return f"cannot {what} {path}: {reason}"
