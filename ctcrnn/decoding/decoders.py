"""CTC decoding: turn a model's per-frame log-probabilities into label sequences. Blank is index 0.

``greedy_decode`` takes the best label per frame. ``prefix_beam_search`` (engine in
:mod:`ctcrnn.decoding.prefix_search`, LM fusion in :mod:`ctcrnn.decoding.fusion`) keeps the most probable label prefixes,
each scored over all its alignments, optionally with an n-gram LM, a lexicon and hotwords, and returns
n-best :class:`Hypothesis` objects with token and word timestamps. The external decoders in
:mod:`ctcrnn.decoding.external` return the same objects.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import torch
import torch.nn.functional as F

from .alignment import Segment, forced_align_segments
from .prefix_search import check_lengths, ctc_prefix_search
from .fusion import LMFusion
from .lm import NGramLM, read_arpa

__all__ = ["BeamSearchDecoder", "Hypothesis", "WordSpan", "greedy_decode", "make_hypotheses",
           "prefix_beam_search"]


def greedy_decode(log_probs: torch.Tensor, lengths: torch.Tensor, blank: int = 0) -> list[list[int]]:
    """Best label per frame, repeats collapsed, blanks dropped (so ``a _ a`` stays ``a a``).

    log_probs: (B, T, V) log-probabilities (or any scores: only the argmax matters); lengths: (B,) valid
    frames per utterance, so padding frames never produce labels. Returns B label lists.

    >>> probs = torch.tensor([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8]]])
    >>> greedy_decode(probs.log(), torch.tensor([5]))   # a a _ a b: the blank keeps the two a's apart
    [[1, 1, 2]]
    """
    best = log_probs.argmax(dim=-1).tolist()  # (B, T): one call for the batch, one device-to-host copy
    # Collapsed here, not with torchaudio's merge_tokens (which alignment.py uses for its spans): that takes one
    # utterance and a scores tensor at a time and builds spans only to be thrown away, 27x slower on a batch of
    # 256 x 150 frames (2-core CPU).
    return [[label for label, _ in groupby(frames[:length]) if label != blank]
            for frames, length in zip(best, lengths.tolist())]


@dataclass
class WordSpan:
    tokens: list[int]         # the word's label ids (delimiters excluded)
    text: str | None          # their labels joined, when labels are known
    start: int | None         # first frame of the first token's spike (None without timestamps)
    end: int | None           # one past the last frame of the last token's spike
    start_s: float | None = None  # the same in seconds, when a frame shift is known
    end_s: float | None = None


@dataclass
class Hypothesis:
    tokens: list[int]               # label ids, blanks and repeats removed
    score: float                    # am_score + lm_score: what the beams were ranked by
    am_score: float                 # natural-log P(tokens | input), summed over all CTC alignments
    lm_score: float                 # lm_weight · ln P_LM + word/token bonuses + hotword bonuses (0 without)
    token_spans: list[Segment] | None = None  # per token: [start, end) frames of its spike on the most
                                              # probable alignment of these tokens; score = its mean log-prob
    token_times: list[tuple[float, float]] | None = None  # the spans in seconds (frame × frame_shift_s)
    words: list[WordSpan] | None = None  # tokens split at the word delimiter, when one is given
    text: str | None = None              # labels joined (words joined by spaces), when labels are given


class BeamSearchDecoder:
    """CTC prefix beam search with optional LM fusion, built once and called on batches.

    beam_size: prefixes kept per frame. ``beam_size=1`` without LM, lexicon or hotwords is best-path
      decoding (exactly :func:`greedy_decode`): a one-beam prefix search is *not* greedy, because a
      frame's blank can outweigh the extension that best-path picks (``a _ a`` can lose to ``a``); the
      pruning options do not apply there.
    nbest: hypotheses returned per utterance (≤ beam_size), best first.
    token_prune_topk / token_prune_threshold: consider only the k most probable non-blank tokens of a
      frame / only those with log-prob ≥ threshold. skip_blank_threshold: frames whose blank probability
      exceeds it count as certain blanks (fast on peaky outputs, changes scores only on those frames).
    labels: label strings by id (needed for an LM, a lexicon, hotwords and ``text``).
    word_delimiter: id of the token between words ("|" or " "); gives word spans and word-level fusion.
    lm: an :class:`~ctcrnn.lm.NGramLM` or an ARPA path. lm_weight multiplies its natural-log probability;
      word_bonus is added per word ("word" unit) or per token ("token" unit); lm_unit: see ctcrnn.decoding.fusion
      ("word" when word_delimiter is given, else "token").
    lexicon: allowed words; hotwords: words that earn hotword_bonus (natural log) when decoded.
    unk_score: added to every word (token, for a token LM) the LM does not know, on top of its <unk>
      probability (≤ 0; -inf forbids them, like a lexicon of the LM's words; pyctcdecode uses -10).
    frame_shift_s: seconds per output frame, for times in seconds. timestamps: compute token spans by
      forced alignment of each returned hypothesis (one small Viterbi pass each).
    num_threads: torch CPU threads during the search (restored after); None leaves torch's setting.
      The search runs many small operations per frame, where OpenMP's fork/join costs more than it saves
      (badly so on a machine busy with training), hence 1 by default.
    """

    def __init__(self, beam_size: int = 16, blank: int = 0, *, nbest: int = 1,
                 token_prune_topk: int | None = None, token_prune_threshold: float | None = None,
                 skip_blank_threshold: float | None = None, labels: Sequence[str] | None = None,
                 word_delimiter: int | None = None, lm: NGramLM | str | Path | None = None,
                 lm_weight: float = 0.5, word_bonus: float = 0.0, lm_unit: str | None = None,
                 lexicon: Iterable[str] | None = None, hotwords: Iterable[str] | None = None,
                 hotword_bonus: float = 5.0, unk_score: float = 0.0, frame_shift_s: float | None = None,
                 timestamps: bool = True, num_threads: int | None = 1):
        if not 1 <= nbest <= beam_size:
            raise ValueError(f"need 1 <= nbest <= beam_size, got nbest={nbest} and beam_size={beam_size}")
        if isinstance(lm, (str, Path)):
            lm = read_arpa(lm)
        self.beam_size, self.blank, self.nbest = beam_size, blank, nbest
        self.prune = {"token_prune_topk": token_prune_topk, "token_prune_threshold": token_prune_threshold,
                      "skip_blank_threshold": skip_blank_threshold}
        self.labels, self.word_delimiter = labels, word_delimiter
        self.frame_shift_s, self.timestamps, self.num_threads = frame_shift_s, timestamps, num_threads
        self.fusion = None
        if lm is not None or lexicon is not None or hotwords is not None or word_bonus or unk_score:
            if labels is None:
                raise ValueError("an LM, a lexicon, hotwords or a word bonus need labels (the string of each id)")
            self.fusion = LMFusion(labels, blank=blank, lm=lm, lm_weight=lm_weight, word_bonus=word_bonus,
                                   word_delimiter=word_delimiter, lm_unit=lm_unit, lexicon=lexicon,
                                   hotwords=hotwords, hotword_bonus=hotword_bonus, unk_score=unk_score)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        """log_probs (B, T, V) log-softmax outputs, lengths (B,) valid frames: B lists of hypotheses."""
        if self.beam_size == 1 and self.fusion is None:  # (the search checks its own inputs)
            check_lengths(lengths, log_probs.shape[1])
            tokens = greedy_decode(log_probs, lengths, self.blank)
            am = _ctc_log_likelihood(log_probs, lengths, tokens, self.blank)
            return self._hypotheses(log_probs, lengths, [[t] for t in tokens], [[a] for a in am],
                                    [[0.0] for _ in tokens])
        with _torch_threads(self.num_threads if log_probs.device.type == "cpu" else None):
            result = ctc_prefix_search(log_probs, lengths, self.beam_size, self.blank, nbest=self.nbest,
                                       fusion=self.fusion, **self.prune)
        return self._hypotheses(log_probs, lengths, result.tokens, result.am_scores, result.lm_scores)

    def _hypotheses(self, log_probs, lengths, tokens, am_scores, lm_scores) -> list[list[Hypothesis]]:
        return make_hypotheses(log_probs, lengths, tokens, am_scores, lm_scores, blank=self.blank,
                               labels=self.labels, word_delimiter=self.word_delimiter,
                               frame_shift_s=self.frame_shift_s, timestamps=self.timestamps)


def prefix_beam_search(log_probs: torch.Tensor, lengths: torch.Tensor, beam_size: int = 16, blank: int = 0,
                       **options) -> list[list[Hypothesis]]:
    """CTC prefix beam search: log_probs (B, T, V), lengths (B,) -> B lists of n-best
    :class:`Hypothesis`, best first. ``options`` are :class:`BeamSearchDecoder`'s; build a decoder
    once instead when decoding many batches with an LM, a lexicon or hotwords."""
    return BeamSearchDecoder(beam_size, blank, **options)(log_probs, lengths)


def make_hypotheses(log_probs: torch.Tensor, lengths: torch.Tensor, tokens: list[list[list[int]]],
                    am_scores: list[list[float]], lm_scores: list[list[float]], *, blank: int = 0,
                    labels: Sequence[str] | None = None, word_delimiter: int | None = None,
                    frame_shift_s: float | None = None, timestamps: bool = True) -> list[list[Hypothesis]]:
    """:class:`Hypothesis` objects for decoded ``tokens[b][rank]``: token spans by forced alignment on
    log_probs (B, T, V), words split at ``word_delimiter``, seconds from ``frame_shift_s``."""
    batch = []
    for b, (length, nbest) in enumerate(zip(lengths.tolist(), tokens)):
        hyps = []
        for rank, seq in enumerate(nbest):
            spans = (forced_align_segments(log_probs[b, :length], seq, blank, fill_blanks=False)
                     if timestamps else None)
            hyp = Hypothesis(seq, am_scores[b][rank] + lm_scores[b][rank], am_scores[b][rank],
                             lm_scores[b][rank], token_spans=spans)
            if spans is not None and frame_shift_s is not None:
                hyp.token_times = [(s.start * frame_shift_s, s.end * frame_shift_s) for s in spans]
            if word_delimiter is not None:
                hyp.words = _words(seq, spans, word_delimiter, labels, frame_shift_s)
            if labels is not None:
                hyp.text = (" ".join(w.text for w in hyp.words) if hyp.words is not None
                            else "".join(labels[t] for t in seq))
            hyps.append(hyp)
        batch.append(hyps)
    return batch


def _words(tokens: list[int], spans: list[Segment] | None, delimiter: int, labels: Sequence[str] | None,
           frame_shift_s: float | None) -> list[WordSpan]:
    words, start = [], 0
    for i in range(len(tokens) + 1):
        if i < len(tokens) and tokens[i] != delimiter:
            continue
        if i > start:  # runs of delimiters make no empty words
            word = WordSpan(tokens[start:i], "".join(labels[t] for t in tokens[start:i]) if labels else None,
                            spans[start].start if spans else None, spans[i - 1].end if spans else None)
            if spans and frame_shift_s is not None:
                word.start_s, word.end_s = word.start * frame_shift_s, word.end * frame_shift_s
            words.append(word)
        start = i + 1
    return words


@contextmanager
def _torch_threads(count: int | None):
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _ctc_log_likelihood(log_probs: torch.Tensor, lengths: torch.Tensor, tokens: list[list[int]],
                        blank: int) -> list[float]:
    """ln P(tokens[b] | log_probs[b]) summed over alignments (torch's CTC forward pass)."""
    if not tokens:
        return []
    if log_probs.shape[1] == 0:  # no frames: every transcript is empty, with probability 1
        return [0.0] * len(tokens)
    flat = torch.tensor([t for seq in tokens for t in seq], dtype=torch.long)
    target_lengths = torch.tensor([len(seq) for seq in tokens], dtype=torch.long)
    lp = log_probs.detach()
    lp = lp if lp.dtype in (torch.float32, torch.float64) else lp.float()
    loss = F.ctc_loss(lp.transpose(0, 1), flat.to(lp.device), lengths.to(lp.device), target_lengths.to(lp.device),
                      blank=blank, reduction="none", zero_infinity=False)
    return (-loss).tolist()
