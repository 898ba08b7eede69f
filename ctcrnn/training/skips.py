"""Training on too little: a run whose training clips cannot be used stops, rather than "train" on nothing.

A clip that cannot be used (unreadable, NaN/inf values, a wrong step shape, a transcript longer than the
model's output allows) is a counted skip, listed in ``skipped.tsv``. A few are normal; many mean broken data
or a broken setting, and a run that went on would exit 0 with a model that learned nothing. So the trainer
stops with :class:`TooManySkipped`, naming the count and the list:

- after every batch, once more than ``trainer.max_skipped_share`` of the epoch's clips were skipped: the epoch
  can no longer end under the share, so the verdict of its end is given as soon as it is certain;
- early in a run whose first clips were all unusable (at least ``EARLY_CLIPS``): clips drawn at random from
  the whole split are read too (the batch order may bunch bad clips: length buckets put files whose length is
  unknown side by side), and if none of those is usable either, the run stops. A split with at most the
  allowed share of unusable clips gives that by chance less often than ``PROBE_RISK``;
- at every epoch's end, when the epoch trained on no clip at all, whatever the share.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import logging
import math
import random

from ..data import collate
from ..nn.ctc import infeasibility
from ..randomness import rng_state, set_rng_state

EARLY_CLIPS = 32    # unusable clips in a row at the start of a run before clips are drawn at random to check
PROBE_RISK = 1e-6   # chance that a split within trainer.max_skipped_share fails that check all the same

log = logging.getLogger(__name__)


class TooManySkipped(ValueError):
    """Too few training clips could be used; the message names how many and where they are listed."""


def where_listed(run, skipped: list) -> str:
    first = f" (first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
    return f"they are listed in {run.run_dir / 'skipped.tsv'}{first}"


def check_skipped_share(run, epoch: int, progress) -> None:
    """After a batch: stop once the epoch's skipped clips exceed ``trainer.max_skipped_share`` of its clips."""
    share, total, skipped = run.cfg.trainer.max_skipped_share, len(run.train_set), len(progress.skipped)
    if skipped > share * total:
        raise TooManySkipped(f"epoch {epoch + 1}: {skipped} of its {total} training clips could not be used, more "
                             f"than trainer.max_skipped_share={share} allows: {where_listed(run, progress.skipped)}. "
                             f"Fix the data or drop those clips (or raise trainer.max_skipped_share)")


def check_trained_on_something(run, epoch: int, progress) -> None:
    """At an epoch's end: an epoch that trained on no clip stops the run, whatever the share allows."""
    if progress.samples:
        return
    total, skipped = len(run.train_set), len(progress.skipped)
    steps = f" and {progress.bad_steps} steps were skipped for a non-finite loss or gradient" \
        if progress.bad_steps else ""
    raise TooManySkipped(f"epoch {epoch + 1} trained on no clip: {skipped} of its {total} training clips could not "
                         f"be used{steps}; {where_listed(run, progress.skipped)}. Fix the data or the settings "
                         f"that make the clips unusable")


def probe_size(share: float) -> int:
    """Clips to draw at random so that a split with at most ``share`` of them unusable gives only unusable
    ones with chance below PROBE_RISK: share ** n < PROBE_RISK. 0 when no draw could tell (share 0 or 1)."""
    if not 0 < share < 1:
        return 0
    return math.ceil(math.log(PROBE_RISK) / math.log(share))


def check_early(run, progress) -> None:
    """While a run has used no clip yet: once its first EARLY_CLIPS clips were all unusable, read clips drawn
    at random from the whole split, and stop if none of them is usable either. Checks once per run."""
    if run.probed or len(progress.skipped) < EARLY_CLIPS:
        return
    run.probed = True
    share, total = run.cfg.trainer.max_skipped_share, len(run.train_set)
    count = probe_size(share)
    if not count or count >= total:
        return  # the epoch's end (or the share check) decides as soon as a draw would
    drawn = random.Random(run.cfg.trainer.seed).sample(range(total), count)
    if any_usable(run, drawn):
        log.info("the first %d training clips could not be used, but some of %d drawn at random from the split can: "
                 "training goes on (skipped clips are listed in %s)", len(progress.skipped), count,
                 run.run_dir / "skipped.tsv")
        return
    raise TooManySkipped(f"none of the first {len(progress.skipped)} training clips could be used, nor any of "
                         f"{count} more drawn at random from the {total} of the split, so (almost surely) more than "
                         f"trainer.max_skipped_share={share} of them cannot be: stopping before training on nothing; "
                         f"{where_listed(run, progress.skipped)}. Fix the data or the settings that make the "
                         f"clips unusable")


def any_usable(run, indices: list[int]) -> bool:
    """Whether any of the training clips ``indices`` could go into a step: readable, finite, of the declared
    step shape, with a transcript the model's output length allows. Read in batches, stopping at the first
    usable one; the model does not run (the frontend's length arithmetic says what it would output), and every
    RNG is left as it was, so a run that goes on is the run it would have been."""
    step_shape = run.train_set.input_spec.get("step_shape")
    batch_size = run.cfg.data.batch_size
    state = rng_state()
    try:
        for start in range(0, len(indices), batch_size):
            batch = collate([run.train_set[i] for i in indices[start:start + batch_size]], step_shape)
            if batch["inputs"] is None:
                continue
            out_lengths = run.model.frontend.output_lengths(batch["lengths"]).tolist()
            if any(infeasibility(t, n) is None for t, n in zip(batch["targets"], out_lengths)):
                return True
        return False
    finally:
        set_rng_state(state)
