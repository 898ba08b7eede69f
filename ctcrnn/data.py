"""The dataset contract, batching and label vocabularies.

A dataset (built by a ``@register_dataset`` builder as ``builder(split, **args)``) is a
``torch.utils.data.Dataset`` whose items are dicts::

    {"id": str, "input": Tensor (T, *step_shape), "target": list[int] (no blank),
     "frame_labels": list[int] (optional, len T, for segmentation metrics)}

and which has ``labels`` (list[str], index 0 = "<blank>") and ``input_spec`` (dict: at least
``modality`` and ``step_shape``; plus the preprocessing a checkpoint needs to read new data the same way).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import torch

from .registry import DATASETS

BLANK_LABEL = "<blank>"


def build_dataset(name: str, split: str, args: dict):
    """Build a registered dataset split and check that it honours the contract."""
    dataset = DATASETS.build(name, split=split, **args)
    labels = getattr(dataset, "labels", None)
    if not labels or labels[0] != BLANK_LABEL:
        raise ValueError(f"dataset {name!r} must expose labels with {BLANK_LABEL!r} at index 0, got {labels!r:.80}")
    if "step_shape" not in getattr(dataset, "input_spec", {}):
        raise ValueError(f"dataset {name!r} must expose input_spec with a 'step_shape'")
    return dataset


def collate(items: list[dict]) -> dict:
    """Pad a list of items along time.

    Returns ``inputs`` (B, T_max, *step_shape) zero-padded, ``lengths`` (B,), ``targets`` (list of
    label lists), ``ids``, and ``frame_labels`` when every item has them.
    """
    lengths = torch.tensor([item["input"].shape[0] for item in items], dtype=torch.long)
    first = items[0]["input"]
    inputs = first.new_zeros((len(items), int(lengths.max()), *first.shape[1:]))
    for i, item in enumerate(items):
        inputs[i, : item["input"].shape[0]] = item["input"]
    batch = {"inputs": inputs, "lengths": lengths, "ids": [item["id"] for item in items],
             "targets": [list(item["target"]) for item in items]}
    if all("frame_labels" in item for item in items):
        batch["frame_labels"] = [list(item["frame_labels"]) for item in items]
    return batch
