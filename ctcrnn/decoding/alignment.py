"""Forced alignment: place a known transcript on a model's CTC output and return one segment per token.

Used for timestamps and for scoring a segmentation (the "alignment" setting of weakly supervised action
segmentation: the transcript is given, the frames must be labelled). Blank is index 0.

CTC outputs are peaky: each token fires on a frame or two and blank fills the rest. To label every frame,
the blank frames between two tokens are given to one neighbour or the other, split at the single
boundary that the model's own non-blank log-probabilities favour most.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchaudio.functional import forced_align, merge_tokens

from ..nn.ctc import min_ctc_frames

__all__ = ["Segment", "forced_align_segments", "frame_labels_from_segments", "align_batch"]


@dataclass
class Segment:
    label: int    # token id (never blank)
    start: int    # first frame
    end: int      # one past the last frame
    score: float  # mean log p_t(label) over the frames where the CTC path emits the token (its spike),
                  # not over the blank frames it was given: a confidence, unaffected by gap filling


def forced_align_segments(log_probs: torch.Tensor, tokens: list[int], blank: int = 0,
                          fill_blanks: bool = True) -> list[Segment]:
    """Segments of ``tokens``, in transcript order, from the best CTC path through ``log_probs``.

    log_probs: (T, V) log-probabilities of one utterance (valid frames only). With ``fill_blanks`` the
    segments tile all T frames: leading blanks go to the first token, trailing blanks to the last, and the
    blanks between tokens i and i+1 are split at the boundary s maximising
    Σ_{t<s} log p_t(token_i) + Σ_{t≥s} log p_t(token_{i+1}) (earliest s on ties; for a repeated token,
    where the log-probs cannot choose, the middle of the gap). Without it, each segment is the token's
    spike and blank frames belong to no segment. Repeated tokens (``a a``) stay two segments.
    Returns [] for an empty transcript; raises ValueError if the transcript cannot fit in T frames.
    """
    if log_probs.dim() != 2:
        raise ValueError(f"forced_align_segments takes one utterance's (T, V) log-probs, got shape "
                         f"{tuple(log_probs.shape)}; use align_batch for (B, T, V)")
    if not tokens:
        return []
    num_frames, num_classes = log_probs.shape
    bad = sorted({t for t in tokens if t == blank or not 0 <= t < num_classes})
    if bad:
        raise ValueError(f"transcript holds {bad}, which are the blank ({blank}) or outside the model's "
                         f"{num_classes} classes: map the transcript with the model's label list")
    needed = min_ctc_frames(tokens)
    if needed > num_frames:
        raise ValueError(f"transcript of {len(tokens)} labels with {needed - len(tokens)} repeated neighbours "
                         f"needs at least {needed} frames but log_probs has {num_frames}: use a frontend with "
                         "less temporal subsampling or skip this utterance")
    # torchaudio's kernel wants float32, contiguous, a batch of one and int32 targets.
    log_probs = log_probs.detach().to(torch.float32).contiguous()
    targets = torch.tensor([tokens], dtype=torch.int32, device=log_probs.device)
    path, scores = forced_align(log_probs[None], targets, blank=blank)
    # One span per run of a non-blank token: a repeated token needs a blank between its two runs, so an
    # unbroken run is always one token of the transcript. Scores go in as float64 so that a span's mean
    # is taken in double precision over the float32 frame scores, not as a float32 sum.
    spans = merge_tokens(path[0], scores[0].double(), blank=blank)
    segments = [Segment(token, span.start, span.end, span.score) for token, span in zip(tokens, spans)]
    if fill_blanks:
        _fill_blanks(segments, log_probs)
    return segments


def _fill_blanks(segments: list[Segment], log_probs: torch.Tensor) -> None:
    """Stretch ``segments`` (in place) over the blank frames of (T, V) ``log_probs``, as documented above."""
    segments[0].start, segments[-1].end = 0, log_probs.shape[0]
    # -inf - -inf is nan; a very negative finite floor keeps the argmax meaningful.
    log_probs = log_probs.double().clamp_min(-1e30)
    for left, right in zip(segments, segments[1:]):
        gap_start, gap_end = left.end, right.start
        if gap_start == gap_end:
            continue
        if left.label == right.label:
            boundary = (gap_start + gap_end) // 2
        else:
            # The score of boundary gap_start + j is a constant plus Σ_{t < gap_start + j} (left − right).
            gain = log_probs[gap_start:gap_end, left.label] - log_probs[gap_start:gap_end, right.label]
            gain = torch.cat([gain.new_zeros(1), gain.cumsum(0)])
            boundary = gap_start + int(gain.argmax())  # argmax returns the first maximum
        left.end = right.start = boundary


def frame_labels_from_segments(segments: list[Segment], num_frames: int, fill=None) -> list:
    """Per-frame labels (length ``num_frames``): each segment's label over its frames, ``fill`` elsewhere."""
    labels = [fill] * num_frames
    for seg in segments:
        if not 0 <= seg.start <= seg.end <= num_frames:
            raise ValueError(f"segment {seg} does not fit in {num_frames} frames")
        labels[seg.start:seg.end] = [seg.label] * (seg.end - seg.start)
    return labels


def align_batch(log_probs: torch.Tensor, lengths: torch.Tensor, transcripts: list[list[int]],
                blank: int = 0, fill_blanks: bool = True) -> list[list[Segment]]:
    """forced_align_segments for each utterance of a batch: log_probs (B, T, V), lengths (B,) valid frames,
    B transcripts. A transcript that cannot fit raises, naming its index in the batch."""
    batch = []
    for i, (length, tokens) in enumerate(zip(lengths.tolist(), transcripts, strict=True)):
        try:
            batch.append(forced_align_segments(log_probs[i, :length], tokens, blank, fill_blanks))
        except ValueError as error:
            raise ValueError(f"utterance {i} of the batch: {error}") from error
    return batch
