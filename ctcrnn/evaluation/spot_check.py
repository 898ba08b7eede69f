"""A quick, fixed re-check of a model's score: greedy decoding of the first N clips of a split.

``ctcrnn bundle --reference-clips N`` records it in the bundle's config.json; a test re-runs it on every
shipped bundle and compares, so a bundle that stops reaching its score (changed code, damaged weights, a
preprocessing drift) is caught in seconds rather than by a full evaluation.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from pathlib import Path

from torch.utils.data import Subset

from ..inference import resolve_device
from .scoring import load_for_evaluation, run_model, transcript_scores

__all__ = ["spot_check"]


def spot_check(checkpoint: str | Path, clips: int = 40, split: str | None = None, device: str = "cpu",
               batch_size: int = 16) -> dict:
    """Greedy scores on the first ``clips`` items of ``split`` (default: the config's test split):
    {"split", "clips", "first_id", "last_id", "ter", "transcript_exact", and "wer"/"cer" for character
    models}. The ids pin down which clips were scored."""
    state, _, split, dataset, model = load_for_evaluation(checkpoint, split)
    if clips < 1:
        raise ValueError(f"spot check: clips must be >= 1, got {clips}")
    subset = Subset(dataset, range(min(clips, len(dataset))))
    results = run_model(model, subset, batch_size, resolve_device(device))
    if not results:
        raise ValueError(f"spot check: none of the first {clips} clips of {split} could be read")
    scores = transcript_scores(results, "hyp", state["labels"], state["input_spec"])
    return {"split": split, "clips": len(results), "first_id": results[0]["id"], "last_id": results[-1]["id"],
            **{k: round(v, 4) for k, v in scores.items()}}
