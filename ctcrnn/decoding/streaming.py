"""Streaming CTC decoding: a recogniser feeds one stream's log-probs chunk by chunk (any number of frames,
0 included) and reads the best transcript so far after each chunk, then the final one.

With a :class:`~ctcrnn.decoding.decoders.BeamSearchDecoder` the prefix beam search continues across chunks
(:class:`~ctcrnn.decoding.prefix_search.SearchSession`, the offline search's own per-frame code), fusion
state included, so :meth:`StreamingDecoder.finish` gives the offline decoder's result on the whole stream
whatever the chunks (scores up to float rounding). Without one, or at beam 1 without fusion (where the
offline decoder is best-path decoding), it decodes the best path, exactly :func:`greedy_decode`.

Bounded memory: after each chunk the search's back-pointers are resolved into each beam's label sequence
and dropped. A sequence is a chain of :class:`_Emission` links shared by the beams that continue it, so
what the decoder keeps grows with beam_size × transcript length, never with frames. A run of frames
skipped by ``skip_blank_threshold`` at the end of a chunk is kept as one number until the run ends
(:func:`ctcrnn.decoding.frames.compact_chunk`).

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from .decoders import BeamSearchDecoder
from .frames import compact_chunk
from .prefix_search import SearchSession, search_dtype, trace_back

__all__ = ["StreamHypothesis", "StreamingDecoder"]


@dataclass
class StreamHypothesis:
    tokens: list[int]       # label ids, blanks and repeats removed
    score: float            # am_score + lm_score: what the search ranks by
    am_score: float         # beam search: natural-log P(tokens | frames so far), summed over all CTC
                            # alignments; greedy: the best path's log-prob (the sum over alignments of a
                            # transcript not known in advance needs every frame kept)
    lm_score: float         # fusion score (weighted LM, bonuses); 0 without fusion; end-of-stream terms
                            # (last word, </s>) only in finish()'s result
    starts: list[int]       # per token: the stream frame where it was emitted: the first frame of its
                            # spike on the search's path to this hypothesis (beam search: the spike that
                            # brought the prefix most of its mass, see prefix_search._Stays.redated; on
                            # peaky outputs it is the offline forced alignment's start for ~98 % of tokens)
    ends: list[int] | None  # greedy: per token, one past the last frame of its run; None for beam search
    final: bool = False     # finish()'s result; partial results may still change (beam search revises)

    def times(self, frame_shift_s: float) -> list[float]:
        """Each token's start in seconds (frame × frame shift)."""
        return [frame * frame_shift_s for frame in self.starts]


class _Emission(NamedTuple):
    """One link of a beam's label sequence: its last token, where it was emitted, and the rest."""
    token: int
    frame: int
    previous: _Emission | None


class StreamingDecoder:
    """Incremental CTC decoding over log-prob chunks; the final result equals the offline decoder's.

    decoder: None for best-path decoding (exactly :func:`~ctcrnn.decoding.decoders.greedy_decode`), or a
      :class:`~ctcrnn.decoding.decoders.BeamSearchDecoder` (e.g. from :func:`~ctcrnn.decoding.factory.make_decoder`):
      its beam size, pruning options and LM / lexicon / hotword fusion are used as the offline decoder uses
      them (beam 1 without fusion: best path, as offline). Its ``nbest``, timestamps and threads are not
      used: the stream gives its best hypothesis, with emission frames.
    blank: the blank's id when ``decoder`` is None (a decoder brings its own).

    ``accept`` (T, V) chunks of one stream, read ``best()`` at any time (partial: beam search may revise it
    later), ``finish()`` at the end (then ``reset()`` before a new stream). The first chunk fixes V, the
    dtype and the device; later chunks are converted to them. Log-probs may be -inf (probability 0), never
    NaN or +inf.

    Greedy streams score the best path (its log-prob), where the offline decoder at beam 1 gives the sum over
    all alignments of the greedy tokens: that sum needs every frame kept, as the tokens are only known at
    the end. Tokens and their frames are exactly the offline ones.
    """

    def __init__(self, decoder: BeamSearchDecoder | None = None, blank: int = 0):
        if decoder is not None and not isinstance(decoder, BeamSearchDecoder):
            raise TypeError(f"StreamingDecoder continues ctcrnn's own beam search (BeamSearchDecoder), got "
                            f"{type(decoder).__name__}: external decoders cannot resume a search")
        self.decoder = decoder
        self.blank = decoder.blank if decoder is not None else blank
        self.greedy = decoder is None or (decoder.beam_size == 1 and decoder.fusion is None)
        self.reset()

    def reset(self) -> None:
        """Forget the stream: the next chunk starts a new one."""
        self.frames = 0                       # frames accepted so far
        self._num_classes: int | None = None  # V, fixed by the first chunk
        self._dtype: torch.dtype | None = None
        self._device: torch.device | None = None
        self._final: StreamHypothesis | None = None
        # greedy: the token ids, their run starts and (closed runs) ends; the last frame's label
        self._tokens: list[int] = []
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._last_label = self.blank
        self._best_path = 0.0
        # beam search: the session, each beam's label sequence, the held run of skipped blanks (0-dim)
        self._session: SearchSession | None = None
        self._chains: list[_Emission | None] = []
        self._held: torch.Tensor | None = None
        self._last_read: tuple[list[_Emission], list[int], list[int], dict[int, int]] = ([], [], [], {})  # _read

    # ------------------------------------------------------------------ the stream
    def accept(self, log_probs: torch.Tensor) -> None:
        """Decode the next (T, V) frames of the stream (T >= 0). Wrong input raises ValueError and leaves
        the stream as it was."""
        if self._final is not None:
            raise RuntimeError("finish() ended this stream: call reset() before accepting the frames of a new one")
        chunk = self._checked(log_probs)
        if self._num_classes is None:
            self._num_classes, self._dtype, self._device = chunk.shape[1], search_dtype(chunk), chunk.device
        chunk = chunk.detach().to(self._device, self._dtype)
        if self.greedy:
            self._accept_best_path(chunk)
        else:
            self._accept_beams(chunk)
        self.frames += chunk.shape[0]

    def best(self) -> StreamHypothesis:
        """The best hypothesis so far: the search's top-ranked beam, fusion score included, without
        end-of-stream terms; it may still change. After finish(): the final hypothesis."""
        if self._final is not None:
            return self._final
        if self.greedy:
            return self._best_path_hypothesis()
        if self._session is None:
            return StreamHypothesis([], 0.0, 0.0, 0.0, [], None)
        am, lm = self._session.running_scores()
        if self._held is not None:  # the held blank run adds its log-prob to every prefix (ranks unchanged)
            am = am + self._held
        return self._beam_hypothesis(int((am + lm)[0].argmax()), am, lm, final=False)

    def finish(self) -> StreamHypothesis:
        """The final hypothesis: end-of-stream fusion terms applied (the last word, ``</s>``), as the
        offline decoder applies them. Called again, the same result."""
        if self._final is not None:
            return self._final
        if self.greedy:
            final = self._best_path_hypothesis()
        else:
            if self._held is not None:  # the stream ends in a run of skipped blanks: search it now
                self._search(torch.empty(0, self._num_classes, dtype=self._dtype, device=self._device), last=True)
            finals = self._beam_session().finish()
            final = self._beam_hypothesis(int(finals.ranking()[0, 0]), finals.am, finals.lm, final=True)
        final.final = True
        self._final = final
        return final

    # ------------------------------------------------------------------ input
    def _checked(self, log_probs: torch.Tensor) -> torch.Tensor:
        if not torch.is_tensor(log_probs):
            raise TypeError(f"StreamingDecoder.accept takes a (T, V) tensor of log-probs, got {type(log_probs).__name__}")
        if log_probs.dim() != 2:
            raise ValueError(f"StreamingDecoder.accept takes one stream's frames (T, V), got shape "
                             f"{tuple(log_probs.shape)}: for a batch (B, T, V) use one decoder per stream and "
                             f"pass log_probs[b, :lengths[b]]")
        num_classes = log_probs.shape[1]
        if self._num_classes is not None and num_classes != self._num_classes:
            raise ValueError(f"this chunk has V={num_classes} labels per frame but the stream's first chunk had "
                             f"{self._num_classes}: every chunk must come from the same model output")
        if not 0 <= self.blank < num_classes:
            raise ValueError(f"blank id {self.blank} is not a label of log-probs with V={num_classes} labels")
        fusion = self.decoder.fusion if self.decoder is not None else None
        if fusion is not None and num_classes != len(fusion.labels):
            raise ValueError(f"log-probs have V={num_classes} labels per frame but the decoder's labels list has "
                             f"{len(fusion.labels)}: build the decoder with the model's labels")
        # NaN and +inf are errors, -inf is a probability of 0; the max of a tensor is NaN if any value is.
        if log_probs.is_floating_point() and log_probs.numel() and not float(log_probs.max()) < math.inf:
            bad = ~(log_probs < math.inf)
            frame = int(bad.any(1).nonzero()[0])
            raise ValueError(f"frame {frame} of this chunk (frame {self.frames + frame} of the stream) holds "
                             f"{log_probs[frame][bad[frame]][0].item()}: log-probs must be finite or -inf")
        return log_probs

    # ------------------------------------------------------------------ best path
    def _accept_best_path(self, chunk: torch.Tensor) -> None:
        """Runs of the frames' best labels (argmax, as greedy_decode takes it), continuing the last run."""
        if not chunk.shape[0]:
            return
        labels, counts = chunk.argmax(-1).unique_consecutive(return_counts=True)
        best_path = float(chunk.amax(-1).sum(dtype=torch.float64))
        frame = self.frames
        for label, count in zip(labels.tolist(), counts.tolist()):
            if label != self._last_label:
                if self._last_label != self.blank:
                    self._ends.append(frame)
                if label != self.blank:
                    self._tokens.append(label)
                    self._starts.append(frame)
                self._last_label = label
            frame += count
        self._best_path += best_path

    def _best_path_hypothesis(self) -> StreamHypothesis:
        ends = self._ends + ([self.frames] if self._last_label != self.blank else [])
        return StreamHypothesis(list(self._tokens), self._best_path, self._best_path, 0.0, list(self._starts), ends)

    # ------------------------------------------------------------------ beam search
    def _beam_session(self) -> SearchSession:
        if self._session is None:  # made with the first chunk (its dtype and device); float32 on the CPU for none
            d = self.decoder
            self._session = SearchSession(1, d.beam_size, d.blank, dtype=self._dtype or torch.float32,
                                          device=self._device or "cpu", fusion=d.fusion,
                                          token_prune_topk=d.prune["token_prune_topk"],
                                          token_prune_threshold=d.prune["token_prune_threshold"],
                                          redate_tokens=True)
            self._chains = [None] * d.beam_size
        return self._session

    def _accept_beams(self, chunk: torch.Tensor) -> None:
        self._beam_session()
        self._search(chunk, last=False)

    def _search(self, chunk: torch.Tensor, last: bool) -> None:
        """Search the chunk (T, V), then give each beam its label sequence from the chunk's pointers."""
        skip = self.decoder.prune["skip_blank_threshold"]
        if skip is None:
            frames, starts, held = chunk, None, None
        else:
            frames, starts, held = compact_chunk(chunk, self._held, self.blank, skip, last=last)
        pointers, _ = self._session.search(frames.unsqueeze(0), torch.tensor([frames.shape[0]]))
        self._held = held
        if all(p is None for p in pointers):  # every beam stayed where it was: no sequence changed
            return
        # the stream frame of each searched frame (a compacted run: its first frame)
        at = (np.arange(len(pointers)) if starts is None else starts.cpu().numpy()) + self.frames
        if len(pointers) == 1:  # one frame (most chunks of a live stream): its pointers are the whole story
            source, token = (p[0].tolist() for p in pointers[0])
            self._chains = [self._chains[i] if c < 0 else _Emission(c, int(at[0]), self._chains[i])
                            for i, c in zip(source, token)]
            return
        beams = self.decoder.beam_size
        origin, emitted = trace_back(pointers, np.arange(beams)[None], beams)
        emitted = emitted[:, 0]  # (T', K)
        chains = [self._chains[k] for k in origin[0].tolist()]
        for t, k in zip(*np.nonzero(emitted >= 0)):  # in frame order
            chains[k] = _Emission(int(emitted[t, k]), int(at[t]), chains[k])
        self._chains = chains

    def _beam_hypothesis(self, beam: int, am: torch.Tensor, lm: torch.Tensor, final: bool) -> StreamHypothesis:
        tokens, starts = self._read(self._chains[beam])
        am_score, lm_score = float(am[0, beam]), float(lm[0, beam])
        return StreamHypothesis(tokens, am_score + lm_score, am_score, lm_score, starts, None, final)

    def _read(self, link: _Emission | None) -> tuple[list[int], list[int]]:
        """The tokens and frames of the sequence ending at ``link``. The last sequence read is kept (its
        links, and each link's place in it): the next best beam shares all but its last few links, so only
        those are walked, not the whole transcript on every best()."""
        links, tokens, starts, place = self._last_read
        walked = []
        while link is not None and id(link) not in place:  # (the links kept in `links` keep their ids)
            walked.append(link)
            link = link.previous
        keep = 0 if link is None else place[id(link)] + 1
        for old in links[keep:]:
            del place[id(old)]
        walked.reverse()
        place.update((id(new), i) for i, new in enumerate(walked, start=keep))
        links = links[:keep] + walked
        tokens = tokens[:keep] + [new.token for new in walked]
        starts = starts[:keep] + [new.frame for new in walked]
        self._last_read = (links, tokens, starts, place)
        return list(tokens), list(starts)
