"""User-facing errors.

A `VdiagError` is a problem with the user's input or environment (missing file, bad format,
wrong option). The CLI prints its message as one line and exits non-zero without a traceback.
The message says what is wrong and how to fix it.
"""


class VdiagError(Exception):
    """A user error: one line saying what is wrong and how to fix it."""


class DecodeError(VdiagError):
    """A video file could not be opened or decoded."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")
