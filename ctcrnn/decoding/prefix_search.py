"""The CTC prefix beam search itself, vectorised: per frame, every beam × every candidate token of every
utterance in one set of tensor operations (a Python loop runs over frames only). Use it through
:func:`ctcrnn.decoding.prefix_beam_search`, which adds timestamps and words.

Exact prefix scores. Each beam is a label prefix with two log-probabilities, summed over all alignments
so far: ``pb`` (alignments ending in blank) and ``pnb`` (ending in the prefix's last token). A frame
with log-probs y gives

    same prefix:  pb' = (pb ⊕ pnb) + y_blank,   pnb' = pnb + y_last     (a repeat collapses)
    prefix + c:   pnb' = (pb ⊕ pnb) + y_c,      but only pb + y_c when c == last ("a a" needs a blank)

(⊕ = log-sum-exp). When prefix + c is already a beam, its mass is added to that beam instead of
becoming a second copy; prefixes are identified by 62-bit rolling keys (:mod:`ctcrnn.decoding.hashing`), so
"is beam j = beam i + its own last token" is a search of j's parent key among the beams' keys. The K
stays and K × C extensions of each utterance are then ranked by one ``topk``, and per-frame
back-pointers give the label sequences at the end.

Exact pruning. An extension of beam i by token c scores at most max_i(total_i + LM_i) + y_c + g, where
g bounds what fusion can add for one token (:meth:`ctcrnn.fusion.LMFusion.max_gain`). If that bound is
below the worst of the K stays, the extension cannot be kept, so each frame extends only the tokens that
pass it (none, on most frames of peaky outputs, which then cost a handful of operations).

Runs of frames skipped by ``skip_blank_threshold`` become single "blank only" frames: they can only
move mass from pnb to pb, which is exactly what a blank does, so ``a _ a`` stays two tokens while the
loop runs over fewer frames. Padding is never read: utterances run longest first, and each leaves the
search (its rows of every per-frame operation) after its last frame.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from . import hashing
from .fusion import LMFusion

__all__ = ["SearchResult", "check_lengths", "ctc_prefix_search"]

# Frames are wide from this batch size × labels on (see ctc_prefix_search).
_WIDE_FRAMES = 32768


@dataclass
class SearchResult:
    tokens: list[list[list[int]]]  # [utterance][rank] label ids, best first
    am_scores: list[list[float]]   # log P(labels | input), summed over alignments
    lm_scores: list[list[float]]   # fusion score (weighted LM, bonuses); 0 without fusion


def ctc_prefix_search(log_probs: torch.Tensor, lengths: torch.Tensor, beam_size: int, blank: int = 0, *,
                      nbest: int = 1, token_prune_topk: int | None = None,
                      token_prune_threshold: float | None = None, skip_blank_threshold: float | None = None,
                      fusion: LMFusion | None = None) -> SearchResult:
    """Prefix beam search over log_probs (B, T, V) with lengths (B,); ``nbest`` ≤ ``beam_size`` results.

    Tokens considered per frame: all non-blank ones, or the ``token_prune_topk`` most probable, minus
    those below ``token_prune_threshold`` (a log-prob). Without fusion only the beam_size + 1 most
    probable can matter (a beam's k-th best extension is among them), so that cut is always applied and
    loses nothing; tokens whose score bound cannot beat a stay are left out too (exact, see above).
    Frames whose blank probability exceeds ``skip_blank_threshold`` (a probability) are
    treated as certain blanks (only the blank transition, with its real log-prob).
    """
    if log_probs.dim() != 3 or lengths.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs (B, T, V) and lengths (B,), got {tuple(log_probs.shape)} "
                         f"and {tuple(lengths.shape)}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must lie in [1, beam_size={beam_size}], got {nbest}")
    if token_prune_topk is not None and token_prune_topk < 1:
        raise ValueError(f"token_prune_topk must be at least 1 (None: no cut), got {token_prune_topk}")
    check_lengths(lengths, log_probs.shape[1])
    batch, _, num_classes = log_probs.shape
    dtype = log_probs.dtype if log_probs.is_floating_point() else torch.float32
    log_probs, frames = _compact_frames(log_probs.detach().to(dtype), lengths.to(log_probs.device), blank,
                                        skip_blank_threshold)
    device, steps, beams = log_probs.device, log_probs.shape[1], beam_size
    # Utterances run longest first, so that those still running at frame t are rows [:active[t]] and
    # every per-frame operation covers only them (past its last frame an utterance would only take
    # blanks of probability 1, which change no prefix's total). log_probs keeps the caller's order: its
    # frames are picked by `by_length` as they are read; everything else is sorted now.
    by_length = frames.argsort(descending=True, stable=True)
    in_order = bool((by_length == torch.arange(batch, device=device)).all())
    active = (frames > torch.arange(steps, device=device).unsqueeze(1)).sum(1).tolist()  # per frame
    # Wide frames (many utterances × labels) make passes over all of log_probs cost more than a few
    # operations per frame: candidates are then picked per frame.
    wide = batch * num_classes >= _WIDE_FRAMES
    # At most `max_width` tokens are extended per frame. Without fusion only the beam_size + 1 most
    # probable can matter (a beam's k-th best extension is among them), so that cut is always applied and
    # loses nothing. A cut below V - 1 is taken for all frames at once: (B, T, C) candidates, most
    # probable first (-inf where pruned), so that a frame's live tokens are a prefix of its row. On wide
    # frames it is taken per frame, only for the utterances whose best token (B, T) can pass the frame's
    # score bound: most utterances have none on most frames of peaky outputs.
    max_width = min(num_classes - 1, token_prune_topk or num_classes, beams + 1 if fusion is None else num_classes)
    cand_lp = cand_tok = best_token = None
    if max_width < num_classes - 1 and wide:
        best_token = _best_token_lp(log_probs, blank, token_prune_threshold)[by_length]
    elif max_width < num_classes - 1:
        cand_lp, cand_tok = _top_tokens(log_probs, blank, max_width, token_prune_threshold)
        cand_lp, cand_tok = cand_lp[by_length], cand_tok[by_length]
    blank_id = torch.tensor([blank], device=log_probs.device)
    lowest, eps = torch.finfo(dtype).min, torch.finfo(dtype).eps  # a live token must at least be finite
    # Upper bound of the fusion score a token can add; with it an extension's score has a bound before it
    # is computed, and the search only builds the extensions that could outscore a stay (exact).
    gain_bound = fusion.max_gain() if fusion is not None else 0.0
    neg_inf = torch.tensor(-math.inf, dtype=dtype, device=device)

    pb = torch.full((batch, beams), -math.inf, dtype=dtype, device=device)
    pb[:, 0] = 0.0  # the empty prefix
    pnb = torch.full_like(pb, -math.inf)
    lm_acc = torch.zeros_like(pb)
    # The empty prefix has no last token; "blank" stands in: its pnb is -inf, so it never continues a
    # repeat, and the blank is never a candidate, so no extension takes it for a repeat either.
    last = torch.full((batch, beams), blank, dtype=torch.long, device=device)
    key = torch.full_like(last, -1)     # invalid beams: -1, never a parent key
    key[:, 0] = 0                       # the empty prefix
    parent = torch.full_like(last, -2)  # -2 matches no key
    beam_ids = torch.arange(beams, device=device)
    stay_source, no_token = beam_ids.expand(batch, -1), torch.full_like(last, -1)
    back_source, back_token = [], []    # per frame (n, K): the old beam each beam continues, token added or -1
    state = fusion.start(batch, beams, device) if fusion is not None else None
    # Final acoustic and fusion scores (B, K) of the utterances that ended, and fusion scores before the end.
    final_am, final_lm, final_acc = torch.empty_like(pb), torch.empty_like(pb), torch.empty_like(pb)

    def finish(rows: slice, done_state) -> None:
        final_am[rows] = torch.logaddexp(pb[rows], pnb[rows])
        final_acc[rows] = lm_acc[rows]
        final_lm[rows] = lm_acc[rows] + (done_state.final_scores().to(dtype) if done_state is not None else 0.0)

    for t in range(steps):
        n = active[t]
        if n < pb.shape[0]:  # utterances that ended: final scores, and no more rows in the search
            finish(slice(n, pb.shape[0]), state.split(n) if state is not None else None)
            pb, pnb, lm_acc, last, key, parent = (x[:n] for x in (pb, pnb, lm_acc, last, key, parent))
            stay_source, no_token = stay_source[:n], no_token[:n]
        frame = log_probs[:n, t] if in_order else log_probs[:, t].index_select(0, by_length[:n])  # (n, V)
        total = torch.logaddexp(pb, pnb)
        last_lp = frame.gather(1, last)
        stay_pb = total + frame[:, blank:blank + 1]
        stay_pnb = pnb + last_lp
        # Beam j = beam i + last[j]: add that extension's mass to j. Keys are distinct, so find i by
        # searching j's parent key among the sorted keys of its utterance (K log K, not K²).
        sorted_key, order = key.sort(1)
        at = torch.searchsorted(sorted_key, parent).clamp_(max=beams - 1)
        merged = sorted_key.gather(1, at) == parent
        source = order.gather(1, at)
        grow = torch.where(last.gather(1, source) == last, pb.gather(1, source), total.gather(1, source))
        stay_pnb = torch.where(merged, torch.logaddexp(stay_pnb, grow + last_lp), stay_pnb)
        stay_score = torch.logaddexp(stay_pb, stay_pnb)
        reached = total
        if state is not None:
            stay_score, reached = stay_score + lm_acc, total + lm_acc

        # Extension (i, c) scores at most max_i(total_i + lm_acc_i) + y_c + gain_bound; below the worst of
        # the K stays it cannot be kept. The frame's candidates: the `width` most probable tokens, where
        # width is the largest number of live tokens in any utterance.
        worst_stay, best_reach = stay_score.amin(1), reached.amax(1)
        # Slack for this dtype's rounding, so that a float score a few ulps above its bound is still built.
        slack = (worst_stay.abs() + best_reach.abs()).mul_(16 * eps)
        floor = (worst_stay - best_reach - gain_bound - slack).clamp_(min=lowest)
        if best_token is not None:
            rows = (best_token[:n, t] >= floor).nonzero().squeeze(1)  # utterances with a live token
            width = 0
            if len(rows):
                picked_lp = frame.index_select(0, rows)  # (rows, V), a copy
                picked_lp[:, blank] = -math.inf
                bar = floor[rows] if token_prune_threshold is None else floor[rows].clamp(min=token_prune_threshold)
                width = min(int((picked_lp >= bar.unsqueeze(1)).sum(1).max()), max_width)
                # The `width` best of each row: its live tokens, and maybe tokens that cannot win (exact).
                picked_lp, picked = picked_lp.topk(width, dim=1, sorted=False)
                if token_prune_threshold is not None:
                    picked_lp.masked_fill_(picked_lp < token_prune_threshold, -math.inf)
        else:
            if cand_lp is not None:
                token_lp = cand_lp[:n, t]
            else:  # every non-blank token of the frame
                token_lp = frame.index_fill(1, blank_id, -math.inf)
                if token_prune_threshold is not None:
                    token_lp.masked_fill_(token_lp < token_prune_threshold, -math.inf)
            width = min(int((token_lp >= floor.unsqueeze(1)).sum(1).max()), max_width)
        if width == 0:  # every beam stays as it is: a blank or a repeat
            pb, pnb = stay_pb, stay_pnb
            back_source.append(stay_source)
            back_token.append(no_token)
            continue
        if best_token is not None:  # the other utterances get no candidates (-inf; the blank as id)
            token_lp, tokens = picked_lp[:, :width], picked[:, :width]
            if len(rows) < n:
                token_lp = token_lp.new_full((n, width), -math.inf).index_copy_(0, rows, token_lp)
                tokens = tokens.new_full((n, width), blank).index_copy_(0, rows, tokens)
        elif cand_lp is not None:
            token_lp, tokens = token_lp[:, :width], cand_tok[:n, t, :width]  # (n, C)
        elif 2 * width >= num_classes - 1:
            # Most labels are live: extending all of them (the blank's column stays -inf) is cheaper than
            # picking them, and candidate slot c is label c (tokens None), so no slot maps are needed.
            tokens, width = None, num_classes
        else:
            token_lp, tokens = token_lp.topk(width, dim=1, sorted=False)

        # Scores (B, K + K·C): the K stays, then each beam's extensions, written in place: reached + y_c
        # (+ fusion), but pb + y_c for the beam's own last token (at its slot: "a a" needs a blank).
        if tokens is None:
            slot, has_slot = last, None  # every label is a candidate; the empty prefix's slot, the blank's, is -inf
        else:
            if beams * width < num_classes:  # compare each beam's last token with the candidates (B, K, C)
                match = tokens.unsqueeze(1) == last.unsqueeze(2)
                has_slot, slot = match.any(2), match.to(torch.uint8).argmax(2)
            else:  # a map label -> slot (B, V)
                slot_ids = torch.arange(width, device=device).expand(n, -1)
                slot = torch.full((n, num_classes), -1, device=device).scatter_(1, tokens, slot_ids).gather(1, last)
                has_slot = slot >= 0
                slot = slot.clamp_(min=0)
        scores = torch.empty(n, beams * (width + 1), dtype=dtype, device=device)
        scores[:, :beams] = stay_score
        extensions = scores[:, beams:].view(n, beams, width)
        torch.add(reached.unsqueeze(2), token_lp.unsqueeze(1), out=extensions)
        own = beam_ids * width + slot
        own_score = pb + token_lp.gather(1, slot)
        if state is not None:
            delta = state.extension_scores(tokens).to(dtype)  # (B, K, C), fresh
            extensions.add_(delta)
            own_score += lm_acc + delta.view(n, -1).gather(1, own)
        if has_slot is not None:
            own_score = torch.where(has_slot, own_score, scores.gather(1, own + beams))
        scores.scatter_(1, own + beams, own_score)
        # The extension merged above must not also stand as a beam of its own: it sits in row i of the
        # scores, at the candidate slot of beam j's last token (if that token is a candidate this frame).
        duplicate = merged if has_slot is None else merged & has_slot
        position = torch.where(duplicate, source * width + slot + beams, beam_ids)
        scores.scatter_(1, position, torch.where(duplicate, neg_inf, stay_score))

        best, chosen = scores.topk(beams, dim=1, sorted=False)
        # A beam of probability 0 is no prefix: it stays where it is, with no token (else an utterance
        # whose every prefix died would pick up tokens from the slots its batch-mates' candidates made).
        invalid = best == -math.inf
        chosen = torch.where(invalid, beam_ids, chosen)
        extended = chosen >= beams
        flat = (chosen - beams).clamp_(min=0)
        source = torch.where(extended, flat // width, chosen)
        at_slot = flat % width
        new_token = torch.where(extended, at_slot if tokens is None else tokens.gather(1, at_slot), -1)
        # An extension's acoustic part: (pb if it repeats its beam's last token, else total) + y_c.
        last_source = last.gather(1, source)
        grown = torch.where(new_token == last_source, pb.gather(1, source), total.gather(1, source))
        pnb = torch.where(extended, grown + token_lp.gather(1, at_slot), stay_pnb.gather(1, source))
        pnb.masked_fill_(invalid, -math.inf)
        pb = torch.where(extended, neg_inf, stay_pb.gather(1, source)).masked_fill_(invalid, -math.inf)
        if state is not None:
            lm_acc = lm_acc.gather(1, source)
            lm_acc = torch.where(extended, lm_acc + delta.reshape(n, -1).gather(1, flat), lm_acc)
            state.advance(source, new_token, extended)
        source_key = key.gather(1, source)
        last = torch.where(extended, new_token, last_source)
        key = torch.where(extended, _extend_key(source_key, new_token, num_classes + 1), source_key)
        parent = torch.where(extended, source_key, parent.gather(1, source))
        key.masked_fill_(invalid, -1)
        parent.masked_fill_(invalid, -2)
        back_source.append(source)
        back_token.append(new_token)

    finish(slice(0, pb.shape[0]), state)
    restore = torch.empty_like(by_length).scatter_(0, by_length, torch.arange(batch, device=device))  # caller's order
    am, lm, acc = final_am[restore], final_lm[restore], final_acc[restore]
    total = am + lm
    # If no beam of an utterance may end (e.g. each stops inside a word the lexicon lacks), rank its beams
    # by the score they had before the end, rather than in arbitrary order; their scores stay -inf.
    dead_end = (total == -math.inf).all(1, keepdim=True)
    ranked = torch.where(dead_end, am + acc, total).argsort(dim=1, descending=True)[:, :nbest]
    tokens = _backtrack(back_source, back_token, ranked[by_length], beams)
    tokens = [tokens[i] for i in restore.tolist()]
    am, lm = am.gather(1, ranked).tolist(), lm.gather(1, ranked).tolist()
    # Beams that never held a prefix (fewer distinct prefixes than beams) are dropped; the best stays.
    keep = [[i for i in range(nbest) if i == 0 or a[i] + m[i] > -math.inf] for a, m in zip(am, lm)]
    return SearchResult([[seqs[i] for i in k] for seqs, k in zip(tokens, keep)],
                        [[a[i] for i in k] for a, k in zip(am, keep)],
                        [[m[i] for i in k] for m, k in zip(lm, keep)])


def check_lengths(lengths: torch.Tensor, steps: int) -> None:
    """Raise a clear error unless every length lies in [0, steps] (torch's CTC code would crash or clamp)."""
    if lengths.numel() and not 0 <= int(lengths.min()) <= int(lengths.max()) <= steps:
        raise ValueError(f"lengths must lie in [0, T={steps}], got {lengths.tolist()}")


def _compact_frames(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int,
                    skip_blank_threshold: float | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(log_probs (B, T', V), frames (B,)): each utterance's frames are its first frames[b] rows; the
    rest is filler, never read. Without skipping: the input up to the longest length, unchanged. With
    skipping: each run of skipped frames becomes one blank-only frame whose blank log-prob is the run's
    sum, every other label -inf (runs that only reach into the padding count to the utterance)."""
    batch, steps, num_classes = log_probs.shape
    if skip_blank_threshold is None or batch == 0:
        return log_probs[:, :int(lengths.max()) if batch else 0], lengths
    frame = torch.arange(steps, device=log_probs.device)
    padding = frame.unsqueeze(0) >= lengths.unsqueeze(1)
    skip = padding | (log_probs[..., blank] > math.log(skip_blank_threshold))
    if steps == 0 or not bool(skip.any()):
        return log_probs, lengths
    run_start = skip & ~F.pad(skip[:, :-1], (1, 0), value=False)
    kept = ~skip | run_start
    position = kept.cumsum(1) - 1                      # (B, T): where each frame lands
    count = kept.sum(1)
    out = log_probs.new_full((batch, int(count.max()), num_classes), -math.inf)
    b, t = (~skip).nonzero(as_tuple=True)
    out[b, position[b, t]] = log_probs[b, t]
    blank_lp = torch.where(skip & ~padding, log_probs[..., blank], 0.0)
    run_blank = out.new_zeros(out.shape[:2]).scatter_add_(1, position, blank_lp)
    blank_only = torch.zeros(out.shape[:2], dtype=torch.bool, device=out.device).scatter_(1, position, skip)
    out[..., blank] = torch.where(blank_only, run_blank, out[..., blank])
    return out, count


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


def _extend_key(key: torch.Tensor, token: torch.Tensor, base: int) -> torch.Tensor:
    """Prefix keys with one more token (digit token + 1): :func:`ctcrnn.hashing.extend`, fewer operations."""
    digit = token + 1
    return (((key >> 31) * base + digit) % hashing.P1 << 31) | (((key & hashing.LOW) * base + digit) % hashing.P2)


def _backtrack(back_source: list[torch.Tensor], back_token: list[torch.Tensor], ranked: torch.Tensor,
               beams: int) -> list[list[list[int]]]:
    """Label sequences of the ``ranked`` (B, N) final beams, following the per-frame back-pointers: frame
    t's are (n_t, K) for the first n_t utterances (n_t never grows); the others had ended and stay."""
    batch = ranked.shape[0]
    source = np.broadcast_to(np.arange(beams), (len(back_source), batch, beams)).copy()
    token = np.full((len(back_token), batch, beams), -1, dtype=np.int64)
    if back_source:
        rows = np.cumsum([0] + [len(s) for s in back_source])
        all_source, all_token = torch.cat(back_source).cpu().numpy(), torch.cat(back_token).cpu().numpy()
        for t in range(len(back_source)):
            source[t, :rows[t + 1] - rows[t]] = all_source[rows[t]:rows[t + 1]]
            token[t, :rows[t + 1] - rows[t]] = all_token[rows[t]:rows[t + 1]]
    beam = ranked.cpu().numpy()
    rows = np.arange(beam.shape[0])[:, None]
    emitted = np.empty((source.shape[0],) + beam.shape, dtype=np.int64)  # (T, B, N)
    for t in range(source.shape[0] - 1, -1, -1):
        emitted[t] = token[t, rows, beam]
        beam = source[t, rows, beam]
    return [[[int(x) for x in emitted[:, b, n] if x >= 0] for n in range(beam.shape[1])]
            for b in range(beam.shape[0])]
