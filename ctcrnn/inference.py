"""Running a model: choosing the device and a batched forward over a loader, with greedy hypotheses.
Shared by training (validation) and evaluation (evaluate, tune-lm), so neither imports the other.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import torch

from .decoding.decoders import greedy_decode


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but no CUDA device is available: use trainer.device=auto or cpu")
    return device


@torch.no_grad()
def predict(model, loader, device, unreadable: list | None = None):
    """Yield (batch, log_probs (B, T', V) on CPU, out_lengths (B,), greedy hypotheses) in eval mode;
    items the dataset could not read are appended to ``unreadable`` as (id, reason)."""
    model.eval()
    for batch in loader:
        if unreadable is not None:
            unreadable += batch["skipped"]
        if batch["inputs"] is None:
            continue
        log_probs, out_lengths = model(batch["inputs"].to(device, non_blocking=True), batch["lengths"].to(device))
        log_probs, out_lengths = log_probs.cpu(), out_lengths.cpu()
        yield batch, log_probs, out_lengths, greedy_decode(log_probs, out_lengths)
