"""The one exception type a user sees: it says what went wrong and what to do."""


class FastganError(Exception):
    """A problem with the user's input, data or files; `train.py` prints it as one line."""
