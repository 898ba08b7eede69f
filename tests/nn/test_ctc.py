"""CTC feasibility: infeasible samples are reported by id and skipped, never turned into inf/NaN."""
import math

import pytest
import torch

from ctcrnn.nn.ctc import ctc_loss, infeasibility, min_ctc_frames


def test_min_frames_counts_repeats():
    assert min_ctc_frames([1, 2, 3]) == 3
    assert min_ctc_frames([1, 1, 2]) == 4
    assert min_ctc_frames([2, 2, 2]) == 5


def test_infeasibility_reasons():
    assert infeasibility([1, 2], 2) is None
    assert "need 3 frames but the model outputs 2" in infeasibility([1, 1], 2)
    assert infeasibility([], 4) == "empty transcript"


@pytest.mark.parametrize("target", [[0, 1], [1, 5], [-1]])
def test_blank_or_out_of_range_labels_raise_with_the_id(target):
    log_probs = torch.zeros(1, 4, 5).log_softmax(-1)
    with pytest.raises(ValueError, match="clip_7 holds label indices"):
        ctc_loss(log_probs, torch.tensor([4]), [target], ["clip_7"])


def test_infeasible_samples_are_skipped_not_nan():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, requires_grad=True)
    log_probs = logits.log_softmax(-1)
    out_lengths = torch.tensor([4, 4, 2])
    targets = [[1, 2], [3, 3, 3], [1, 1]]  # [3,3,3] needs 5 frames, [1,1] needs 3
    result = ctc_loss(log_probs, out_lengths, targets, ["a", "b", "c"])
    assert result.kept == 1 and [sid for sid, _ in result.skipped] == ["b", "c"]
    expected = torch.nn.functional.ctc_loss(log_probs[:1].transpose(0, 1), torch.tensor([1, 2]), torch.tensor([4]),
                                            torch.tensor([2]), reduction="sum")
    torch.testing.assert_close(result.loss, expected)
    result.loss.backward()
    assert torch.isfinite(logits.grad).all() and logits.grad[1:].abs().sum() == 0


def test_all_infeasible_gives_no_loss():
    result = ctc_loss(torch.zeros(1, 1, 3).log_softmax(-1), torch.tensor([1]), [[1, 2]], ["x"])
    assert result.loss is None and result.kept == 0 and result.skipped[0][0] == "x"


def test_loss_is_mean_over_kept_samples():
    log_probs = torch.full((2, 3, 2), math.log(0.5))
    result = ctc_loss(log_probs, torch.tensor([3, 3]), [[1], [1]], ["a", "b"])
    # Paths for "1" over 3 frames with p=0.5 each: 6 valid paths of 8 -> -log(6/8)
    torch.testing.assert_close(result.loss, torch.tensor(-math.log(6 / 8)))
