"""CTC decoding: turn a model's per-frame log-probabilities into label sequences. Blank is index 0.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from itertools import groupby

import torch

__all__ = ["greedy_decode"]


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best label per frame, repeats collapsed, blanks dropped (so ``a _ a`` stays ``a a``).

    log_probs: (B, T, V) log-probabilities (or any scores: only the argmax matters); lengths: (B,) valid
    frames per utterance, so padding frames never produce labels. Returns B label lists.
    """
    best = log_probs.argmax(dim=-1).tolist()  # (B, T): one call for the batch, one device-to-host copy
    return [[label for label, _ in groupby(frames[:length]) if label != blank]
            for frames, length in zip(best, lengths.tolist())]
