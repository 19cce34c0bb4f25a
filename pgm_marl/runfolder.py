"""Run folders and output files: one-line :class:`~pgm_marl.errors.RunFolderError` instead of an OSError
traceback, checked before any work (this module imports no torch), and no temp files left behind by a
checkpoint write that was killed part way.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional

from .errors import RunFolderError

__all__ = ["TMP_SUFFIX", "check_out_folder", "make_run_folder", "check_output_file", "stale_temp_files",
           "remove_stale_temp_files", "code_version"]

#: suffix of the temp files of atomic writes (``.checkpoint.pt.<random>.tmp``, ``metrics.csv.tmp``)
TMP_SUFFIX = ".tmp"


def _check_writable_under(path: Path, flag: str, shown: Path) -> None:
    """The nearest existing folder of ``path`` (itself or an ancestor) is a folder the user can write in."""
    base = path
    while not base.exists() and base != base.parent:
        base = base.parent
    if not base.is_dir():
        raise RunFolderError(f"{flag} {shown}: {base} is a file, not a folder; accepted: a path under a folder")
    if not os.access(base, os.W_OK | os.X_OK):
        raise RunFolderError(f"{flag} {shown}: no permission to write in {base}; accepted: a folder you can write")


def check_out_folder(path: str | Path, flag: str = "--out") -> None:
    """Refuse, before anything is computed or written, a run folder that is a file, lies under a file, or
    lies in a folder that cannot be written. Creates nothing."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"{flag} {path} is an existing file, not a folder; accepted: a new folder, "
                                 "or a run folder of pgm-marl train")
        _check_writable_under(path, flag, path)
    except OSError as err:  # e.g. a parent folder that cannot even be listed
        raise RunFolderError(f"{flag} {path}: {err.strerror or err}; accepted: a folder you can write") from None


def make_run_folder(path: str | Path, flag: str = "--out") -> Path:
    """Create the run folder and check that a file can be written in it (OSError -> one line)."""
    path = Path(path)
    check_out_folder(path, flag)
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        where = f" ({err.filename})" if err.filename else ""
        raise RunFolderError(f"{flag} {path}: cannot create or write the run folder: {err.strerror or err}{where}; "
                             "accepted: a folder you can write") from None
    return path


def check_output_file(path: str | Path, flag: str, suffix: Optional[str] = None) -> None:
    """Refuse an output file path that has the wrong suffix, is a folder or lies where nothing can be written."""
    path = Path(path)
    accepted = f"a file name ending in {suffix}" if suffix else "a file name"
    if suffix and path.suffix.lower() != suffix:
        raise RunFolderError(f"{flag} {path}: accepted: {accepted}")
    try:
        if path.is_dir():
            raise RunFolderError(f"{flag} {path} is a folder; accepted: {accepted}")
        _check_writable_under(path.parent, flag, path)
    except OSError as err:
        raise RunFolderError(f"{flag} {path}: {err.strerror or err}; accepted: a folder you can write") from None


def stale_temp_files(path: str | Path) -> list:
    """Temp files that an interrupted atomic write of ``path`` (``checkpoint.save_checkpoint``) left next to it."""
    path = Path(path)
    return sorted(path.parent.glob(f".{path.name}.*{TMP_SUFFIX}")) if path.parent.is_dir() else []


def remove_stale_temp_files(run_dir: str | Path) -> List[Path]:
    """Delete temp files left in ``run_dir`` by a checkpoint or metrics write that was killed part way."""
    run_dir = Path(run_dir)
    stale = stale_temp_files(run_dir / "checkpoint.pt")
    stale += [p for p in [run_dir / "metrics.csv.tmp"] if p.is_file()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


def code_version() -> Dict[str, Any]:
    """Which code ran: the package version and, when the package is a git checkout's ``pgm_marl/``, its commit
    and whether ``pgm_marl/`` had uncommitted changes (``commit`` None otherwise, e.g. an installed copy or no
    git). Recorded with each run start."""
    from . import __version__

    root = Path(__file__).resolve().parent.parent
    out: Dict[str, Any] = {"version": __version__, "commit": None, "dirty": None}

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() == root:  # not a repo that merely encloses it
            out["commit"] = git("rev-parse", "HEAD")
            out["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no", "--", "pgm_marl"))
    except (OSError, subprocess.SubprocessError):
        pass
    return out
