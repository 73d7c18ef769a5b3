"""The errors ``nmt`` reports to its user as one line, without a traceback.

Every error a user can cause or meet derives from :class:`NmtError`, so the CLI catches
one class. Two kinds are told apart by their exit status:

- :class:`UsageError` (exit 2): the command cannot start as asked: a bad flag, config,
  input file, tokenizer or checkpoint. Fix the invocation and run again.
- :class:`RuntimeFailure` (exit 1): the command started and then failed (a loss that
  stays NaN, a full disk). The input was fine; the run was not.
"""

from __future__ import annotations

import errno


class NmtError(Exception):
    """Base of every error the CLI turns into ``error: <message>``."""

    exit_code = 1


class UsageError(NmtError, ValueError):
    """The command cannot work with what it was given; the message says what to change."""

    exit_code = 2


class RuntimeFailure(NmtError, RuntimeError):
    """A started command could not finish; the message says why."""

    exit_code = 1


class ConfigError(UsageError):
    """A configuration problem that the user can fix; the message says what and where."""


class Interrupted(Exception):
    """A command stopped by a signal after it put its work in a safe state (training:
    its resumable checkpoint written). Not an error: the message says how to go on, and
    the exit status is the shell's for a signal, 128 + its number (130 SIGINT, 143 SIGTERM),
    so ``nmt train ... && nmt evaluate ...`` does not go on with half a run."""

    def __init__(self, signum: int, message: str) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


# OS errors about the paths (or, for nmt serve, the address) a user named: fix the command
# line (exit 2). Every other OS error (a full disk, an I/O error, no memory) happened to a
# command that was fine (exit 1).
_USAGE_ERRNOS = {
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EEXIST,
    errno.ENAMETOOLONG,
    errno.ELOOP,
    errno.EROFS,
    errno.EADDRINUSE,  # nmt serve --port: another program listens there
    errno.EADDRNOTAVAIL,  # nmt serve --host: not an address of this machine
}


def exit_code(error: BaseException) -> int:
    """The exit status for an error that ends a command: 2 usage, 1 runtime failure.

    nmt's own errors carry their status; an OS error is a usage error when it is about a
    path the user gave (missing, a folder, not permitted), a runtime failure otherwise
    (``ENOSPC``: a full disk); text that is not UTF-8 is bad input (2).
    """
    if isinstance(error, (NmtError, Interrupted)):
        return error.exit_code
    if isinstance(error, OSError):
        return UsageError.exit_code if error.errno in _USAGE_ERRNOS else RuntimeFailure.exit_code
    if isinstance(error, UnicodeError):
        return UsageError.exit_code
    return RuntimeFailure.exit_code
