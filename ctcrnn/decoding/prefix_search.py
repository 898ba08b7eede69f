"""The CTC prefix beam search itself, vectorised: per frame, every beam × every candidate token of every
utterance in one set of tensor operations (a Python loop runs over frames only). Use it through
:func:`ctcrnn.decoding.prefix_beam_search`, which adds timestamps and words, or
:class:`ctcrnn.decoding.streaming.StreamingDecoder`, which feeds it a stream chunk by chunk: a
:class:`SearchSession` keeps the beams between chunks, and the offline search is a session of one chunk.

Exact prefix scores. Each beam is a label prefix with two log-probabilities, summed over all alignments
so far: ``pb`` (alignments ending in blank) and ``pnb`` (ending in the prefix's last token). A frame
with log-probs y gives

    same prefix:  pb' = (pb ⊕ pnb) + y_blank,   pnb' = pnb + y_last     (a repeat collapses)
    prefix + c:   pnb' = (pb ⊕ pnb) + y_c,      but only pb + y_c when c == last ("a a" needs a blank)

(⊕ = log-sum-exp). When prefix + c is already a beam, its mass is added to that beam instead of
becoming a second copy; prefixes are identified by 62-bit rolling keys (:mod:`ctcrnn.decoding.hashing`), so
"is beam j = beam i + its own last token" is a search of j's parent key among the beams' keys. The K
stays and K × C extensions of each utterance are then ranked by one ``topk``, and per-frame
back-pointers give the label sequences at the end (of the chunk: :func:`trace_back`).

Exact pruning. An extension of beam i by token c scores at most max_i(total_i + LM_i) + y_c + g, where
g bounds what fusion can add for one token (:meth:`ctcrnn.fusion.LMFusion.max_gain`). If that bound is
below the worst of the K stays, the extension cannot be kept, so each frame extends only the tokens that
pass it (none, on most frames of peaky outputs, which then cost a handful of operations).

Runs of frames skipped by ``skip_blank_threshold`` become single "blank only" frames: they can only
move mass from pnb to pb, which is exactly what a blank does, so ``a _ a`` stays two tokens while the
loop runs over fewer frames. Padding is never read: utterances run longest first, and each leaves the
search (its rows of every per-frame operation) after its last frame.

Stages of a frame (:func:`_search_frame`): the stays (:func:`_stays`, merges included); candidate
selection (:meth:`ctcrnn.decoding.frames.FrameReader.candidates`, below the floor of :func:`_token_floor`
nothing is extended); extension scoring (:func:`_extension_scores`, into one score buffer written in
place); beam choice (:func:`_choose_beams`). Finishing: :class:`_FinalScores` as utterances end, then
:func:`_results` and :func:`_backtrack`. Each chunk is prepared (:meth:`SearchSession._prepare`) and run
by :meth:`SearchSession.search`. The beams are a :class:`PrefixBeams`, whose per-beam tensors (the
fusion state's too) are cut and moved generically (:mod:`ctcrnn.decoding.beam_state`). A frame is a few
dozen small tensor operations, so at small batches the Python around them shows in the time (a few
percent at B = 16): the stages pass tensors and small tuples, and count their operations.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from . import hashing
from .beam_state import BeamState, per_beam
from .frames import Candidates, FrameReader, compact_frames
from .fusion import FusionState, LMFusion

__all__ = ["SearchResult", "SearchSession", "check_lengths", "ctc_prefix_search", "search_dtype", "trace_back"]

# Frames are wide from this batch size × labels on (see ctcrnn.decoding.frames).
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
    _check_arguments(log_probs, lengths, beam_size, nbest, token_prune_topk)
    session = SearchSession(log_probs.shape[0], beam_size, blank, dtype=search_dtype(log_probs),
                            device=log_probs.device, token_prune_topk=token_prune_topk,
                            token_prune_threshold=token_prune_threshold, fusion=fusion)
    pointers, order = session.search(log_probs, lengths, skip_blank_threshold)  # the whole input: one chunk
    return _results(session.finish(), pointers, order, nbest)


def search_dtype(log_probs: torch.Tensor) -> torch.dtype:
    """The dtype a search of ``log_probs`` runs in: theirs, float32 for integer scores."""
    return log_probs.dtype if log_probs.is_floating_point() else torch.float32


def check_lengths(lengths: torch.Tensor, steps: int) -> None:
    """Raise a clear error unless every length lies in [0, steps] (torch's CTC code would crash or clamp)."""
    if lengths.numel() and not 0 <= int(lengths.min()) <= int(lengths.max()) <= steps:
        raise ValueError(f"lengths must lie in [0, T={steps}], got {lengths.tolist()}")


def _check_arguments(log_probs: torch.Tensor, lengths: torch.Tensor, beam_size: int, nbest: int,
                     token_prune_topk: int | None) -> None:
    if log_probs.dim() != 3 or lengths.shape != log_probs.shape[:1]:
        raise ValueError(f"expected log_probs (B, T, V) and lengths (B,), got {tuple(log_probs.shape)} "
                         f"and {tuple(lengths.shape)}")
    if not 1 <= nbest <= beam_size:
        raise ValueError(f"nbest must lie in [1, beam_size={beam_size}], got {nbest}")
    if token_prune_topk is not None and token_prune_topk < 1:
        raise ValueError(f"token_prune_topk must be at least 1 (None: no cut), got {token_prune_topk}")
    check_lengths(lengths, log_probs.shape[1])


@dataclass(eq=False)
class PrefixBeams(BeamState):
    """The K beams (label prefixes) of each running utterance, (n, K) each. A beam of probability 0 holds
    no prefix. Cut (utterances that end) and moved (beams that continue others) generically, fusion too."""
    shape: tuple[int, int]
    pb: torch.Tensor = per_beam()              # log-prob of the prefix's alignments that end in a blank
    pnb: torch.Tensor = per_beam()             # ... that end in its last token
    # Its last token. The empty prefix has none: "blank" stands in; its pnb is -inf, so it never continues
    # a repeat, and the blank is never a candidate, so no extension takes it for a repeat either.
    last: torch.Tensor = per_beam()
    key: torch.Tensor = per_beam()             # its 62-bit key (hashing); -1: no prefix, never a parent key
    parent: torch.Tensor = per_beam()          # its parent's key; -2 matches no key
    lm_acc: torch.Tensor | None = per_beam()   # its fusion score so far; None without fusion
    fusion: FusionState | None = per_beam()    # its fusion state; None without fusion

    @classmethod
    def start(cls, batch: int, beams: int, blank: int, dtype: torch.dtype, device: torch.device,
              fusion: LMFusion | None) -> PrefixBeams:
        """Every utterance holds the empty prefix, as beam 0, and nothing else."""
        pb = torch.full((batch, beams), -math.inf, dtype=dtype, device=device)
        pb[:, 0] = 0.0
        last = torch.full((batch, beams), blank, dtype=torch.long, device=device)
        key = torch.full_like(last, -1)
        key[:, 0] = 0
        return cls((batch, beams), pb=pb, pnb=torch.full_like(pb, -math.inf), last=last, key=key,
                   parent=torch.full_like(last, -2), lm_acc=None if fusion is None else torch.zeros_like(pb),
                   fusion=None if fusion is None else fusion.start(batch, beams, device))


class SearchSession:
    """One prefix beam search that takes its frames chunk by chunk: the beams of each utterance, fusion
    state included, carry over from one chunk to the next, so that any cut of the frames gives the search
    of all of them at once. :func:`ctc_prefix_search` is one chunk; a stream
    (:mod:`ctcrnn.decoding.streaming`) is many, and resolves each chunk's back-pointers (:func:`trace_back`)
    into label sequences before it drops them, so that nothing kept grows with the frames.

    An utterance leaves the search when its frames end (its ``lengths`` entry is below the chunk's frames),
    for good: a batch whose utterances end at different frames is searched in one chunk; a later chunk
    needs every utterance still running (one stream, or streams cut alike)."""

    def __init__(self, batch: int, beam_size: int, blank: int = 0, *, dtype: torch.dtype = torch.float32,
                 device: torch.device | str = "cpu", token_prune_topk: int | None = None,
                 token_prune_threshold: float | None = None, fusion: LMFusion | None = None,
                 redate_tokens: bool = False):
        self.batch, self.beam_size, self.blank, self.fusion = batch, beam_size, blank, fusion
        self.redate_tokens = redate_tokens  # date each token by the spike that brings its mass (_Stays.redated)
        self.token_prune_topk, self.token_prune_threshold = token_prune_topk, token_prune_threshold
        self.beams = PrefixBeams.start(batch, beam_size, blank, dtype, torch.device(device), fusion)
        self.finals = _FinalScores(self.beams)
        # What every chunk's frames share (made once: a stream's chunks may be a frame each).
        self._gain_bound = fusion.max_gain() if fusion is not None else 0.0
        self._beam_ids = torch.arange(beam_size, device=device)
        self._neg_inf = torch.tensor(-math.inf, dtype=dtype, device=device)

    def search(self, log_probs: torch.Tensor, lengths: torch.Tensor, skip_blank_threshold: float | None = None
               ) -> tuple[list[tuple[torch.Tensor, torch.Tensor] | None], torch.Tensor]:
        """Run the frames of log_probs (B, T, V), lengths[b] of them for utterance b. Returns the chunk's
        back-pointers, per searched frame (blank runs compacted by ``skip_blank_threshold``): (source,
        token) (n_t, K), or None where every beam stayed; and the search's order of the utterances (B,)."""
        if self.beams.shape[0] < self.batch:
            raise RuntimeError(f"{self.batch - self.beams.shape[0]} utterances of this search ended in an earlier "
                               f"chunk (their lengths were below its frames): only utterances still running can "
                               f"take more frames; search a batch that ends unevenly in one chunk")
        search = self._prepare(log_probs, lengths, skip_blank_threshold)
        beams, pointers = self.beams, []
        for t, n in enumerate(search.active):
            if n < beams.shape[0]:  # utterances that ended: final scores, and no more rows in the search
                beams, ended = beams.split(n)
                self.finals.record(ended, start=n)
            beams, back = _search_frame(search, beams, t)
            pointers.append(back)
        self.beams = beams
        return pointers, search.frames.by_length

    def _prepare(self, log_probs: torch.Tensor, lengths: torch.Tensor, skip_blank: float | None) -> _Search:
        """A chunk's frames to read (compacted, longest first) and how to pick their candidates."""
        batch, _, num_classes = log_probs.shape
        dtype, device = self.beams.pb.dtype, self.beams.pb.device
        log_probs, frames = compact_frames(log_probs.detach().to(device, dtype), lengths.to(device), self.blank,
                                           skip_blank)
        steps = log_probs.shape[1]
        # Utterances run longest first, so that those still running at frame t are rows [:active[t]] and
        # every per-frame operation covers only them (past its last frame an utterance would only take
        # blanks of probability 1, which change no prefix's total). One utterance (a stream's chunk, of a
        # frame or two) needs no sort.
        if batch == 1:
            by_length, active = self._beam_ids[:1] * 0, [1] * steps
        else:
            by_length = frames.argsort(descending=True, stable=True)
            active = (frames > torch.arange(steps, device=device).unsqueeze(1)).sum(1).tolist()
        # Wide frames (many utterances × labels) make passes over all of log_probs cost more than a few
        # operations per frame: candidates are then picked per frame.
        wide = batch * num_classes >= _WIDE_FRAMES
        # Without fusion only the beam_size + 1 most probable tokens can matter (a beam's k-th best
        # extension is among them), so that cut is always applied and loses nothing.
        max_width = min(num_classes - 1, self.token_prune_topk or num_classes,
                        self.beam_size + 1 if self.fusion is None else num_classes)
        reader = FrameReader(log_probs, by_length, self.blank, max_width, self.token_prune_threshold, wide)
        return _Search(reader, active, num_classes, self.blank, self._gain_bound, dtype, device, self._beam_ids,
                       self._neg_inf, self.redate_tokens)

    def running_scores(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(am, lm) (n, K) of the running utterances' beams, as the search ranks them (by am + lm): ln P
        of each prefix over the frames so far, and its fusion score without end-of-utterance terms."""
        beams = self.beams
        am = torch.logaddexp(beams.pb, beams.pnb)
        return am, (beams.lm_acc if beams.lm_acc is not None else torch.zeros_like(am))

    def finish(self) -> _FinalScores:
        """The final scores of every utterance (the running ones end here, end-of-utterance fusion terms
        applied); the session takes no more frames."""
        self.finals.record(self.beams, start=0)
        self.beams = self.beams.select(slice(0, 0))
        return self.finals


@dataclass(eq=False)
class _Search:
    """What every frame of one chunk of a search shares (:meth:`SearchSession._prepare`)."""
    frames: FrameReader
    active: list[int]      # per frame: utterances still running (rows [:n] of the search's order)
    num_classes: int       # V
    blank: int
    gain_bound: float      # an upper bound of what fusion adds for one token (LMFusion.max_gain)
    dtype: torch.dtype
    device: torch.device
    beam_ids: torch.Tensor  # (K,) 0 ... K - 1
    neg_inf: torch.Tensor   # -inf, a 0-dim tensor of the dtype
    redate: bool = False    # date tokens by the mass that brings them (see _Stays.redated); streams only


class _Stays(NamedTuple):
    """Each beam (n, K) after a frame that adds no token to it: a blank, or a repeat of its last token."""
    beams: PrefixBeams     # pb and pnb after the frame; the rest as before it
    total: torch.Tensor    # pb ⊕ pnb before the frame
    score: torch.Tensor    # pb ⊕ pnb after the frame, + the fusion score
    reached: torch.Tensor  # total + the fusion score: what each extension of the beam starts from
    merged: torch.Tensor   # beam j is beam i + last[j] (bool): i's extension by that token went to j
    source: torch.Tensor   # that i
    # With search.redate: beam j's last token is dated to this frame, its back-pointer then being (i, last[j]),
    # where i's extension brings j more mass than all j's own alignments (None without). A beam takes a
    # token when it enters the beam, maybe from a tiny probability that a low-ranked beam keeps for a while
    # ("ab" from b = 0.01 on frame 1, then b = 0.97 on frame 3): dated by the spike that makes its mass,
    # a token's frame is where its spike starts on the path that carries most of the prefix's probability.
    redated: torch.Tensor | None


def _search_frame(search: _Search, beams: PrefixBeams,
                  t: int) -> tuple[PrefixBeams, tuple[torch.Tensor, torch.Tensor] | None]:
    """The beams after frame ``t``, with back-pointers (n, K): the old beam each continues and the token
    it added (-1: none); None if every beam stays."""
    n = beams.shape[0]
    frame = search.frames.frame(t, n)
    stays = _stays(beams, frame, search.blank, search.redate)
    candidates = search.frames.candidates(frame, t, _token_floor(stays, search.gain_bound))
    if candidates is None:  # every beam stays as it is: a blank or a repeat
        if stays.redated is not None and bool(stays.redated.any()):
            return stays.beams, (torch.where(stays.redated, stays.source, search.beam_ids),
                                 torch.where(stays.redated, beams.last, -1))
        return stays.beams, None
    scores, delta = _extension_scores(search, beams, stays, candidates)
    return _choose_beams(search, beams, stays, candidates, scores, delta)


def _stays(beams: PrefixBeams, frame: torch.Tensor, blank: int, redate: bool = False) -> _Stays:
    """What each beam becomes if ``frame`` (n, V) adds no token to it."""
    pb, pnb, last = beams.pb, beams.pnb, beams.last
    total = torch.logaddexp(pb, pnb)
    last_lp = frame.gather(1, last)
    stay_pb = total + frame[:, blank:blank + 1]
    stay_pnb = pnb + last_lp
    # Beam j = beam i + last[j]: add that extension's mass to j. Keys are distinct, so find i by
    # searching j's parent key among the sorted keys of its utterance (K log K, not K²).
    sorted_key, order = beams.key.sort(1)
    at = torch.searchsorted(sorted_key, beams.parent).clamp_(max=beams.shape[1] - 1)
    merged = sorted_key.gather(1, at) == beams.parent
    source = order.gather(1, at)
    grow = torch.where(last.gather(1, source) == last, pb.gather(1, source), total.gather(1, source))
    incoming = grow + last_lp
    redated = merged & (incoming > torch.logaddexp(stay_pb, stay_pnb)) if redate else None
    stay_pnb = torch.where(merged, torch.logaddexp(stay_pnb, incoming), stay_pnb)
    score, reached = torch.logaddexp(stay_pb, stay_pnb), total
    if beams.lm_acc is not None:
        score, reached = score + beams.lm_acc, total + beams.lm_acc
    return _Stays(beams.replace(pb=stay_pb, pnb=stay_pnb), total, score, reached, merged, source, redated)


def _token_floor(stays: _Stays, gain_bound: float) -> torch.Tensor:
    """(n,) the log-prob a token needs for any extension by it to outscore the worst stay. Extension
    (i, c) scores at most max_i(reached_i) + y_c + gain_bound; below the worst of the K stays it cannot
    be kept, so the search builds only the extensions by tokens at or above the floor (exact)."""
    worst_stay, best_reach = stays.score.amin(1), stays.reached.amax(1)
    finfo = torch.finfo(worst_stay.dtype)
    # Slack for this dtype's rounding, so that a float score a few ulps above its bound is still built.
    slack = (worst_stay.abs() + best_reach.abs()).mul_(16 * finfo.eps)
    floor = worst_stay - best_reach
    if gain_bound:  # (x - 0 is x: one operation less per frame without fusion)
        floor.sub_(gain_bound)
    return floor.sub_(slack).clamp_(min=finfo.min)  # a live token must at least be finite


def _extension_scores(search: _Search, beams: PrefixBeams, stays: _Stays,
                      candidates: Candidates) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(scores (n, K + K·C), delta): the K stays, then each beam's C extensions, and the fusion scores
    (n, K, C) of the extensions (None without fusion). An extension is reached + y_c (+ fusion), but
    pb + y_c for the beam's own last token ("a a" needs a blank); -inf where a stay holds it already."""
    (n, num_beams), beam_ids = beams.shape, search.beam_ids
    token_lp, width = candidates.token_lp, candidates.width
    slot, has_slot = _own_slots(candidates, beams.last, search.num_classes)
    scores = torch.empty(n, num_beams * (width + 1), dtype=search.dtype, device=search.device)
    scores[:, :num_beams] = stays.score  # all written in place: no concatenation
    extensions = scores[:, num_beams:].view(n, num_beams, width)
    torch.add(stays.reached.unsqueeze(2), token_lp.unsqueeze(1), out=extensions)
    own = torch.add(slot, beam_ids, alpha=width)  # each beam's extension by its own last token (slot + K·beam)
    own_column = own + num_beams
    own_score = beams.pb + token_lp.gather(1, slot)
    delta = None
    if beams.fusion is not None:
        delta = beams.fusion.extension_scores(candidates.tokens).to(search.dtype)  # (n, K, C), fresh
        extensions.add_(delta)
        own_score += beams.lm_acc + delta.view(n, -1).gather(1, own)
    if has_slot is not None:  # where the last token is no candidate, slot 0 keeps its score
        own_score = torch.where(has_slot, own_score, scores.gather(1, own_column))
    scores.scatter_(1, own_column, own_score)
    # The extension merged into a stay must not also stand as a beam of its own: it sits in row i of the
    # scores, at the candidate slot of beam j's last token (if that token is a candidate this frame).
    duplicate = stays.merged if has_slot is None else stays.merged & has_slot
    position = torch.where(duplicate, torch.add(slot, stays.source, alpha=width).add_(num_beams), beam_ids)
    scores.scatter_(1, position, torch.where(duplicate, search.neg_inf, stays.score))
    return scores, delta


def _own_slots(candidates: Candidates, last: torch.Tensor,
               num_classes: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(slot (n, K), has_slot (n, K) or None): the candidate slot of each beam's last token, 0 where it
    is not a candidate this frame (has_slot False). With every label a candidate, slot c is label c, and
    the empty prefix's slot, the blank's, is -inf."""
    tokens, width = candidates.tokens, candidates.width
    if tokens is None:
        return last, None
    if last.shape[1] * width < num_classes:  # compare each beam's last token with the candidates (n, K, C)
        match = tokens.unsqueeze(1) == last.unsqueeze(2)
        return match.to(torch.uint8).argmax(2), match.any(2)
    # a map label -> slot (n, V)
    slot_ids = torch.arange(width, device=tokens.device).expand(tokens.shape[0], -1)
    slot = torch.full((tokens.shape[0], num_classes), -1, device=tokens.device).scatter_(1, tokens, slot_ids)
    slot = slot.gather(1, last)
    has_slot = slot >= 0
    return slot.clamp_(min=0), has_slot


def _choose_beams(search: _Search, beams: PrefixBeams, stays: _Stays, candidates: Candidates, scores: torch.Tensor,
                  delta: torch.Tensor | None) -> tuple[PrefixBeams, tuple[torch.Tensor, torch.Tensor]]:
    """The K best of ``scores`` (n, K + K·C) as the new beams, with back-pointers (n, K): the old beam
    each continues, and the token it added (-1: none)."""
    (n, num_beams), width, tokens = beams.shape, candidates.width, candidates.tokens
    best, chosen = scores.topk(num_beams, dim=1, sorted=False)
    # A beam of probability 0 is no prefix: it stays where it is, with no token (else an utterance
    # whose every prefix died would pick up tokens from the slots its batch-mates' candidates made).
    invalid = best == -math.inf
    chosen = torch.where(invalid, search.beam_ids, chosen)
    extended = chosen >= num_beams
    flat = (chosen - num_beams).clamp_(min=0)
    source = torch.where(extended, torch.div(flat, width, rounding_mode="floor"), chosen)
    at_slot = flat % width
    token = torch.where(extended, at_slot if tokens is None else tokens.gather(1, at_slot), -1)
    new = stays.beams.gather(source)  # the stays of the chosen beams, fusion state included
    # An extension's acoustic part: (pb if it repeats its beam's last token, else total) + y_c.
    grown = torch.where(token == new.last, beams.pb.gather(1, source), stays.total.gather(1, source))
    grown = grown + candidates.token_lp.gather(1, at_slot)
    new.pnb = torch.where(extended, grown, new.pnb).masked_fill_(invalid, -math.inf)
    new.pb = torch.where(extended, search.neg_inf, new.pb).masked_fill_(invalid, -math.inf)
    if new.fusion is not None:
        new.lm_acc = torch.where(extended, new.lm_acc + delta.reshape(n, -1).gather(1, flat), new.lm_acc)
        new.fusion.extend(token, extended)
    new.parent = torch.where(extended, new.key, new.parent).masked_fill_(invalid, -2)
    new.key = torch.where(extended, _extend_key(new.key, token, search.num_classes + 1), new.key)
    new.key.masked_fill_(invalid, -1)
    if stays.redated is not None:  # a kept stay dated by its merge points to the merge's source
        redated = ~extended & stays.redated.gather(1, source)
        token = torch.where(redated, new.last, token)
        source = torch.where(redated, stays.source.gather(1, source), source)
    new.last = torch.where(extended, token, new.last)
    return new, (source, token)


class _FinalScores:
    """Acoustic and fusion scores (B, K) of each utterance's beams as it ends, in the search's order, and
    its fusion scores before the end."""

    def __init__(self, beams: PrefixBeams):
        self.am, self.lm, self.acc = (torch.zeros_like(beams.pb) for _ in range(3))

    def record(self, beams: PrefixBeams, start: int) -> None:
        """The scores of ``beams``, the utterances from row ``start`` on, which end here."""
        rows = slice(start, start + beams.shape[0])
        self.am[rows] = torch.logaddexp(beams.pb, beams.pnb)
        if beams.fusion is not None:
            self.acc[rows] = beams.lm_acc
            self.lm[rows] = beams.lm_acc + beams.fusion.final_scores().to(self.lm.dtype)

    def ranking(self) -> torch.Tensor:
        """(B, K) each utterance's beams, best first (by am + lm), in the search's order."""
        total = self.am + self.lm
        # If no beam of an utterance may end (e.g. each stops inside a word the lexicon lacks), rank its beams
        # by the score they had before the end, rather than in arbitrary order; their scores stay -inf.
        dead_end = (total == -math.inf).all(1, keepdim=True)
        return torch.where(dead_end, self.am + self.acc, total).argsort(dim=1, descending=True)


def _results(finals: _FinalScores, pointers: list[tuple[torch.Tensor, torch.Tensor] | None],
             by_length: torch.Tensor, nbest: int) -> SearchResult:
    """The ``nbest`` best beams of each utterance, in the caller's order, with their label sequences."""
    batch, beams = finals.am.shape
    restore = torch.empty_like(by_length).scatter_(0, by_length, torch.arange(batch, device=by_length.device))
    am, lm = finals.am[restore], finals.lm[restore]
    ranked = finals.ranking()[restore][:, :nbest]
    tokens = _backtrack(pointers, ranked[by_length], beams)
    tokens = [tokens[i] for i in restore.tolist()]
    am, lm = am.gather(1, ranked).tolist(), lm.gather(1, ranked).tolist()
    # Beams that never held a prefix (fewer distinct prefixes than beams) are dropped; the best stays.
    keep = [[i for i in range(nbest) if i == 0 or a[i] + m[i] > -math.inf] for a, m in zip(am, lm)]
    return SearchResult([[seqs[i] for i in k] for seqs, k in zip(tokens, keep)],
                        [[a[i] for i in k] for a, k in zip(am, keep)],
                        [[m[i] for i in k] for m, k in zip(lm, keep)])


def _extend_key(key: torch.Tensor, token: torch.Tensor, base: int) -> torch.Tensor:
    """Prefix keys with one more token (digit token + 1): :func:`ctcrnn.hashing.extend`, fewer operations."""
    digit = token + 1
    high = torch.add(digit, key >> 31, alpha=base) % hashing.P1  # (one add with alpha: one operation less)
    low = torch.add(digit, key & hashing.LOW, alpha=base) % hashing.P2
    return (high << 31) | low


def _backtrack(pointers: list[tuple[torch.Tensor, torch.Tensor] | None], ranked: torch.Tensor,
               beams: int) -> list[list[list[int]]]:
    """Label sequences of the ``ranked`` (B, N) final beams of a search run in one chunk."""
    _, emitted = trace_back(pointers, ranked.cpu().numpy(), beams)
    return [[[int(x) for x in emitted[:, b, n] if x >= 0] for n in range(emitted.shape[2])]
            for b in range(emitted.shape[1])]


def trace_back(pointers: list[tuple[torch.Tensor, torch.Tensor] | None], ranked: np.ndarray,
               beams: int) -> tuple[np.ndarray, np.ndarray]:
    """Follow one chunk's back-pointers (:meth:`SearchSession.search`) from its last frame to its first,
    for the beams ``ranked`` (B, N) at its end: (origin (B, N), the beam at the chunk's start that each
    continues; emitted (T, B, N), the token each added on frame t, -1 for none). Frame t's (source,
    token) are (n_t, K) for the first n_t utterances (n_t never grows), the others had ended and stay;
    None: every beam stayed."""
    steps, batch = len(pointers), ranked.shape[0]
    source = np.broadcast_to(np.arange(beams), (steps, batch, beams)).copy()
    token = np.full((steps, batch, beams), -1, dtype=np.int64)
    moved = [t for t, p in enumerate(pointers) if p is not None]
    if moved:
        rows = np.cumsum([0] + [pointers[t][0].shape[0] for t in moved])
        all_source = torch.cat([pointers[t][0] for t in moved]).cpu().numpy()
        all_token = torch.cat([pointers[t][1] for t in moved]).cpu().numpy()
        for i, t in enumerate(moved):
            source[t, :rows[i + 1] - rows[i]] = all_source[rows[i]:rows[i + 1]]
            token[t, :rows[i + 1] - rows[i]] = all_token[rows[i]:rows[i + 1]]
    beam = ranked
    rows = np.arange(beam.shape[0])[:, None]
    emitted = np.empty((steps,) + beam.shape, dtype=np.int64)  # (T, B, N)
    for t in range(steps - 1, -1, -1):
        emitted[t] = token[t, rows, beam]
        beam = source[t, rows, beam]
    return beam, emitted
