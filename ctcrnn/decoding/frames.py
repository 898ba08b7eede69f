"""What the prefix beam search (:mod:`ctcrnn.decoding.prefix_search`) reads of each frame: the frames
themselves, with runs of skipped blank frames compacted into one and rows in the search's longest-first
order, and each frame's candidate tokens: the non-blank tokens it extends, cut by the caller's limits and
by the search's score bound (a token whose bound is below the frame's floor cannot enter the beam).

Candidates are picked in one of two ways. Narrow frames: a cut below V - 1 tokens is taken for all
frames at once ((B, T, C), most probable first, -inf where pruned, so that a frame's live tokens are a
prefix of its row). Wide frames (many utterances × labels make passes over all of the log-probs cost
more than a few operations per frame): per frame, only for the utterances whose best token (B, T) can
pass the floor; most have none on most frames of peaky outputs.

A stream searched chunk by chunk compacts each chunk with :func:`compact_chunk`, which holds a run of
skipped frames at a chunk's end until it ends, so the runs are those of the whole stream.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from ..nn.masking import valid_mask

__all__ = ["Candidates", "FrameReader", "compact_chunk", "compact_frames"]


class Candidates(NamedTuple):
    """One frame's candidate tokens for its n running utterances (a tuple: made on every frame)."""
    token_lp: torch.Tensor        # (n, C) their log-probs, -inf where none (pruned, or padding a row)
    tokens: torch.Tensor | None   # (n, C) their ids; None: every label, slot c is label c (C = V)
    width: int                    # C


class FrameReader:
    """The frames of one search in its order (``by_length`` (B,), longest first) and their candidates.
    At most ``max_width`` tokens per frame, none below ``threshold`` (a log-prob, or None)."""

    def __init__(self, log_probs: torch.Tensor, by_length: torch.Tensor, blank: int, max_width: int,
                 threshold: float | None, wide: bool):
        batch, _, num_classes = log_probs.shape
        self.log_probs, self.by_length, self.blank = log_probs, by_length, blank
        # log_probs keeps the caller's order: its frames are picked by `by_length` as they are read.
        self.in_order = batch == 1 or bool((by_length == torch.arange(batch, device=by_length.device)).all())
        self.max_width, self.threshold, self.num_classes = max_width, threshold, num_classes
        self.blank_id = torch.tensor([blank], device=log_probs.device)
        self.cand_lp = self.cand_tok = self.best_token = None
        if max_width < num_classes - 1 and wide:
            self.best_token = self._ordered(_best_token_lp(log_probs, blank, threshold))  # (B, T)
        elif max_width < num_classes - 1:
            cand_lp, cand_tok = _top_tokens(log_probs, blank, max_width, threshold)   # (B, T, C)
            self.cand_lp, self.cand_tok = self._ordered(cand_lp), self._ordered(cand_tok)

    def _ordered(self, values: torch.Tensor) -> torch.Tensor:
        """values (B, ...) in the search's order (no copy if that is the caller's)."""
        return values if self.in_order else values[self.by_length]

    def frame(self, t: int, n: int) -> torch.Tensor:
        """(n, V) log-probs of frame ``t`` for the first ``n`` utterances in the search's order."""
        return self.log_probs[:n, t] if self.in_order else self.log_probs[:, t].index_select(0, self.by_length[:n])

    def candidates(self, frame: torch.Tensor, t: int, floor: torch.Tensor) -> Candidates | None:
        """Candidates of ``frame`` (n, V), frame ``t``: the ``width`` most probable tokens of each row,
        where width is the largest number of tokens at or above ``floor`` (n,) in any row (some tokens
        may then be below it: they cannot win, so this stays exact). None if no token reaches the floor."""
        if self.best_token is not None:
            return self._wide_candidates(frame, t, floor)
        n = frame.shape[0]
        if self.cand_lp is not None:
            token_lp = self.cand_lp[:n, t]
        else:  # every non-blank token of the frame
            token_lp = frame.index_fill(1, self.blank_id, -math.inf)
            if self.threshold is not None:
                token_lp.masked_fill_(token_lp < self.threshold, -math.inf)
        width = min(int((token_lp >= floor.unsqueeze(1)).sum(1).max()), self.max_width)
        if width == 0:
            return None
        if self.cand_lp is not None:
            return Candidates(token_lp[:, :width], self.cand_tok[:n, t, :width], width)
        if 2 * width >= self.num_classes - 1:
            # Most labels are live: extending all of them (the blank's column stays -inf) is cheaper than
            # picking them, and candidate slot c is label c, so no slot maps are needed.
            return Candidates(token_lp, None, self.num_classes)
        token_lp, tokens = token_lp.topk(width, dim=1, sorted=False)
        return Candidates(token_lp, tokens, width)

    def _wide_candidates(self, frame: torch.Tensor, t: int, floor: torch.Tensor) -> Candidates | None:
        """:meth:`candidates` picked for this frame alone, for the utterances whose best token can
        reach the floor; the others get none (-inf, with the blank as id)."""
        n = frame.shape[0]
        rows = (self.best_token[:n, t] >= floor).nonzero().squeeze(1)  # utterances with a live token
        if not len(rows):
            return None
        picked_lp = frame.index_select(0, rows)  # (rows, V), a copy
        picked_lp[:, self.blank] = -math.inf
        bar = floor[rows] if self.threshold is None else floor[rows].clamp(min=self.threshold)
        width = min(int((picked_lp >= bar.unsqueeze(1)).sum(1).max()), self.max_width)
        if width == 0:
            return None
        # The `width` best of each row: its live tokens, and maybe tokens that cannot win (exact).
        token_lp, tokens = picked_lp.topk(width, dim=1, sorted=False)
        if self.threshold is not None:
            token_lp.masked_fill_(token_lp < self.threshold, -math.inf)
        if len(rows) < n:
            token_lp = token_lp.new_full((n, width), -math.inf).index_copy_(0, rows, token_lp)
            tokens = tokens.new_full((n, width), self.blank).index_copy_(0, rows, tokens)
        return Candidates(token_lp, tokens, width)


def compact_frames(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int,
                   skip_blank_threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_probs (B, T', V), frames (B,)): each utterance's frames are its first frames[b] rows; the
    rest is filler, never read. Without skipping: the input up to the longest length, unchanged. With
    skipping: each run of skipped frames becomes one blank-only frame whose blank log-prob is the run's
    sum, every other label -inf (runs that only reach into the padding count to the utterance)."""
    batch, steps, num_classes = log_probs.shape
    if skip_blank_threshold is None or batch == 0:
        return log_probs[:, :int(lengths.max()) if batch else 0], lengths
    padding = ~valid_mask(lengths.to(log_probs.device), steps)
    skip = padding | (log_probs[..., blank] > math.log(skip_blank_threshold))
    if steps == 0 or not bool(skip.any()):
        return log_probs, lengths
    out, count, _ = _compact_runs(log_probs, skip, padding, blank)
    return out, count


def compact_chunk(chunk: torch.Tensor, held: torch.Tensor | None, blank: int, skip_blank_threshold: float,
                  last: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`compact_frames` for one stream that comes in chunks: (frames (T', V) to search now, starts
    (T',) the chunk frame each begins at (-1: a run held from earlier chunks), held). ``chunk`` (T, V).

    A run of skipped frames that reaches the end of the chunk is not searched yet: it is returned as
    ``held`` (0-dim, the run's blank log-prob sum) and joins the leading run of the next chunk, so each
    run is one blank-only frame however the stream is cut, as in the offline search, and a stream of
    blank chunks costs no search at all. Only the sum's rounding order differs. ``last``: the stream
    ends with this chunk, nothing is held."""
    steps, num_classes = chunk.shape
    skip = chunk[:, blank] > math.log(skip_blank_threshold)
    if held is not None:  # the held run goes first, as a skipped frame of its own
        row = chunk.new_full((1, num_classes), -math.inf)
        row[0, blank] = held
        chunk, skip = torch.cat([row, chunk]), torch.cat([skip.new_ones(1), skip])
    starts = torch.arange(-int(held is not None), steps, device=chunk.device)
    if not bool(skip.any()):
        return chunk, starts, None
    out, _, kept = _compact_runs(chunk.unsqueeze(0), skip.unsqueeze(0), None, blank)
    out, starts = out[0], starts[kept[0]]
    if last or not bool(skip[-1]):
        return out, starts, None
    return out[:-1], starts[:-1], out[-1, blank]


def _compact_runs(log_probs: torch.Tensor, skip: torch.Tensor,
                  padding: torch.Tensor | None, blank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out (B, T', V), count (B,), kept (B, T)): each run of ``skip`` (B, T) frames of log_probs (B, T, V)
    made one blank-only frame holding the run's blank log-prob sum (``padding`` (B, T) frames add 0);
    ``kept``: the frames that start a frame of ``out`` (the others are in a run)."""
    batch, _, num_classes = log_probs.shape
    run_start = skip & ~F.pad(skip[:, :-1], (1, 0), value=False)
    kept = ~skip | run_start
    position = kept.cumsum(1) - 1                      # (B, T): where each frame lands
    count = kept.sum(1)
    out = log_probs.new_full((batch, int(count.max()), num_classes), -math.inf)
    b, t = (~skip).nonzero(as_tuple=True)
    out[b, position[b, t]] = log_probs[b, t]
    summed = skip if padding is None else skip & ~padding
    blank_lp = torch.where(summed, log_probs[..., blank], 0.0)
    run_blank = out.new_zeros(out.shape[:2]).scatter_add_(1, position, blank_lp)
    blank_only = torch.zeros(out.shape[:2], dtype=torch.bool, device=out.device).scatter_(1, position, skip)
    out[..., blank] = torch.where(blank_only, run_blank, out[..., blank])
    return out, count, kept


def _top_tokens(log_probs: torch.Tensor, blank: int, width: int,
                threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``width`` most probable non-blank tokens of every frame, most probable first: log-probs
    (..., C) (-inf below ``threshold``) and ids (..., C), from log_probs (..., V). One topk, no copy."""
    lp, tok = log_probs.topk(min(width + 1, log_probs.shape[-1]), dim=-1)
    lp.masked_fill_(tok == blank, -math.inf)
    if threshold is not None:
        lp.masked_fill_(lp < threshold, -math.inf)
    lp, order = lp.sort(dim=-1, descending=True, stable=True)  # the blank, if it was in, goes last
    return lp[..., :width], tok.gather(-1, order)[..., :width]


def _best_token_lp(log_probs: torch.Tensor, blank: int, threshold: float | None) -> torch.Tensor:
    """(B, T) log-prob of each frame's most probable non-blank token (-inf if below ``threshold``)."""
    parts = [log_probs[..., :blank], log_probs[..., blank + 1:]]
    best = torch.stack([p.amax(-1) for p in parts if p.shape[-1]]).amax(0)
    if threshold is not None:
        best.masked_fill_(best < threshold, -math.inf)
    return best
