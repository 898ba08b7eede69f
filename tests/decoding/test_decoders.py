"""Greedy CTC decoding on hand-made log-probs whose best path is known, and the decoder's greedy path (beam 1)."""
import torch

from ctcrnn.decoding.decoders import greedy_decode, prefix_beam_search


def log_probs_for(paths: list[list[int]], num_classes: int = 4) -> torch.Tensor:
    """(B, T, V) log-probs whose per-frame argmax is ``paths[b][t]``."""
    return (5.0 * torch.nn.functional.one_hot(torch.tensor(paths), num_classes)).log_softmax(-1)


def full(batch: list[list[int]]) -> torch.Tensor:
    return torch.tensor([len(path) for path in batch])


def test_repeats_collapse_and_blanks_drop():
    paths = [[1, 1, 2, 2, 0], [0, 3, 0, 0, 2]]
    assert greedy_decode(log_probs_for(paths), full(paths)) == [[1, 2], [3, 2]]


def test_blank_separates_repeated_labels():
    paths = [[1, 0, 1, 1, 0]]
    assert greedy_decode(log_probs_for(paths), full(paths)) == [[1, 1]]


def test_lengths_cut_padding():
    # The padding frames (label 3) must not be decoded; a zero-length utterance decodes to [].
    paths = [[1, 2, 2, 3, 3], [2, 0, 3, 3, 3], [3, 3, 3, 3, 3]]
    assert greedy_decode(log_probs_for(paths), torch.tensor([3, 2, 0])) == [[1, 2], [2], []]


def test_all_blank_is_empty():
    paths = [[0, 0, 0], [0, 0, 0]]
    assert greedy_decode(log_probs_for(paths), full(paths)) == [[], []]


def test_other_blank_index():
    paths = [[3, 1, 3, 1, 0]]
    assert greedy_decode(log_probs_for(paths), full(paths), blank=3) == [[1, 1, 0]]


def test_greedy_decoding_of_frameless_input():
    """Regression: beam 1 (greedy) on log-probs with no frames crashed in the CTC likelihood of the results."""
    hyps = prefix_beam_search(torch.zeros(2, 0, 4), torch.zeros(2, dtype=torch.long), 1)
    assert [(h[0].tokens, h[0].score) for h in hyps] == [([], 0.0), ([], 0.0)]
