"""Checkpoint averaging (``ctcrnn average``): the mean of the weights of several checkpoints of one run,
as icefall's ``--avg`` (the last few epochs' checkpoints, averaged, usually decode a little better than any one).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..checkpoint import CheckpointError, load_checkpoint, weight_mismatches

__all__ = ["average_checkpoints"]


def average_checkpoints(paths: list[str | Path]) -> dict:
    """The checkpoint of several of one run's checkpoints with their weights averaged (icefall's --avg):
    floating tensors are the mean (summed in float64), others (BatchNorm's num_batches_tracked) come from
    the last. The result keeps the last checkpoint's arch, labels, input spec, config, epoch and step, names
    its sources in ``averaged_from``, and has no optimizer state (start a run from it with init_from)."""
    if not paths:
        raise ValueError("average: give at least one checkpoint")
    states = [load_checkpoint(p) for p in paths]
    first = states[0]
    for path, state in zip(paths[1:], states[1:]):
        if state["arch"] != first["arch"]:
            raise CheckpointError(f"{path} has architecture {state['arch']} but {paths[0]} has {first['arch']}: "
                                  f"only checkpoints of one run (one architecture) can be averaged")
        if list(state["labels"]) != list(first["labels"]):
            raise CheckpointError(f"{path} has other labels than {paths[0]}: average checkpoints of one run only")
        problems = weight_mismatches(first["model"], state["model"])
        if problems:
            raise CheckpointError(f"{path} and {paths[0]} hold different tensors: {problems}")
    last = states[-1]
    averaged = {}
    for key, value in last["model"].items():
        if value.is_floating_point():
            total = sum(s["model"][key].to(torch.float64) for s in states)
            averaged[key] = (total / len(states)).to(value.dtype)
        else:
            averaged[key] = value.clone()
    keep = ("arch", "labels", "input_spec", "config", "epoch", "step", "metrics")
    return {**{k: last[k] for k in keep if k in last}, "model": averaged,
            "averaged_from": [str(p) for p in paths]}
