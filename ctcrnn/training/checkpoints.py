"""The resume side of checkpoints: the atomic, rotating writer of a run's checkpoints and the choice of
the checkpoint to continue from (falling back past a damaged one). What a checkpoint holds is the trainer's
snapshot; writing and reading one file is :mod:`ctcrnn.checkpoint`.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from ..checkpoint import CheckpointError, link_latest, load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)


# Settings the batch plan of an epoch depends on: a mid-epoch resume must keep them.
BATCH_PLAN_KEYS = {"data.batch_size", "data.max_frames", "data.sortagrad", "trainer.seed", "trainer.grad_accum",
                   "data.name", "data.args", "data.train_split"}


def run_dir_of(checkpoint: Path) -> Path:
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


# What a resumable checkpoint holds besides what rebuilds the model (ctcrnn.checkpoint.check_checkpoint):
# key -> the types it may have. Older versions lack stepper and bad_in_a_row; epoch-end ones lack position.
RESUME_KEYS = {"optimizer": (dict,), "scheduler": (dict,), "config": (dict,), "rng": (dict,), "epoch": (int,),
               "step": (int,), "best_ter": (int, float), "max_epochs": (int,), "metrics": (dict,)}
MID_EPOCH_KEYS = {"position": (int,), "progress": (dict,)}


def check_resume_state(state: dict, path: Path) -> None:
    """CheckpointError naming ``path`` and the key when a key that resuming needs is missing or of the wrong type
    (a hand-edited file, or one that only holds weights: a bundle, an average)."""
    keys = {**RESUME_KEYS, **({} if state.get("epoch_done", True) else MID_EPOCH_KEYS)}
    for key, kinds in keys.items():
        if key not in state:
            problem = "is missing"
        elif not isinstance(state[key], kinds) or isinstance(state[key], bool):
            problem = f"must be {' or '.join(k.__name__ for k in kinds)}, got {type(state[key]).__name__}"
        else:
            continue
        raise CheckpointError(f"{path}: key {key!r} {problem}, so training cannot resume from it (it holds weights "
                              f"only, or was edited); resume from another checkpoint of the run, or start a new "
                              f"run from its weights with trainer.init_from={path}")


def load_resume_state(resume: str | Path) -> tuple[dict, Path, Path]:
    """(state, run folder, checkpoint file) to continue from: ``resume`` (a file, or a run folder meaning its
    last.pt), falling back to the newest readable step checkpoint of the run when that file is truncated,
    corrupted or incomplete."""
    path = Path(resume)
    if path.is_dir() and not (path / "last.pt").exists() and not (path / "checkpoints").is_dir():
        raise CheckpointError(f"--resume {path} is a directory without last.pt or checkpoints/: give a run folder "
                              f"(trainer.out_dir/<run>) or a checkpoint file")
    path = path / "last.pt" if path.is_dir() else path
    run_dir = run_dir_of(path)
    candidates = [path] + sorted((run_dir / "checkpoints").glob("step-*.pt"), reverse=True)
    errors = []
    for candidate in candidates:
        try:
            state = load_checkpoint(candidate)
            check_resume_state(state, candidate)
        except CheckpointError as e:
            errors.append(str(e))
            continue
        if errors:
            log.warning("could not resume from %s (%s); falling back to %s", path, errors[0], candidate)
        return state, run_dir, candidate
    raise CheckpointError(f"no readable checkpoint to resume from in {run_dir}: " + "; ".join(errors))


class Checkpointer:
    """Writes checkpoints atomically: ``checkpoints/step-N.pt`` (the newest ``keep`` are kept) with
    ``last.pt`` pointing at the newest, and ``best.pt`` at epoch ends that improve validation."""

    def __init__(self, run_dir: Path, keep: int, every_steps: int, every_minutes: float):
        if keep < 1:
            raise ValueError(f"trainer.keep_checkpoints must be at least 1, got {keep}")
        self.run_dir, self.keep, self.every_steps, self.every_minutes = run_dir, keep, every_steps, every_minutes
        self.last_time = time.time()
        self.last_path: Path | None = None  # the newest checkpoint written (or resumed from), for messages
        # Temp files of a write that a kill interrupted (one process writes here, so any found now are
        # leftovers); a leftover hard link would otherwise pin an old checkpoint on disk for good.
        for leftover in [*run_dir.glob(".*.tmp"), *(run_dir / "checkpoints").glob(".*.tmp")]:
            leftover.unlink(missing_ok=True)

    def due(self, step: int) -> bool:
        return bool((self.every_steps and step % self.every_steps == 0) or
                    (self.every_minutes and time.time() - self.last_time >= 60 * self.every_minutes))

    def save(self, state: dict, best: bool = False) -> Path:
        path = self.run_dir / "checkpoints" / f"step-{state['step']:08d}.pt"
        try:
            save_checkpoint(state, path)
            link_latest(path, self.run_dir / "last.pt")
            if best:
                save_checkpoint(state, self.run_dir / "best.pt")
        except OSError as e:
            previous = self.run_dir / "last.pt"
            raise CheckpointError(f"could not write checkpoint {path}: {e}. The previous checkpoint "
                                  f"({previous}) is intact; free space and continue with --resume {self.run_dir}") from e
        # Files of later steps belong to a future this run abandoned (it resumed from an older checkpoint):
        # drop them, then keep the newest `keep` including the one just written.
        others = [p for p in (self.run_dir / "checkpoints").glob("step-*.pt") if p != path]
        later = [p for p in others if p.name > path.name]
        for old in later + sorted(set(others) - set(later))[: max(0, len(others) - len(later) - (self.keep - 1))]:
            old.unlink(missing_ok=True)
        self.last_time, self.last_path = time.time(), path
        return path
