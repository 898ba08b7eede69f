"""Fine-tuning: start a fresh model from a checkpoint's or bundle's weights (``trainer.init_from``), across a
change of vocabulary, and keep chosen modules fixed (``trainer.freeze``).

Unlike ``--resume``, nothing but the weights is taken: the optimizer, schedule, step and RNG start afresh.
When the vocabularies differ, a label present in both keeps its row of every output layer (the CTC head and
the auxiliary CTC head, when the model has one); a new label keeps the fresh initialisation of its row;
a label only the source had is dropped. The blank is index 0 in both.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..checkpoint import CheckpointError, load_checkpoint, weight_mismatches

__all__ = ["freeze", "frozen_modules", "initialize_from", "output_layers"]


def output_layers(model: nn.Module) -> list[str]:
    """Names of the modules whose rows are the labels: ``head`` and, when present, ``aux_head``."""
    return [name for name in ("head", "aux_head") if isinstance(getattr(model, name, None), nn.Linear)]


def initialize_from(model: nn.Module, source: str | Path | dict, labels: list[str]) -> dict:
    """Load the weights of ``source`` (a checkpoint, a bundle folder or shipped bundle name, or a loaded
    checkpoint dict) into ``model``, a freshly built model whose labels are ``labels`` (index 0 = blank).

    Every tensor outside the output layers must match by name and shape (else a CheckpointError naming the
    differing parameters). Output-layer rows are copied per label: ``kept`` labels take the source's row,
    ``new`` ones keep their fresh rows, ``dropped`` ones (in the source only) are left out. Returns a report
    for the training log: {"source", "loaded", "kept", "new", "dropped", "remapped"}.
    """
    state = source if isinstance(source, dict) else load_checkpoint(source)
    name = str(source) if not isinstance(source, dict) else state.get("bundle_dir", "checkpoint")
    old_labels, tensors = list(state["labels"]), state["model"]
    expected = model.state_dict()
    row_tensors = [f"{head}.{kind}" for head in output_layers(model) for kind in ("weight", "bias")
                   if f"{head}.{kind}" in expected]
    if row_tensors and expected[row_tensors[0]].shape[0] != len(labels):
        raise ValueError(f"the model has {expected[row_tensors[0]].shape[0]} output rows but {len(labels)} labels "
                         f"were given: pass the labels the model was built for")
    # Output layers may differ in their number of rows (labels), never in what a row holds.
    problems = [weight_mismatches(expected, tensors, skip=tuple(row_tensors))] + [
        f"missing tensors: {k}" if k not in tensors else
        f"mis-shaped tensors: {k} {tuple(tensors[k].shape[1:])} per label where the model has "
        f"{tuple(expected[k].shape[1:])}"
        for k in row_tensors if k not in tensors or tensors[k].shape[1:] != expected[k].shape[1:]]
    problems = "; ".join(p for p in problems if p)
    if problems:
        raise CheckpointError(f"{name} ({state['arch']['name']}) does not fit this model's architecture "
                              f"({getattr(model, 'arch', {}).get('name', type(model).__name__)}): {problems}")
    if row_tensors and len(old_labels) != tensors[row_tensors[0]].shape[0]:
        raise CheckpointError(f"{name} lists {len(old_labels)} labels but its output layer has "
                              f"{tensors[row_tensors[0]].shape[0]} rows")
    old_index = {label: i for i, label in enumerate(old_labels) if i}
    pairs = [(0, 0)] + [(i, old_index[label]) for i, label in enumerate(labels) if i and label in old_index]
    new_rows, old_rows = torch.tensor([p[0] for p in pairs]), torch.tensor([p[1] for p in pairs])
    merged = {k: v for k, v in tensors.items() if k not in row_tensors}
    for key in row_tensors:
        rows = expected[key].clone()
        rows[new_rows] = tensors[key][old_rows].to(rows.dtype)
        merged[key] = rows
    model.load_state_dict(merged)
    kept = [label for i, label in enumerate(labels) if i and label in old_index]
    return {"source": name, "loaded": len(merged), "kept": kept,
            "new": [label for i, label in enumerate(labels) if i and label not in old_index],
            "dropped": [label for label in old_labels[1:] if label not in set(labels[1:])],
            "remapped": row_tensors if labels != old_labels else []}


def freeze(model: nn.Module, prefixes: list[str]) -> list[str]:
    """Set ``requires_grad=False`` on every parameter whose name is a prefix or starts with ``prefix.``
    (``"frontend"``, ``"encoder.layers.0"``); returns their names. An unknown prefix is a ValueError listing
    the model's top-level modules. Only weights are frozen: BatchNorm running statistics in a frozen module
    still update in training mode unless that module is put in eval mode."""
    names = [n for n, _ in model.named_parameters()]
    frozen = []
    for prefix in prefixes:
        prefix = prefix.rstrip(".")
        matched = [n for n in names if n == prefix or n.startswith(prefix + ".")]
        if not matched:
            top = [n for n, m in model.named_children() if any(True for _ in m.parameters())]
            raise ValueError(f"trainer.freeze: {prefix!r} names no parameters of this model; its top-level modules "
                             f"are {', '.join(top)} (deeper names go through dots, e.g. 'encoder.layers.0')")
        frozen += [n for n in matched if n not in frozen]
    parameters = dict(model.named_parameters())
    for name in frozen:
        parameters[name].requires_grad_(False)
    return frozen


def frozen_modules(model: nn.Module, prefixes: list[str]) -> list[nn.Module]:
    """The modules that ``prefixes`` name (prefixes naming single parameters are left out): put them back in
    eval mode after every ``model.train()`` so their BatchNorm statistics stay fixed with their weights."""
    modules = dict(model.named_modules())
    return [modules[p.rstrip(".")] for p in prefixes if p.rstrip(".") in modules]
