"""Scores for transcripts (edit distance, token/word/character error rate) and for frame-wise
segmentations (frame accuracy, segmental edit score, F1@k).

Transcript metrics are corpus-level: total edits (S + D + I) over total reference length, as jiwer's
``wer``/``cer`` and NIST sclite define them, never a mean of per-sentence rates. Segmentation metrics are
the segmental edit score of Lea et al. (ECCV 2016, "Segmental Spatiotemporal CNNs for Fine-grained Action
Segmentation") and F1@k of Lea et al. (CVPR 2017, "Temporal Convolutional Networks for Action Segmentation
and Detection"), computed as in MS-TCN's evaluation script (Farha & Gall, CVPR 2019), with end-exclusive
segments. Inputs are plain lists (label ids or names); no tensors, no numpy.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import re
from collections.abc import Collection, Hashable, Sequence
from itertools import chain

from rapidfuzz.distance import Levenshtein

__all__ = ["edit_distance", "error_counts", "error_rate", "wer", "cer", "words", "characters", "segments", "frame_accuracy",
           "segment_edit_score", "f1_at_k", "segmentation_scores"]

Label = Hashable


# ---------------------------------------------------------------------------------------------------------
# Transcripts


def _codes(ref: Sequence, hyp: Sequence) -> tuple[Sequence, Sequence]:
    """Both sequences as small ints, equal exactly where the tokens are (``==``). rapidfuzz compares ints and
    one-character strings by value but any other token by ``hash()``, which can collide (numpy's -1 and -2
    hash alike) and would make two different tokens match; a dict decides by hash *and* equality. Two
    strings, or two sequences of Python ints, go in as they are (compared by value), which keeps a long
    transcript's scoring in compiled code: no list of a million one-character strings, no dict lookups."""
    if isinstance(ref, str) and isinstance(hyp, str):
        return ref, hyp
    if set(map(type, ref)) | set(map(type, hyp)) <= {int}:  # label ids: compared by value as they are
        return ref, hyp
    index = {token: code for code, token in enumerate(dict.fromkeys(chain(ref, hyp)))}
    return list(map(index.__getitem__, ref)), list(map(index.__getitem__, hyp))


def error_counts(ref: Sequence, hyp: Sequence) -> tuple[int, int, int]:
    """(substitutions, deletions, insertions) of one minimum-cost (Levenshtein, unit costs) alignment.

    The total is unique; its split is not (ref ``a b`` vs hyp ``b c`` is 2 S or 1 D + 1 I). The alignment is
    the one rapidfuzz's ``Levenshtein.editops`` picks (compiled; bit-parallel, Hirschberg's linear-memory
    split on long inputs), which is the one jiwer's ``process_words`` / ``process_characters`` count too, so
    S, D and I equal jiwer's. Among equal-cost alignments it does not always prefer substitutions:

    >>> error_counts([1, 2, 0, 0, 2, 3, 0, 2], [2, 1, 3, 3, 2, 0])   # 4 S + 2 D would cost the same 6
    (2, 3, 1)
    >>> error_counts("kitten", "sitting")
    (2, 0, 1)
    """
    tags = [op[0] for op in Levenshtein.editops(*_codes(ref, hyp)).as_list()]
    return tags.count("replace"), tags.count("delete"), tags.count("insert")


def edit_distance(ref: Sequence, hyp: Sequence) -> int:
    """Levenshtein distance with unit costs: S + D + I (rapidfuzz, compiled; memory linear in the lengths).

    >>> edit_distance("kitten", "sitting")
    3
    >>> edit_distance(["pour", "stir"], ["stir", "pour"])
    2
    """
    return Levenshtein.distance(*_codes(ref, hyp))


def error_rate(references: Sequence[Sequence], hypotheses: Sequence[Sequence]) -> float:
    """Corpus-level token error rate in %: 100 · Σ edit_distance / Σ len(reference).

    Tokens are whatever the sequences hold (label ids, gloss names, words, characters).

    >>> error_rate([[1, 2, 3, 4], [5]], [[1, 2, 3, 4], [6]])   # 1 edit over 5 tokens, not the mean of 0 % and 100 %
    20.0
    """
    if len(references) != len(hypotheses):
        raise ValueError(f"error_rate got {len(references)} references but {len(hypotheses)} hypotheses: "
                         "pass one hypothesis per reference, in the same order")
    total = sum(len(ref) for ref in references)
    if total == 0:
        raise ValueError("error_rate: all references are empty, so the rate is undefined (0 reference tokens)")
    return 100.0 * sum(edit_distance(ref, hyp) for ref, hyp in zip(references, hypotheses)) / total


def _check_strings(name: str, references: Sequence[str], hypotheses: Sequence[str]) -> None:
    # A bare string would be iterated as a list of one-character "sentences" and give a wrong number quietly.
    if isinstance(references, str) or isinstance(hypotheses, str):
        raise TypeError(f"{name} takes lists of sentences; wrap a single sentence as [sentence]")


def words(sentence: str) -> list[str]:
    """The words WER counts, as jiwer's default transform makes them: runs of 2+ whitespace characters
    become one space, strip, split on " " (a single tab or newline therefore stays inside a word)."""
    return [w for w in re.sub(r"\s\s+", " ", sentence).strip().split(" ") if w]


def characters(sentence: str) -> list[str]:
    """The characters CER counts, as jiwer 4's default transform makes them: leading and trailing
    whitespace stripped; inner spaces, repeated ones included, count."""
    return list(sentence.strip())


def wer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level word error rate in %, equal to ``100 * jiwer.wer`` (default transform).

    Unlike jiwer, an all-empty reference set raises ValueError instead of returning a number.

    >>> wer(["a b c"], ["a c"])                     # one deleted word of three
    33.33...
    >>> wer(["the cat sat", "hello world"], ["the cat sit on", "hello"])   # 3 edits / 5 words
    60.0
    """
    _check_strings("wer", references, hypotheses)
    return error_rate([words(r) for r in references], [words(h) for h in hypotheses])


def cer(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus-level character error rate in %, equal to ``100 * jiwer.cer`` (default transform).

    Characters as :func:`characters` makes them (jiwer 4's default transform).

    >>> cer(["ab c"], ["abc"])                      # the space is a character: 1 deletion of 4
    25.0
    """
    _check_strings("cer", references, hypotheses)
    # The stripped strings are characters(r) without the lists (each character is one token either way).
    return error_rate([r.strip() for r in references], [h.strip() for h in hypotheses])


# ---------------------------------------------------------------------------------------------------------
# Segmentations: one label per frame, one list per video


def segments(frame_labels: Sequence[Label]) -> list[tuple[Label, int, int]]:
    """Runs of equal labels as (label, start, end) with ``end`` exclusive, in frame order."""
    runs = []
    start = 0
    for t in range(1, len(frame_labels) + 1):
        if t == len(frame_labels) or frame_labels[t] != frame_labels[start]:
            runs.append((frame_labels[start], start, t))
            start = t
    return runs


def _check_videos(ground_truth: Sequence[Sequence], predictions: Sequence[Sequence],
                  background: Collection[Label]) -> None:
    if isinstance(background, str):  # "SIL" would test substrings: "S" in "SIL" is True
        raise TypeError(f"background is a collection of labels: write ({background!r},), not {background!r}")
    if len(ground_truth) != len(predictions):
        raise ValueError(f"got {len(ground_truth)} ground-truth videos but {len(predictions)} predictions: "
                         "pass one frame-label list per video, in the same order")
    if not ground_truth:
        raise ValueError("no videos to score")
    for v, (truth, pred) in enumerate(zip(ground_truth, predictions)):
        if len(truth) != len(pred):
            raise ValueError(f"video {v}: ground truth has {len(truth)} frames but the prediction has {len(pred)}; "
                             "trim both to the same length (e.g. min(T_features, T_labels)) before scoring")


def _foreground(frame_labels: Sequence[Label], background: Collection[Label]) -> list[tuple[Label, int, int]]:
    return [seg for seg in segments(frame_labels) if seg[0] not in background]


def frame_accuracy(ground_truth: Sequence[Sequence], predictions: Sequence[Sequence],
                   background: Collection[Label] = ()) -> float:
    """Mean over frames (MoF) in %: 100 · Σ correct / Σ frames over all videos (micro-averaged).

    Frames whose ground-truth label is in ``background`` are left out ("MoF without background").

    >>> frame_accuracy([[0, 1, 1, 2], [2, 2]], [[0, 1, 2, 2], [2, 0]])   # 4 of 6 frames
    66.66666666666667
    >>> frame_accuracy([[0, 1, 1, 2], [2, 2]], [[0, 1, 2, 2], [2, 0]], background=(0,))   # 3 of 5
    60.0
    """
    _check_videos(ground_truth, predictions, background)
    correct = total = 0
    for truth, pred in zip(ground_truth, predictions):
        for y, p in zip(truth, pred):
            if y not in background:
                total += 1
                correct += y == p
    if total == 0:
        raise ValueError(f"frame_accuracy: no frames left to score (every ground-truth frame is in {background!r})")
    return 100.0 * correct / total


def segment_edit_score(ground_truth: Sequence[Sequence], predictions: Sequence[Sequence],
                       background: Collection[Label] = ()) -> float:
    """Segmental edit score in %: per video 100 · (1 − Lev(P, Y) / max(|P|, |Y|)) over the segment label
    sequences (background segments dropped), mean over videos. A video with no segments on either side
    scores 100 (MS-TCN divides by zero there).

    >>> segment_edit_score([[1, 1, 2, 2]], [[1, 3, 3, 2]])   # segments 1 2 vs 1 3 2: one insertion of 3
    66.66666666666667
    """
    _check_videos(ground_truth, predictions, background)
    scores = []
    for truth, pred in zip(ground_truth, predictions):
        y = [label for label, _, _ in _foreground(truth, background)]
        p = [label for label, _, _ in _foreground(pred, background)]
        longest = max(len(p), len(y))
        scores.append(100.0 * (1 - edit_distance(p, y) / longest) if longest else 100.0)
    return sum(scores) / len(scores)


def _f1_counts(truth: Sequence[Label], pred: Sequence[Label], k: float,
               background: Collection[Label]) -> tuple[int, int, int]:
    """(TP, FP, FN) of one video at IoU threshold ``k``, MS-TCN's greedy procedure."""
    gt = _foreground(truth, background)
    matched = [False] * len(gt)
    tp = fp = 0
    for label, start, end in _foreground(pred, background):
        best, best_iou = None, 0.0
        for g, (gt_label, gt_start, gt_end) in enumerate(gt):
            if gt_label != label:
                continue
            iou = max(0, min(end, gt_end) - max(start, gt_start)) / (max(end, gt_end) - min(start, gt_start))
            # Strict ">" keeps the earliest GT segment on ties, as numpy's argmax does in MS-TCN.
            if best is None or iou > best_iou:
                best, best_iou = g, iou
        if best is not None and best_iou >= k and not matched[best]:
            tp += 1
            matched[best] = True
        else:
            fp += 1
    return tp, fp, len(gt) - sum(matched)


def f1_at_k(ground_truth: Sequence[Sequence], predictions: Sequence[Sequence], k: float,
            background: Collection[Label] = ()) -> float:
    """Segmental F1@k in % (k an IoU threshold in (0, 1], e.g. 0.1, 0.25, 0.5).

    Each predicted segment, in order, takes the same-label GT segment of highest IoU (the earliest on ties):
    TP if IoU ≥ k and that GT segment is still unmatched (it becomes matched), else FP; FN = #GT − #matched.
    TP/FP/FN are summed over videos, then F1 = 2PR / (P + R), 0 when undefined. Background segments are
    dropped on both sides. MS-TCN's code ends the last segment of a video at T − 1 instead of T; we use
    true end-exclusive segments, which can move an IoU that sits exactly at a threshold.

    >>> f1_at_k([[1, 1, 1, 1, 2, 2]], [[1, 1, 2, 2, 2, 2]], k=0.5)   # 1: IoU 2/4, TP; 2: IoU 2/4, TP
    100.0
    >>> f1_at_k([[1, 1, 1, 1, 2, 2]], [[1, 1, 2, 2, 2, 2]], k=0.6)   # both below 0.6: 2 FP, 2 FN
    0.0
    """
    if not 0 < k <= 1:
        raise ValueError(f"f1_at_k: k is an IoU threshold in (0, 1], got {k}")
    _check_videos(ground_truth, predictions, background)
    tp = fp = fn = 0
    for truth, pred in zip(ground_truth, predictions):
        t, f, n = _f1_counts(truth, pred, k, background)
        tp, fp, fn = tp + t, fp + f, fn + n
    # 2PR / (P + R) with P = TP/(TP+FP), R = TP/(TP+FN) simplifies to this, and is 0 (not 0/0) when TP = 0.
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def segmentation_scores(ground_truth: Sequence[Sequence], predictions: Sequence[Sequence],
                        background: Collection[Label] = ()) -> dict[str, float]:
    """The usual table row: {"acc", "edit", "f1@10", "f1@25", "f1@50"}, all in %.

    >>> segmentation_scores([[0, 1, 1, 1, 2, 2]], [[0, 1, 1, 2, 2, 2]])
    {'acc': 83.33333333333333, 'edit': 100.0, 'f1@10': 100.0, 'f1@25': 100.0, 'f1@50': 100.0}
    """
    scores = {"acc": frame_accuracy(ground_truth, predictions, background),
              "edit": segment_edit_score(ground_truth, predictions, background)}
    for k in (10, 25, 50):
        scores[f"f1@{k}"] = f1_at_k(ground_truth, predictions, k / 100, background)
    return scores
