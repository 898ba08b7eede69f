"""The checks every command makes on the paths it is given, before it starts working: an output location that
cannot be written (:func:`check_output`) or an input file that cannot be read (:func:`input_file_problem`) is an
error naming the option and the fix, not a traceback after minutes of work.

Imports the standard library only, so every floor (decoding's LM reader included) can use it.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path



class OutputLocationError(ValueError):
    """An output location that cannot be written; the message names the option, the path and the fix."""


def check_output(path: str | Path, option: str, *, folder: bool = False, inside: Iterable[str] = ()) -> Path:
    """Refuse an output location that cannot be written, before any work is done; returns it as a Path.

    ``option`` names it in the messages (``--out``, ``--ctm``). A file (``folder=False``) must not be a
    folder and, if it exists, must be writable; a folder must not be a file, and each of the files it will
    hold (``inside``) that exists already must be a writable file. Missing folders on the way are fine
    (writers create them) when the nearest existing one is a folder that takes new files: that is tried
    with an unnamed temporary file, which works where permission bits do not tell (read-only mounts, root).
    """
    path = Path(path)
    if path.is_dir() and not folder:
        raise OutputLocationError(f"{option} {path} is a directory, not a file: give the path of a file to write "
                                  "(it is created or replaced)")
    if path.exists() and not path.is_dir() and folder:
        raise OutputLocationError(f"{option} {path} is a file, not a folder: give a folder (it is created if "
                                  "missing)")
    targets = [path / name for name in inside] if folder else [path]
    for target in targets:
        if target.is_dir():
            raise OutputLocationError(f"{option} {path}: {target} is a directory where a file is to be written: "
                                      f"move it away or choose another {option}")
        if target.exists() and not os.access(target, os.W_OK):
            raise OutputLocationError(f"{option} {path}: {target} exists and cannot be overwritten (not writable): "
                                      f"check its permissions or choose another {option}")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputLocationError(f"{option} {path}: {existing} is a file, not a folder: choose another {option}")
    try:
        tempfile.TemporaryFile(dir=existing).close()
    except OSError as e:
        raise OutputLocationError(f"{option} {path}: cannot write in {existing} ({e.strerror or e}): choose a "
                                  f"writable location for {option}") from None
    return path


def input_file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be read as a file ("... does not exist: check the path", "... is a directory,
    not a file", "... cannot be read (permission denied)"), or None if it can. The caller adds what the
    file is for (``--lm``, ``lexicon``)."""
    try:
        with open(path, "rb"):
            return None
    except IsADirectoryError:
        return f"{path} is a directory, not a file: give the file inside it"
    except (FileNotFoundError, NotADirectoryError):
        hint = "" if os.path.isabs(path) else f" (relative paths are resolved from {os.getcwd()})"
        return f"{path} does not exist: check the path{hint}"
    except PermissionError:
        return f"{path} cannot be read (permission denied): check its permissions"
    except OSError as e:
        return f"{path} cannot be read ({e.strerror or e})"
