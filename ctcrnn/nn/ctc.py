"""CTC loss with an explicit feasibility check: infeasible samples are skipped and reported, never inf/NaN.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .model import BLANK


def min_ctc_frames(target: list[int]) -> int:
    """Fewest frames a CTC path for ``target`` needs: one per label plus a blank between each repeat.

    >>> min_ctc_frames([1, 2, 3]), min_ctc_frames([1, 1, 2, 2, 2])
    (3, 8)
    """
    repeats = sum(1 for a, b in zip(target, target[1:]) if a == b)
    return len(target) + repeats


def check_labels(target: list[int], num_classes: int, sample_id: str) -> None:
    """Blank or out-of-range labels are a vocabulary bug, not a hard sample: raise, naming the sample."""
    bad = sorted({t for t in target if t == BLANK or not 0 <= t < num_classes})
    if bad:
        raise ValueError(f"transcript of {sample_id} holds label indices {bad}, but labels must lie in "
                         f"[1, {num_classes}) (0 is the blank): the dataset and the model's label list disagree")


def infeasibility(target: list[int], out_length: int) -> str | None:
    """Why ``target`` cannot be trained with ``out_length`` frames, or None if it can."""
    if len(target) == 0:
        return "empty transcript"
    need = min_ctc_frames(target)
    if need > out_length:
        return (f"{len(target)} labels ({need - len(target)} repeats) need {need} frames but the model "
                f"outputs {out_length}: shorten the subsampling or drop the clip")
    return None


@dataclass
class CTCResult:
    loss: torch.Tensor | None              # mean loss over kept samples; None when all were skipped
    kept: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (sample id, reason)


def ctc_loss(log_probs: torch.Tensor, out_lengths: torch.Tensor, targets: list[list[int]],
             ids: list[str]) -> CTCResult:
    """Mean per-sample CTC loss over the feasible samples of a batch.

    log_probs: (B, T, V) float log-probabilities; out_lengths: (B,); targets: B label lists.
    """
    for target, sample_id in zip(targets, ids):
        check_labels(target, log_probs.shape[-1], sample_id)
    reasons = [infeasibility(t, int(n)) for t, n in zip(targets, out_lengths.tolist())]
    keep = [i for i, r in enumerate(reasons) if r is None]
    skipped = [(ids[i], r) for i, r in enumerate(reasons) if r is not None]
    if not keep:
        return CTCResult(None, 0, skipped)
    index = torch.tensor(keep, device=log_probs.device)
    flat = torch.tensor([label for i in keep for label in targets[i]], dtype=torch.long)
    target_lengths = torch.tensor([len(targets[i]) for i in keep], dtype=torch.long)
    loss = F.ctc_loss(log_probs.index_select(0, index).transpose(0, 1), flat.to(log_probs.device),
                      out_lengths.index_select(0, index), target_lengths.to(log_probs.device),
                      blank=BLANK, reduction="sum", zero_infinity=False)
    return CTCResult(loss / len(keep), len(keep), skipped)
