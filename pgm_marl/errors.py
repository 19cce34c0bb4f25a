"""User-facing errors: the only exceptions the CLI turns into a one-line ``error: ...`` message.

The CLI (``pgm_marl.cli.main``) catches :class:`UserError` and nothing else: a user mistake (a bad flag
value, a task that does not exist, a run folder that cannot be written, a checkpoint that is not one) is
raised as a ``UserError`` subclass where it is detected, with a message that names the bad value and what
is accepted. Every other exception is a bug or an unexpected failure of the machine, and keeps its
traceback. Do not convert a broad exception class into a ``UserError`` except at a boundary where the
input is known to be the user's (a config being validated, a file being read, an env constructor being
called with the user's keyword arguments).

``UserError`` is a ``ValueError`` so that code written against the older ``except ValueError`` keeps working;
the file-related subclasses are also ``FileNotFoundError`` / ``FileExistsError``.

Exit codes of ``pgm-marl``: 0 success, 2 user error (including argparse's), 3 non-finite numbers
(:class:`NonFiniteError`), 130 interrupted; anything else (1) is an internal error with a traceback.
"""
from __future__ import annotations

__all__ = ["UserError", "ConfigError", "CheckpointError", "RunFolderError", "MissingFileError",
           "RunExistsError", "NonFiniteError", "one_line", "first_line"]


class UserError(ValueError):
    """A mistake in what the user gave; the message alone explains it (printed on one line, exit code 2)."""

    exit_code = 2


class ConfigError(UserError):
    """A TrainConfig field (flag or ``config.json`` entry) with a value that is not accepted."""


class CheckpointError(UserError):
    """A ``checkpoint.pt`` that cannot be read or does not match the run that loads it."""


class RunFolderError(UserError):
    """A run folder (``--out``, ``RUN_DIR``, ``--gif``) that cannot be used as one."""


class MissingFileError(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class RunExistsError(UserError, FileExistsError):
    """A new run would overwrite an existing one."""


class NonFiniteError(UserError):
    """A NaN or infinite reward, observation, loss or weight: training stops before it is stored (exit code 3)."""

    exit_code = 3


def one_line(err: BaseException, *, typed: bool = False, first: bool = False) -> str:
    """The message of ``err`` on one line: its non-empty lines joined by '; ', or only the first of them with
    ``first=True`` (for another library's long message, a traceback or a Ray task error); prefixed with the
    exception's type (``Type: message``) with ``typed=True``; the type's name alone for an empty message.

    The one formatter of errors for a single line of output (the CLI's ``error: ...``, the sweep's table).
    """
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    text = "; ".join(lines[:1] if first else lines)
    if not text:
        return type(err).__name__
    return f"{type(err).__name__}: {text}" if typed else text


def first_line(err: BaseException) -> str:
    """``one_line(err, first=True)``: the first non-empty line of the message of ``err``."""
    return one_line(err, first=True)
