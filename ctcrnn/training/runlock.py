"""One writer per run folder: a lock on ``<run>/train.lock`` held while a process trains there.

Two processes writing one run (say, the same ``--resume`` started twice) would overwrite each other's
checkpoints and logs, and the loser would fail with a message about something else. The lock is
``fcntl.flock`` on that file: the OS releases it when its holder exits, however it dies (kill -9, a crash, a
power cut on a local disk), so a dead run never leaves a folder locked; the file itself may stay and is
ignored. The holder writes its pid, host, start time and command into the file, for the message a second
process gets. Without ``fcntl`` (Windows) or on a filesystem that refuses locks, training goes on unlocked
with a warning.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import json
import logging
import os
import socket
import sys
import time
from pathlib import Path

try:
    import fcntl
except ImportError:  # pragma: no cover  (Windows)
    fcntl = None

log = logging.getLogger(__name__)

LOCK_NAME = "train.lock"


class RunFolderBusy(ValueError):
    """Another live process trains in the run folder; the message names it."""


class RunLock:
    """``acquire(run_dir)`` takes the folder's lock (RunFolderBusy naming the holder when another process has
    it); ``release()`` gives it back. One lock object holds at most one folder."""

    def __init__(self):
        self.fd: int | None = None
        self.run_dir: Path | None = None

    def acquire(self, run_dir: str | Path) -> None:
        if self.fd is not None:
            raise RuntimeError(f"this RunLock already holds {self.run_dir}")
        run_dir = Path(run_dir)
        path = run_dir / LOCK_NAME
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ValueError(f"cannot write in the run folder {run_dir} ({e.strerror or e}): check its "
                             f"permissions, or train into another trainer.out_dir") from None
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = read_holder(fd)
                os.close(fd)
                raise RunFolderBusy(f"run folder {run_dir} is in use by {holder}: two processes must not train "
                                    f"in one run; wait for that one to end (or stop it), or train into another "
                                    f"folder (trainer.run_name=...)") from None
            except OSError as e:  # a filesystem without locks (some network mounts)
                log.warning("cannot lock %s (%s): nothing stops a second process from training in this run "
                            "folder at the same time", path, e.strerror or e)
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "command": " ".join(sys.argv)}).encode())
        self.fd, self.run_dir = fd, run_dir

    def release(self) -> None:
        """Empties the file (its holder is gone) and closes it, which releases the lock; no-op when not held."""
        if self.fd is None:
            return
        try:
            os.ftruncate(self.fd, 0)
        except OSError:
            pass  # the lock goes with the close below all the same
        os.close(self.fd)
        self.fd = self.run_dir = None


def read_holder(fd: int) -> str:
    """'process 123 on host-a (since 2024-05-01 10:00:00: python train.py ...)', from the lock file's text."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        holder = {}
    if not isinstance(holder, dict) or "pid" not in holder:  # it is writing its details right now
        return "another process"
    return (f"process {holder['pid']} on {holder.get('host', '?')} (since {holder.get('started', '?')}: "
            f"{holder.get('command', '?')})")
