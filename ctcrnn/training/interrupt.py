"""Ctrl-C during training: stop at the next step boundary with a checkpoint of it, and say how to resume.

While :class:`StopRequest` is active, the first SIGINT only asks the run to stop: the trainer finishes the
optimizer step under way (never a half-applied update), writes a checkpoint of it and raises
:class:`TrainingInterrupted`, whose message names the step, the checkpoint and the exact resume command. A
second SIGINT stops at once, at whatever point; nothing is written then, and the message names the last
checkpoint written before. DataLoader workers ignore SIGINT (``ctcrnn.data.make_loader``), so a worker does
not die under the main process while the step finishes. Under torchrun the handler is not installed: ranks
would receive the signal at different steps and wait for each other for ever.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import logging
import shlex
import signal
import sys
import threading
from pathlib import Path

log = logging.getLogger(__name__)


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C; ``str()`` is the one line to show (``train.py`` exits with status 130)."""


class StopRequest:
    """Context manager: routes SIGINT to ``requested`` (first) or KeyboardInterrupt (second) while active;
    the previous handler is put back on exit. Inactive (``enabled=False``, or not the main thread) it does
    nothing and SIGINT raises KeyboardInterrupt as usual."""

    def __init__(self, enabled: bool = True):
        self.enabled, self.requested, self.installed, self.previous = enabled, False, False, None

    def __enter__(self) -> StopRequest:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self.previous, self.installed = signal.signal(signal.SIGINT, self._handle), True
        return self

    def __exit__(self, *exc) -> None:
        if self.installed:  # None: a handler set outside Python, which Python cannot put back; the default then
            signal.signal(signal.SIGINT, self.previous if self.previous is not None else signal.SIG_DFL)
            self.installed = False

    def _handle(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        log.warning("Ctrl-C: stopping after the current step, with a checkpoint of it (Ctrl-C again stops at once, "
                    "without one)")


def resume_command(run_dir: Path) -> str:
    """The command that continues ``run_dir``: as this process was started (train.py or ctcrnn train)."""
    program = "python train.py" if Path(sys.argv[0]).name == "train.py" else "ctcrnn train"
    return f"{program} --resume {shlex.quote(str(run_dir))}"


def interrupted_message(step: int, epoch: int | None, checkpoint: Path | None, run_dir: Path) -> str:
    """'interrupted at step N (epoch E); the last checkpoint is X; resume with: ...' (epoch 1-based)."""
    where = f"interrupted at step {step}" + (f" (epoch {epoch})" if epoch is not None else "")
    if checkpoint is None:
        return f"{where}; no checkpoint was written yet, so there is nothing to resume: start the run again"
    return f"{where}; the last checkpoint is {checkpoint}; resume with: {resume_command(run_dir)}"


def interrupted_before_start(resume: str | Path | None) -> str:
    """The message for Ctrl-C while a run was being prepared (data read, model built): nothing was trained."""
    if resume is None:
        return "interrupted before training started; nothing was trained: start the run again"
    return f"interrupted before training resumed; nothing was trained: resume with: {resume_command(Path(resume))}"
