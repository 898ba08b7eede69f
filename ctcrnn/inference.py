"""Running a model: choosing the device and a batched forward over a loader, with greedy hypotheses.
Shared by training (validation) and evaluation (evaluate, tune-lm), so neither imports the other.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import torch

from .decoding.decoders import greedy_decode


def resolve_device(name: str, option: str = "--device") -> torch.device:
    """The torch device ``name`` says (auto: CUDA when present, else the CPU); ValueError naming ``option``
    (``trainer.device``, ``--device``) and the valid choices when it is not a device or this machine lacks it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    choices = "auto (CUDA when present), cpu, cuda or cuda:N"
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):  # torch's message lists every backend it was built with
        raise ValueError(f"{option}={name!r} is not a device: choose {choices}") from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"{option}={name} but this machine has no CUDA device: use {option}=auto or cpu")
        if device.index is not None and device.index >= count:
            raise ValueError(f"{option}={name} but this machine has {count} CUDA device(s): cuda:0 to "
                             f"cuda:{count - 1}")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{option}={name} but MPS is not available on this machine: use {option}=auto or cpu")
    elif device.type not in ("cpu", "mps"):
        raise ValueError(f"{option}={name!r} is not supported: choose {choices}")
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
