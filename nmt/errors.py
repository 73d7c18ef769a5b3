"""The errors ``nmt`` reports to its user as one line, without a traceback.

Every error a user can cause or meet derives from :class:`NmtError`, so the CLI catches
one class. Two kinds are told apart by their exit status:

- :class:`UsageError` (exit 2): the command cannot start as asked: a bad flag, config,
  input file, tokenizer or checkpoint. Fix the invocation and run again.
- :class:`RuntimeFailure` (exit 1): the command started and then failed (a loss that
  stays NaN, a full disk). The input was fine; the run was not.
"""

from __future__ import annotations


class NmtError(Exception):
    """Base of every error the CLI turns into ``error: <message>``."""

    exit_code = 1


class UsageError(NmtError, ValueError):
    """The command cannot work with what it was given; the message says what to change."""

    exit_code = 2


class RuntimeFailure(NmtError, RuntimeError):
    """A started command could not finish; the message says why."""

    exit_code = 1
