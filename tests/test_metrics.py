"""Metrics against hand-computed values, jiwer, and a port of MS-TCN's F1 code."""
import random

import numpy as np
import pytest

from ctcrnn.metrics import (cer, edit_distance, error_counts, error_rate, f1_at_k, frame_accuracy, segment_edit_score,
                            segmentation_scores, segments, wer)


# ----------------------------------------------------------------------------------------------- transcripts

@pytest.mark.parametrize("ref, hyp, counts", [
    ("kitten", "sitting", (2, 0, 1)),
    ("abc", "abd", (1, 0, 0)),
    ("abc", "ab", (0, 1, 0)),
    ("ab", "abc", (0, 0, 1)),
    ([], [1, 2], (0, 0, 2)),
    ([1, 2], [], (0, 2, 0)),
    ([1, 2, 3], [1, 2, 3], (0, 0, 0)),
    ([], [], (0, 0, 0)),
])
def test_error_counts_and_edit_distance(ref, hyp, counts):
    assert error_counts(ref, hyp) == counts
    assert edit_distance(ref, hyp) == sum(counts)


def test_edit_distance_symmetric_cases():
    assert edit_distance("abc", "acb") == 2
    assert edit_distance(["take", "pour"], ["pour", "take"]) == 2


def levenshtein_table(ref, hyp) -> int:
    """The textbook O(n m) dynamic programme, the oracle for the compiled distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def test_edit_distance_and_counts_equal_the_dynamic_programme():
    rng = random.Random(0)
    for _ in range(2000):
        ref = [rng.randint(0, 3) for _ in range(rng.randint(0, 9))]
        hyp = [rng.randint(0, 3) for _ in range(rng.randint(0, 9))]
        s, d, i = error_counts(ref, hyp)
        assert s + d + i == edit_distance(ref, hyp) == levenshtein_table(ref, hyp)
        assert d - i == len(ref) - len(hyp) and s + d <= len(ref)  # a real alignment of the two sequences
    ref = [rng.choice("abcdefgh") for _ in range(400)]
    hyp = [c if rng.random() < 0.8 else rng.choice("abcdefgh") for c in ref[50:]]
    assert edit_distance(ref, hyp) == sum(error_counts(ref, hyp)) == levenshtein_table(ref, hyp)
    # Long and far apart: rapidfuzz's alignment switches to Hirschberg's linear-memory split here (a banded
    # bit matrix of 1 MiB or more); its counts must still add up to the distance, computed separately.
    ref, hyp = [rng.randint(0, 3) for _ in range(4000)], [rng.randint(0, 3) for _ in range(3500)]
    s, d, i = error_counts(ref, hyp)
    assert s + d + i == edit_distance(ref, hyp) and d - i == 500


def test_tokens_are_compared_by_equality_not_by_hash():
    # rapidfuzz alone compares such tokens by hash(): numpy's -1 and -2 hash alike, 97 and "a" map alike.
    assert edit_distance([np.int64(-1)], [np.int64(-2)]) == 1 and edit_distance([np.int64(-1)], [-1]) == 0
    assert edit_distance([97], ["a"]) == 1 and edit_distance([(1, 2)], [(1, 2)]) == 0
    assert edit_distance(["a b"], ["a", "b"]) == 2


def test_strings_and_label_ids_go_to_rapidfuzz_as_they_are_with_the_same_results():
    """Two strings, or two lists of Python ints, skip the token-to-code mapping: same distances as the
    mapped lists and the dynamic programme."""
    rng = random.Random(1)
    for _ in range(500):
        ref = "".join(rng.choice("abé ") for _ in range(rng.randint(0, 9)))
        hyp = "".join(rng.choice("abé ") for _ in range(rng.randint(0, 9)))
        ids = [ord(c) for c in ref], [ord(c) for c in hyp]
        assert edit_distance(ref, hyp) == edit_distance(list(ref), list(hyp)) == levenshtein_table(ref, hyp)
        assert edit_distance(*ids) == edit_distance([np.int64(i) for i in ids[0]], ids[1]) == edit_distance(ref, hyp)
        assert error_counts(ref, hyp) == error_counts(list(ref), list(hyp))


def test_a_million_token_reference_is_scored_exactly():
    """A corrupt manifest line can hold a transcript of millions of tokens against a hypothesis bounded by
    the clip's frames: rapidfuzz's bit-parallel distance and Hirschberg alignment keep memory linear, and
    every metric returns the exact count (this completes in well under a second of compiled code)."""
    n = 1_000_000
    ref = [1 + i % 7 for i in range(n)]
    hyp = ref[:5] + [9] + ref[6:10]  # the first 10 tokens, one substituted
    assert edit_distance(ref, hyp) == n - 9
    assert error_counts(ref, hyp) == (1, n - 10, 0)
    assert error_rate([ref, [1]], [hyp, [1]]) == pytest.approx(100 * (n - 9) / (n + 1), rel=1e-12)
    assert edit_distance(ref, ref[: n // 2] + [0] + ref[n // 2:]) == 1  # long on both sides, one insertion
    text = " ".join(map(str, ref))
    assert wer([text], ["1 2 3"]) == pytest.approx(100 * (n - 3) / n, rel=1e-12)
    assert cer([text], [text[:7]]) == pytest.approx(100 * (len(text) - 7) / len(text), rel=1e-12)


def test_error_counts_split_equals_jiwer():
    import jiwer
    rng = random.Random(1)
    for _ in range(300):
        ref = [rng.choice(["bin", "blue", "at", "f"]) for _ in range(rng.randint(1, 12))]
        hyp = [rng.choice(["bin", "blue", "at", "f"]) for _ in range(rng.randint(0, 12))]
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        assert error_counts(ref, hyp) == (out.substitutions, out.deletions, out.insertions)


def test_error_rate_is_corpus_level():
    # 1 edit over 5 reference tokens = 20 %; the mean of per-sentence rates would be (0 + 100) / 2 = 50 %.
    assert error_rate([[1, 2, 3, 4], [5]], [[1, 2, 3, 4], [6]]) == 20.0
    assert error_rate([[1]], [[1, 2, 3]]) == 200.0  # insertions can take it past 100 %


def test_error_rate_errors():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        error_rate([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="all references are empty"):
        error_rate([[], []], [[1], []])


def test_wer_cer_hand_computed():
    refs, hyps = ["the cat sat", "hello world"], ["the cat sit on", "hello"]
    assert wer(refs, hyps) == 60.0  # (sat->sit, +on, -world) = 3 edits / 5 words
    assert wer(["  a   b "], ["a b"]) == 0.0  # extra whitespace is not a word
    assert cer(["ab c"], ["abc"]) == 25.0  # the space is a character: 1 deletion / 4
    assert cer([" ab "], ["ab"]) == 0.0  # leading/trailing whitespace is stripped
    assert cer(["a  b"], ["a b"]) == 25.0  # inner spaces are not squeezed (jiwer's default CER transform)
    with pytest.raises(TypeError, match="lists of sentences"):
        wer("a b", "a c")


def test_wer_cer_equal_jiwer():
    import jiwer  # in the test extra: a missing jiwer is a failure, not a skip
    rng = random.Random(0)
    vocab = ["bin", "blue", "at", "f", "two", "now", "a", "lay"]
    gaps = [" ", " ", " ", "  ", "\t", " \t "]

    def sentence():
        words = rng.choices(vocab, k=rng.randint(1, 7))
        return rng.choice(["", " "]) + "".join(w + rng.choice(gaps) for w in words[:-1]) + words[-1]

    for _ in range(5):
        refs = [sentence() for _ in range(6)]
        hyps = [sentence() if rng.random() < 0.8 else "" for _ in range(6)]
        assert wer(refs, hyps) == pytest.approx(100 * jiwer.wer(refs, hyps), rel=1e-12)
        assert cer(refs, hyps) == pytest.approx(100 * jiwer.cer(refs, hyps), rel=1e-12)


# ----------------------------------------------------------------------------------------------- segmentations

def test_segments():
    assert segments([1, 1, 2, 2, 2, 1]) == [(1, 0, 2), (2, 2, 5), (1, 5, 6)]
    assert segments(["SIL"]) == [("SIL", 0, 1)]
    assert segments([]) == []


def test_frame_accuracy_micro_and_background():
    truth, pred = [[0, 1, 1, 2], [2, 2]], [[0, 1, 2, 2], [2, 0]]
    # 3/4 + 1/2 correct: micro 4/6, not the per-video mean 62.5
    assert frame_accuracy(truth, pred) == pytest.approx(100 * 4 / 6)
    # Without background 0: the first frame of video 0 no longer counts, 3/5.
    assert frame_accuracy(truth, pred, background=(0,)) == 60.0


def test_frame_accuracy_errors():
    with pytest.raises(ValueError, match="video 1: ground truth has 2 frames but the prediction has 3"):
        frame_accuracy([[1], [1, 2]], [[1], [1, 2, 2]])
    with pytest.raises(ValueError, match="no frames left"):
        frame_accuracy([[0, 0]], [[0, 1]], background=(0,))
    with pytest.raises(TypeError, match="collection of labels"):
        frame_accuracy([["SIL"]], [["SIL"]], background="SIL")


def test_segment_edit_score():
    # Same segment sequence [1, 2, 3] despite shifted boundaries: 100; [1, 2] vs [1, 3, 2]: 1 - 1/3.
    truth, pred = [[1, 1, 2, 2, 3], [1, 1, 2, 2]], [[1, 2, 2, 2, 3], [1, 3, 3, 2]]
    assert segment_edit_score(truth, pred) == pytest.approx((100 + 100 * 2 / 3) / 2)
    # [0, 1, 0, 2] vs [1, 0, 2]: 1 - 1/4; dropping background 0 leaves [1, 2] on both sides.
    assert segment_edit_score([[0, 1, 1, 0, 2]], [[1, 1, 0, 2, 2]]) == 75.0
    assert segment_edit_score([[0, 1, 1, 0, 2]], [[1, 1, 0, 2, 2]], background=(0,)) == 100.0
    assert segment_edit_score([[0, 0]], [[0, 0]], background=(0,)) == 100.0  # nothing on either side


def f1(tp, fp, fn):
    return 100 * 2 * tp / (2 * tp + fp + fn)


# Labels: 0 background, 1 = A, 2 = B, 3 = C.
TIE_TRUTH = [1, 1, 1, 1, 2, 2, 1, 1, 1, 1]  # A[0,4) B[4,6) A[6,10)
TIE_PRED = [3, 3, 1, 1, 1, 1, 1, 1, 3, 1]   # C[0,2) A[2,8) C[8,9) A[9,10)


@pytest.mark.parametrize("k, expected", [(0.10, f1(2, 2, 1)), (0.25, f1(2, 2, 1)), (0.50, 0.0)])
def test_f1_tie_goes_to_earliest_gt(k, expected):
    # A[2,8) has IoU 2/8 with both A segments: it takes A[0,4), leaving A[6,10) for A[9,10) (IoU 1/4).
    # Had it taken A[6,10), A[9,10) would be a FP: f1(1, 3, 2). Both C are FP, B is a FN.
    assert f1_at_k([TIE_TRUTH], [TIE_PRED], k) == pytest.approx(expected)


@pytest.mark.parametrize("k", [0.10, 0.25, 0.50])
def test_f1_second_hit_on_matched_gt_is_fp(k):
    # GT A[0,10); A[0,5) (IoU .5) is a TP, B[5,6) a FP, A[6,10) (IoU .4) hits the matched A: FP.
    assert f1_at_k([[1] * 10], [[1] * 5 + [2] + [1] * 4], k) == 50.0


def test_f1_label_mismatch_and_empty_prediction():
    assert f1_at_k([[1, 1, 1, 1]], [[2, 2, 2, 2]], 0.1) == 0.0
    assert f1_at_k([[1, 1, 2, 2]], [[1, 1, 3, 3]], 0.5) == f1(1, 1, 1)  # C never matches B
    # A prediction that is all background has no segments: only FNs.
    assert f1_at_k([[1, 1, 0, 2]], [[0, 0, 0, 0]], 0.1, background=(0,)) == 0.0
    # Counts are summed over videos: (1 TP, 2 FP, 0 FN) + (0, 0, 2).
    truth, pred = [[1] * 10, [1, 1, 0, 2]], [[1] * 5 + [2] + [1] * 4, [0, 0, 0, 0]]
    assert f1_at_k(truth, pred, 0.1, background=(0,)) == pytest.approx(f1(1, 2, 2))


def test_f1_background_dropped_on_both_sides():
    truth, pred = [[0, 1, 1, 0]], [[1, 1, 1, 0]]
    assert f1_at_k(truth, pred, 0.5, background=(0,)) == 100.0  # A[0,3) vs A[1,3): IoU 2/3
    assert f1_at_k(truth, pred, 0.5) == pytest.approx(f1(2, 0, 1))  # the background segments count too
    with pytest.raises(ValueError, match="IoU threshold"):
        f1_at_k(truth, pred, 10)


def ms_tcn_f_score(recognized, ground_truth, overlap, bg_class):
    """MS-TCN's eval.py f_score, with the last segment ending at T (not T - 1) like ours."""
    def label_start_end(frames):
        labels, starts, ends, last = [], [], [], None
        for i, label in enumerate(frames):
            if label != last:
                if label not in bg_class:
                    labels.append(label)
                    starts.append(i)
                if last is not None and last not in bg_class:
                    ends.append(i)
                last = label
        if last not in bg_class:
            ends.append(len(frames))
        return labels, np.array(starts), np.array(ends)

    p_label, p_start, p_end = label_start_end(recognized)
    y_label, y_start, y_end = label_start_end(ground_truth)
    tp, fp, hits = 0, 0, np.zeros(len(y_label))
    for j in range(len(p_label)):
        if not y_label:
            fp += 1
            continue
        intersection = np.minimum(p_end[j], y_end) - np.maximum(p_start[j], y_start)
        union = np.maximum(p_end[j], y_end) - np.minimum(p_start[j], y_start)
        iou = (1.0 * intersection / union) * np.array([p_label[j] == y for y in y_label])
        idx = iou.argmax()
        if iou[idx] >= overlap and not hits[idx]:
            tp, hits[idx] = tp + 1, 1
        else:
            fp += 1
    return tp, fp, len(y_label) - hits.sum()


def test_f1_equals_ms_tcn_code_on_random_segmentations():
    rng = random.Random(1)

    def video(length):
        frames = []
        while len(frames) < length:
            frames += [rng.randint(0, 3)] * rng.randint(1, 6)
        return frames[:length]

    lengths = [rng.randint(5, 40) for _ in range(30)]
    truth, pred = [video(n) for n in lengths], [video(n) for n in lengths]
    for background in [(), (0,)]:
        for k in (0.1, 0.25, 0.5):
            counts = np.sum([ms_tcn_f_score(p, y, k, background) for y, p in zip(truth, pred)], axis=0)
            assert f1_at_k(truth, pred, k, background) == pytest.approx(f1(*counts) if counts[0] else 0.0)


def test_segmentation_scores():
    scores = segmentation_scores([TIE_TRUTH], [TIE_PRED])
    assert list(scores) == ["acc", "edit", "f1@10", "f1@25", "f1@50"]
    assert scores["acc"] == 50.0  # frames 2, 3, 6, 7, 9 of 10
    assert scores["edit"] == 50.0  # [A, B, A] vs [C, A, C, A]: 2 edits / 4
    assert scores["f1@10"] == scores["f1@25"] == pytest.approx(f1(2, 2, 1))
    assert scores["f1@50"] == 0.0
    # Background 2 (B) drops its frames from acc and its segment from edit/F1 on both sides.
    no_b = segmentation_scores([TIE_TRUTH], [TIE_PRED], background=(2,))
    assert no_b["acc"] == 62.5  # 5 of the 8 non-B frames
    assert no_b["edit"] == 50.0  # [A, A] vs [C, A, C, A]
    assert no_b["f1@10"] == pytest.approx(f1(2, 2, 0))
