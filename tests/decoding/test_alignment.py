"""Forced alignment on hand-made log-probs with known best paths, and gap splits against brute force."""
import math

import pytest
import torch
from torchaudio.functional import forced_align

from ctcrnn.decoding.alignment import Segment, align_batch, forced_align_segments, frame_labels_from_segments

BLANK_ROW = [0.8, 0.1, 0.1]  # (blank, 1, 2) probabilities


def log_probs_from(rows: list[list[float]]) -> torch.Tensor:
    """(T, V) log-probs from per-frame probabilities."""
    return torch.tensor(rows).log()


def two_token_clip(gap: list[list[float]]) -> torch.Tensor:
    """Best path ``_ 1 <gap blanks> 2 _ _`` (each row's argmax, and it collapses to [1, 2])."""
    return log_probs_from([BLANK_ROW, [0.1, 0.8, 0.1], *gap, [0.1, 0.1, 0.8], BLANK_ROW, BLANK_ROW])


def test_known_path_gives_spikes_and_tiling_segments():
    lp = two_token_clip([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.1, 0.3]])
    log_08 = pytest.approx(math.log(0.8), abs=1e-6)
    # Spikes: token 1 on frame 1, token 2 on frame 5; score = log p of the spike frames.
    assert forced_align_segments(lp, [1, 2], fill_blanks=False) == [Segment(1, 1, 2, log_08), Segment(2, 5, 6, log_08)]
    # Tiled: leading blank to token 1, trailing to token 2, gap frames 2, 3 prefer 1 and frame 4 prefers 2.
    assert forced_align_segments(lp, [1, 2]) == [Segment(1, 0, 4, log_08), Segment(2, 4, 8, log_08)]


@pytest.mark.parametrize("gap, boundary", [
    ([[0.6, 0.3, 0.1], [0.6, 0.1, 0.3], [0.6, 0.1, 0.3]], 3),
    ([[0.6, 0.1, 0.3], [0.6, 0.1, 0.3], [0.6, 0.1, 0.3]], 2),   # the whole gap goes to token 2
    ([[0.6, 0.3, 0.1], [0.6, 0.3, 0.1], [0.6, 0.3, 0.1]], 5),   # ... or to token 1
    # +log 3, -log 8, +log 3: one boundary cannot give frame 4 back to token 1, so the best is after frame 2.
    ([[0.6, 0.3, 0.1], [0.55, 0.05, 0.4], [0.6, 0.3, 0.1]], 3),
])
def test_gap_split_follows_the_log_probs(gap, boundary):
    first, second = forced_align_segments(two_token_clip(gap), [1, 2])
    assert (first.start, first.end, second.start, second.end) == (0, boundary, boundary, 8)


def test_gap_split_is_the_best_single_boundary():
    """Brute force over every boundary of every gap, on random log-probs."""
    torch.manual_seed(0)
    lp = (3 * torch.randn(40, 6)).log_softmax(-1)
    tokens = [2, 5, 5, 1, 3, 3, 4]
    spikes = forced_align_segments(lp, tokens, fill_blanks=False)
    tiled = forced_align_segments(lp, tokens)
    for i, (left, right) in enumerate(zip(spikes, spikes[1:])):
        boundary = tiled[i].end
        if left.label == right.label:  # the log-probs cannot choose: middle of the gap
            assert boundary == (left.end + right.start) // 2
            continue

        def score(s):
            return lp[left.end:s, left.label].double().sum() + lp[s:right.start, right.label].double().sum()

        scores = [score(s) for s in range(left.end, right.start + 1)]
        assert boundary == left.end + max(range(len(scores)), key=lambda j: (scores[j], -j))


def test_segments_cover_all_frames_in_transcript_order():
    torch.manual_seed(1)
    lp = (3 * torch.randn(30, 5)).log_softmax(-1)
    tokens = [3, 1, 1, 4, 2]
    segments = forced_align_segments(lp, tokens)
    assert [s.label for s in segments] == tokens
    assert segments[0].start == 0 and segments[-1].end == 30
    assert all(a.end == b.start for a, b in zip(segments, segments[1:]))
    assert all(s.end > s.start for s in segments)
    # Each spike lies inside its tiled segment and keeps its score.
    for spike, seg in zip(forced_align_segments(lp, tokens, fill_blanks=False), segments):
        assert seg.start <= spike.start < spike.end <= seg.end and seg.score == spike.score
    frames = frame_labels_from_segments(segments, 30)
    assert frames == [s.label for s in segments for _ in range(s.start, s.end)]  # each frame its segment's label
    owner = frame_labels_from_segments([Segment(i, s.start, s.end, s.score) for i, s in enumerate(segments)], 30)
    assert owner == sorted(owner)  # monotone in transcript order


def test_spikes_reproduce_the_ctc_path():
    torch.manual_seed(2)
    lp = (3 * torch.randn(25, 5)).log_softmax(-1)
    tokens = [1, 1, 4, 2]
    path, _ = forced_align(lp[None], torch.tensor([tokens], dtype=torch.int32), blank=0)
    spikes = forced_align_segments(lp, tokens, fill_blanks=False)
    assert frame_labels_from_segments(spikes, 25, fill=0) == path[0].tolist()


def test_repeated_tokens_stay_separate():
    # Path 1 _ _ 1 _: two segments of label 1; the 2-frame gap is split in the middle.
    lp = log_probs_from([[0.1, 0.9], [0.9, 0.1], [0.9, 0.1], [0.1, 0.9], [0.9, 0.1]])
    assert [(s.label, s.start, s.end) for s in forced_align_segments(lp, [1, 1])] == [(1, 0, 2), (1, 2, 5)]
    # Only 3 frames: the blank between the repeats is forced even though every frame prefers 1.
    lp = log_probs_from([[0.1, 0.9]] * 3)
    assert [(s.start, s.end) for s in forced_align_segments(lp, [1, 1], fill_blanks=False)] == [(0, 1), (2, 3)]
    assert [(s.start, s.end) for s in forced_align_segments(lp, [1, 1])] == [(0, 1), (1, 3)]


def test_infeasible_and_invalid_transcripts():
    lp = log_probs_from([[0.1, 0.5, 0.4]] * 2)
    with pytest.raises(ValueError, match="1 repeated neighbours needs at least 3 frames but log_probs has 2"):
        forced_align_segments(lp, [1, 1])
    with pytest.raises(ValueError, match="needs at least 3 frames"):
        forced_align_segments(lp, [1, 2, 1])
    with pytest.raises(ValueError, match=r"holds \[0, 3\]"):
        forced_align_segments(lp, [1, 0, 3])
    with pytest.raises(ValueError, match="align_batch"):
        forced_align_segments(lp[None], [1])


def test_empty_transcript():
    assert forced_align_segments(log_probs_from([BLANK_ROW] * 4), []) == []


def test_frame_labels_from_segments():
    segments = [Segment(1, 1, 2, 0.0), Segment(2, 5, 6, 0.0)]
    assert frame_labels_from_segments(segments, 8, fill=0) == [0, 1, 0, 0, 0, 2, 0, 0]
    assert frame_labels_from_segments([], 2) == [None, None]
    with pytest.raises(ValueError, match="does not fit in 5 frames"):
        frame_labels_from_segments(segments, 5)


def test_align_batch_matches_single_utterances():
    torch.manual_seed(3)
    lp = (3 * torch.randn(2, 12, 5)).log_softmax(-1)
    lengths, transcripts = torch.tensor([12, 7]), [[1, 2, 2], [4]]
    assert align_batch(lp, lengths, transcripts) == [forced_align_segments(lp[0], [1, 2, 2]),
                                                     forced_align_segments(lp[1, :7], [4])]
    with pytest.raises(ValueError, match="utterance 1 of the batch"):
        align_batch(lp, torch.tensor([12, 2]), [[1], [3, 3]])
