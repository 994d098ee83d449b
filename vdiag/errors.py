"""User-facing errors and the exit codes of `vdiag`.

A `VdiagError` is a problem with the user's input or environment (missing file, bad format,
wrong option). The CLI prints its message as one line and exits non-zero without a traceback.
The message says what is wrong and how to fix it.

Exit codes (`ExitCode`, named as pip names its own), for job scripts and schedulers:

    0    SUCCESS         the command did what was asked
    1    INTERNAL_ERROR  a bug in vdiag (please report it; VDIAG_DEBUG=1 shows the traceback)
    2    USER_ERROR      bad input or environment: one line says what and how to fix it
    75   PREEMPTED       SIGTERM / SIGUSR1 (a scheduler's preemption or time limit): the position was
                         saved; `vdiag pretrain --resume auto …` continues (75 is EX_TEMPFAIL, "try again")
    130  INTERRUPTED     Ctrl-C (after a training run saved its position)
"""

from enum import IntEnum


class ExitCode(IntEnum):
    """The exit status of `vdiag` (see the module docstring)."""

    SUCCESS = 0
    INTERNAL_ERROR = 1
    USER_ERROR = 2
    PREEMPTED = 75
    INTERRUPTED = 130


class VdiagError(Exception):
    """A user error: one line saying what is wrong and how to fix it."""

    exit_code = ExitCode.USER_ERROR


class DecodeError(VdiagError):
    """A video file could not be opened or decoded."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode {self.path}: {reason}")


class Preempted(Exception):
    """A run stopped by SIGTERM or SIGUSR1 once its position was saved; the message says how to continue."""

    exit_code = ExitCode.PREEMPTED
