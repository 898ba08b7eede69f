"""Grid search of LM weight and word bonus on a dev split: the model runs once, the decoder once per pair.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from ..decoding.factory import delimiter_id, make_decoder, read_lexicon
from ..decoding.lm import read_arpa
from ..inference import resolve_device
from ..paths import check_output
from .scoring import load_for_evaluation, run_model, spells_words, transcript_scores

__all__ = ["tune_lm"]

log = logging.getLogger(__name__)


def tune_lm(checkpoint: str | Path, lm: str | Path, split: str | None = None, lm_weights=(0.0, 0.25, 0.5, 1.0, 2.0),
            word_bonuses=(-1.0, 0.0, 1.0, 2.0), beam_size: int = 16, lexicon: str | None = None,
            word_delimiter: str | None = None, device: str = "auto", batch_size: int | None = None,
            out: str | Path | None = None, engine: str = "ctcrnn", unk_score: float | None = None) -> dict:
    """Token error rate (%) of every (lm_weight, word_bonus) pair on ``split`` (default: the config's
    validation split, so that the chosen pair is not fitted to the test data; the test split is warned about).

    Returns {"split", "greedy_ter", "grid": [{"lm_weight", "word_bonus", "ter"}, ...], "best": {...}};
    for character data the grid and greedy result also carry "wer" and "cer" and the best pair is the one
    with the lowest WER. Ties go to the smaller weight, then the smaller bonus (the least LM influence that
    does as well). ``engine`` and ``unk_score``: as in :func:`ctcrnn.decoding.factory.make_decoder`.
    Written to ``out`` as JSON when given (the location is checked first). Clips that cannot be read, or
    whose log-probs are not finite, are left out and counted in "unreadable".
    """
    for option, values in (("--lm-weights", lm_weights), ("--word-bonuses", word_bonuses)):
        if not values or not all(math.isfinite(v) for v in values):
            raise ValueError(f"{option} must be one or more finite numbers, got {list(values)}")
    if engine == "flashlight" and lexicon is None and any(bonus != 0 for bonus in word_bonuses):
        raise ValueError("flashlight's lexicon-free decoder has no word bonus: pass --word-bonuses 0, or a --lexicon")
    if out:
        check_output(out, "--out")
    state, cfg, split, dataset, model = load_for_evaluation(checkpoint, split, default="val")
    spec = state["input_spec"]
    delimiter = word_delimiter or spec.get("word_delimiter")
    # The LM and the lexicon are read once for the whole grid, and a bad one is reported before the model runs.
    options = {"lm": read_arpa(lm) if engine == "ctcrnn" else str(lm), "word_delimiter": delimiter, "engine": engine,
               "unk_score": unk_score}
    if lexicon:
        options["lexicon"] = read_lexicon(lexicon, state["labels"], skip=(0, delimiter_id(state["labels"], delimiter)))

    def decoder(weight: float, bonus: float):
        return make_decoder(state["labels"], beam_size, lm_weight=weight, word_bonus=bonus, **options)

    decoder(lm_weights[0], word_bonuses[0])
    if split == cfg.data.test_split:
        log.warning("tuning on the test split (%s): the chosen pair is fitted to the data it will be scored on, "
                    "so test results decoded with it are optimistic; tune on the validation split", split)
    unreadable: list = []
    rows = run_model(model, dataset, batch_size or cfg.data.eval_batch_size, resolve_device(device),
                     cfg.data.num_workers, keep_log_probs=True, unreadable=unreadable)
    if not rows:
        raise ValueError(f"nothing to tune on {split}: all {len(unreadable)} clips were unreadable, e.g. "
                         + "; ".join(f"{i}: {reason}" for i, reason in unreadable[:3]))
    if unreadable:
        log.warning("%d clips of %s could not be read or gave non-finite log-probabilities and are left out, e.g. "
                    "%s: %s", len(unreadable), split, *unreadable[0])
    metric = "wer" if spells_words(spec) else "ter"
    log_probs = pad_sequence([r["log_probs"] for r in rows], batch_first=True)   # (N, T', V): all clips at once
    lengths = torch.tensor([r["log_probs"].shape[0] for r in rows])
    grid = []
    for weight in lm_weights:
        for bonus in word_bonuses:
            for row, nbest in zip(rows, decoder(weight, bonus)(log_probs, lengths)):
                row["beam"] = nbest[0].tokens
            scores = transcript_scores(rows, "beam", state["labels"], spec)
            scores.pop("transcript_exact")
            grid.append({"lm_weight": weight, "word_bonus": bonus, **scores})
    best = min(grid, key=lambda g: (round(g[metric], 9), g["lm_weight"], g["word_bonus"]))
    greedy = transcript_scores(rows, "hyp", state["labels"], spec)
    result = {"checkpoint": str(checkpoint), "split": split, "beam_size": beam_size, "lm": str(lm),
              "metric": metric, "greedy_ter": greedy["ter"], "greedy": greedy, "grid": grid, "best": best,
              "unreadable": len(unreadable)}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=2) + "\n")
    return result

