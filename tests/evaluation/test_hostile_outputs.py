"""Evaluation outputs under hostile input: a clip whose log-probabilities are not finite is listed as
skipped (never scored as an empty transcript), references longer than the clip's output are found, and
CTM ids stay unique whatever the file names."""
import math

import pytest
import torch
from torch import nn

from ctcrnn.evaluation.scoring import run_model, too_long_references
from ctcrnn.evaluation.transcribe import check_finite, ctm_ids


class ThreeClips(torch.utils.data.Dataset):
    """(T, 2) inputs; "overflow" holds 1e30, which the model below turns into NaN log-probs, as an audio
    front end does with float samples of that size."""

    def __init__(self):
        self.input_spec = {"modality": "toy", "step_shape": [2]}

    def __len__(self) -> int:
        return 3

    def __getitem__(self, i: int) -> dict:
        x = torch.ones(4 + i, 2)
        if i == 1:
            x[2] = 1e30
        return {"id": ["ok", "overflow", "long_ref"][i], "input": x, "target": [[1, 2], [1], [1, 2] * 5][i]}


class Overflowing(nn.Module):
    """log_probs (B, T, 3): favours label 1 everywhere; NaN on every frame of an input that holds a value
    beyond 1e6 (its "overflow")."""

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        log_probs = torch.log_softmax(torch.tensor([0.0, 2.0, 0.0]), -1).expand(*x.shape[:2], 3).clone()
        overflow = (x.abs() > 1e6).flatten(1).any(1)
        log_probs[overflow] = math.nan
        return log_probs, lengths


def test_clips_with_non_finite_log_probs_are_listed_as_skipped_not_scored():
    skipped: list = []
    rows = run_model(Overflowing(), ThreeClips(), batch_size=3, device=torch.device("cpu"), unreadable=skipped)
    assert [r["id"] for r in rows] == ["ok", "long_ref"]
    assert [(r["hyp"], r["frames"]) for r in rows] == [([1], 4), ([1], 6)]
    assert len(skipped) == 1 and skipped[0][0] == "overflow"
    assert skipped[0][1].startswith("overflow: the model's log-probabilities are not finite (NaN or inf) on 5 of 5 "
                                    "output frames")
    # 10 reference labels, 6 output frames: no CTC output can hold it.
    assert [r["id"] for r in too_long_references(rows)] == ["long_ref"]


def test_check_finite_names_the_clip_and_counts_frames():
    log_probs = torch.zeros(4, 3)
    assert check_finite(log_probs, "a.wav") is log_probs
    log_probs[1, 0], log_probs[3, 2] = math.inf, math.nan
    with pytest.raises(ValueError, match=r"^a\.wav: the model's log-probabilities are not finite \(NaN or inf\) on 2 of 4"):
        check_finite(log_probs, "a.wav")


@pytest.mark.parametrize("paths, ids", [
    (["a/x.wav", "b/y.wav"], ["x", "y"]),                                  # stems, when they are unique
    (["day1/x.wav", "day2/x.wav", "z.wav"], ["day1/x.wav", "day2/x.wav", "z.wav"]),
    (["/data/a/x.wav", "/data/a/x.flac"], ["x.wav", "x.flac"]),             # same folder, same stem
    (["/data/a/x.wav", "/data/b/c/x.wav"], ["a/x.wav", "b/c/x.wav"]),
    (["my call.wav", "tab\tcall.wav"], ["my_call", "tab_call"]),           # whitespace would split a CTM line
    (["x.wav", "x.wav"], ["x.wav", "x.wav~2"]),                            # one file given twice
])
def test_ctm_ids_are_unique_and_hold_no_whitespace(paths, ids):
    assert ctm_ids(paths) == ids


@pytest.mark.parametrize("grid", [{"lm_weights": [0.0, math.nan]}, {"word_bonuses": [math.inf]}, {"word_bonuses": []}])
def test_tune_lm_refuses_a_grid_it_would_fill_with_nan_before_loading_anything(grid):
    from ctcrnn.evaluation.lm_tuning import tune_lm

    option = "--lm-weights" if "lm_weights" in grid else "--word-bonuses"
    with pytest.raises(ValueError, match=f"{option} must be one or more finite numbers"):
        tune_lm("no_such_checkpoint.pt", "no_such_lm.arpa", **grid)
