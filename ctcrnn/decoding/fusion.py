"""Language-model fusion for the CTC prefix beam search: n-gram LM scores, a word-insertion bonus, a lexicon
constraint and hotword boosts, computed for all beams × candidate tokens at once.

Everything here is a function of the label prefix alone (never of an alignment), so the search keeps one
accumulated "LM score" per beam and adds the change a token brings. Two LM units:

* ``"token"``: every non-blank token is an LM word (a character LM, or one gloss per token); the
  delimiter token, if any, is scored like any other token (character LMs spell spaces as "|").
* ``"word"``: tokens spell words, separated by the word-delimiter token; a word is scored when the
  delimiter closes it or the utterance ends. Spellings are matched as strings, so tokens of several
  characters (word pieces) work too. A partial word that leaves every known spelling can only close as
  ``<unk>``: it is charged ``lm_weight ·`` an upper bound of ``ln P(<unk> | any context)`` at once and
  refunded when it closes (final scores are unchanged). Without that charge a beam could postpone every
  LM cost by never closing a misspelt word, and crowd the correct spelling out of the beam
  (pyctcdecode's ``unk_score_offset`` on partial words serves the same purpose). ``unk_score`` (≤ 0)
  is added to every unknown word on top of that (to every unknown token, for a token LM); -inf allows
  only the LM's words.

Words follow a character trie (:mod:`ctcrnn.decoding.trie`) of the lexicon, the hotwords and, for a word LM, the
LM's vocabulary: each beam holds the trie node of its partial word, and a token moves every beam to its
next node with one gather. Lexicon: a token may only lead to a node on the way to a lexicon word, and
the delimiter (or the end) may only close a lexicon word. Hotwords: the partial word earns
``bonus · matched/len(word)`` while it is on the way to a hotword (so a small beam keeps it alive),
loses it when it leaves, and keeps the full ``bonus`` when it completes one. All scores are natural-log
units.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from . import hashing
from .beam_state import BeamState, per_beam
from .lm import NGramLM
from .trie import WordTrie

__all__ = ["FusionState", "LMFusion"]


class LMFusion:
    """Scoring rules for one label set; :meth:`start` makes the per-batch state the search carries."""

    def __init__(self, labels: Sequence[str], *, blank: int = 0, lm: NGramLM | None = None,
                 lm_weight: float = 0.5, word_bonus: float = 0.0, word_delimiter: int | None = None,
                 lm_unit: str | None = None, lexicon: Iterable[str] | None = None,
                 hotwords: Iterable[str] | None = None, hotword_bonus: float = 5.0, unk_score: float = 0.0):
        self.labels, self.blank, self.lm = list(labels), blank, lm
        self.lm_weight, self.word_bonus, self.hotword_bonus = lm_weight, word_bonus, hotword_bonus
        if not unk_score <= 0:
            raise ValueError(f"unk_score is added to unknown words' scores and must be <= 0 (-inf forbids them), "
                             f"got {unk_score}")
        if unk_score and lm is None:
            raise ValueError("unk_score scores words the LM does not know: it needs an LM")
        self.unk_score = unk_score
        self.delimiter = word_delimiter
        self.unit = lm_unit or ("word" if word_delimiter is not None else "token")
        if self.unit not in ("word", "token"):
            raise ValueError(f"lm_unit must be 'word' or 'token', got {lm_unit!r}")
        self.lexicon = sorted(set(lexicon)) if lexicon is not None else None
        self.hotwords = sorted(set(hotwords)) if hotwords is not None else None
        needs_words = self.unit == "word" or self.lexicon is not None or self.hotwords is not None
        if needs_words and word_delimiter is None:
            raise ValueError("word-level LM scoring, a lexicon and hotwords need word_delimiter: the id of the "
                             "token that separates words (e.g. labels.index('|'))")
        if word_delimiter is not None and not 0 <= word_delimiter < len(self.labels):
            raise ValueError(f"word_delimiter {word_delimiter} is not a label index (there are {len(self.labels)})")
        self.track_words = needs_words
        self._tables: dict[torch.device, dict[str, torch.Tensor]] = {}

    def tables(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Token and trie-node lookup tables on ``device`` (built once per device)."""
        if device not in self._tables:
            t: dict[str, torch.Tensor] = {}
            lm = self.lm
            if lm is not None and self.unit == "token":
                t["token_lm_id"] = torch.tensor(lm.word_ids(self.labels))  # unknown labels score as <unk>
                unknown = (t["token_lm_id"] == lm.unk) & (torch.arange(len(self.labels)) != self.blank)
                t["token_unk_score"] = torch.where(unknown, self.unk_score, 0.0)
            if self.track_words:
                words = set(self.lexicon or ()) | set(self.hotwords or ())
                if lm is not None and self.unit == "word":
                    words |= set(lm.vocab) - {"<s>", "</s>", "<unk>"}
                trie = WordTrie(sorted(w for w in words if w), self.labels, skip_tokens=(self.blank, self.delimiter))
                t["child"] = trie.child.flatten()  # node * V + token -> next node
                step = torch.zeros(trie.child.shape)  # score of each (node, token) step, before hotword refunds
                # closing: the part of a word's closing score that depends on its trie node alone (the
                # bonus, the lexicon, unk_score, the refund of an early <unk> charge); 0 for the empty word.
                closing = torch.full((trie.num_nodes,), self.word_bonus if self.unit == "word" else 0.0)
                if self.lexicon is not None:
                    step += _penalty(trie.mark(self.lexicon, prefixes=True))[trie.child]
                    closing += _penalty(trie.mark(self.lexicon))
                if self.hotwords is not None:
                    potential = torch.zeros(trie.num_nodes)
                    for word in self.hotwords:  # the best share of a bonus each node is on the way to
                        for depth, node in enumerate(trie.path(word), start=1):
                            potential[node] = max(float(potential[node]), self.hotword_bonus * depth / len(word))
                    t["hot_potential"] = potential
                    t["hot_drop"] = (~trie.mark(self.hotwords)).float()  # 0 where a hotword ends
                    step += potential[trie.child]
                if lm is not None and self.unit == "word":
                    lm_word = torch.full((trie.num_nodes,), lm.unk, dtype=torch.long)
                    for word in words & set(lm.vocab):
                        lm_word[trie.path(word)[-1]] = lm.index[word]
                    t["lm_word"] = lm_word
                    closing += torch.where(lm_word == lm.unk, self.unk_score, 0.0)
                if self._charges_unknown():
                    # A partial word that leaves the trie can only close as <unk>: it is charged an upper
                    # bound of that word's score (LM part and unk_score) as it leaves, and refunded when it
                    # closes (see _closing).
                    charge = self._unknown_charge()
                    leaves = (trie.child == trie.oov) & (torch.arange(trie.num_nodes) != trie.oov).unsqueeze(1)
                    step += torch.where(leaves, charge, 0.0)
                    # Where <unk> has probability 0 the charge kills the beam, exactly: nothing to refund.
                    closing[trie.oov] -= charge if math.isfinite(charge) else 0.0
                if self.lexicon is not None or self.hotwords is not None or self._charges_unknown():
                    t["step"] = step.flatten()
                closing[0] = 0.0
                t["closing"] = closing
            self._tables[device] = {name: value.to(device) for name, value in t.items()}
        return self._tables[device]

    def max_gain(self) -> float:
        """An upper bound of what appending one token can add to a beam's fusion score (inf if none is
        known), so that the search can leave out tokens that cannot win. Token unit: the LM term and the
        bonus, plus at most one hotword share; word unit: 0 (an empty word closes for free), a hotword
        share, or a closing word's bonus and LM term. Lexicon terms and ``unk_score`` are never positive."""
        if self.lm_weight < 0 or self.hotword_bonus < 0:
            return math.inf
        lm = self.lm_weight * self.lm.max_log_prob() if self.lm is not None else 0.0
        hot = self.hotword_bonus if self.hotwords is not None else 0.0
        # A step that leaves the trie adds the early <unk> charge (above 0 only with positive back-offs);
        # the closing then refunds it and adds at most that much back: at most the bonus in all.
        charge = self._unknown_charge() if self._charges_unknown() else 0.0
        closing = self.word_bonus + (max(lm, 0.0) if self._charges_unknown() else lm)
        bound = lm + self.word_bonus + hot if self.unit == "token" else max(0.0, hot, charge, closing)
        # The scores are float32 sums of a few terms (an unknown word's charge and refund too): round the
        # real-number bound up past their rounding (an infinite charge is never refunded).
        charge = abs(charge) if math.isfinite(charge) else 0.0
        return bound + 1e-5 * (abs(bound) + abs(lm) + abs(self.word_bonus) + hot + charge + 1.0)

    def _unknown_charge(self) -> float:
        """What a partial word is charged as it leaves the trie: an upper bound of its <unk> score."""
        lm = self.lm_weight * self.lm.max_log_prob(self.lm.unk) if self.lm_weight > 0 else 0.0
        return lm + self.unk_score

    def _charges_unknown(self) -> bool:
        """Whether partial words that leave the trie are charged their <unk> score early (word-unit LM):
        without it a beam can postpone every LM cost by never closing a misspelt word, and crowd the
        correct spellings out of the beam."""
        return self.lm is not None and self.unit == "word" and (self.lm_weight > 0 or self.unk_score < 0)

    def start(self, batch: int, beams: int, device: torch.device) -> FusionState:
        return FusionState(self, batch, beams, device)


def _penalty(allowed: torch.Tensor) -> torch.Tensor:
    """0 where allowed, -inf elsewhere: added to scores, one gather instead of a gather and a select."""
    return torch.zeros(allowed.shape).masked_fill(~allowed, -math.inf)


@dataclass(init=False, eq=False, repr=False)
class FusionState(BeamState):
    """Per-beam fusion state for one batch: the :func:`per_beam` tensors (B, K, ...) below, which the
    search reorders after every frame and cuts when utterances end (None where the fusion has no use for
    them), and tables and the token-LM cache (:class:`_ScoreCache`) shared by the whole batch."""

    lm_rows: torch.Tensor | None = per_beam()      # (B, K, order − 1) LM state: see NGramLM.start_state
    lm_backoffs: torch.Tensor | None = per_beam()  # (B, K, order)
    node: torch.Tensor | None = per_beam()         # (B, K) trie node of the partial word (0 when empty)
    closing: torch.Tensor | None = per_beam()      # (B, K) score of closing the partial word now
    hot: torch.Tensor | None = per_beam()          # (B, K) hotword potential of the partial word
    row: torch.Tensor | None = per_beam()          # (B, K) token-LM cache row of the beam's LM state

    def __init__(self, fusion: LMFusion, batch: int, beams: int, device: torch.device):
        self.f, self.t = fusion, fusion.tables(device)
        self.shape, self.device = (batch, beams), device
        lm = fusion.lm
        if lm is not None:
            self.lm_rows, self.lm_backoffs = lm.start_state(self.shape, device)
        if fusion.track_words:
            self.node = torch.zeros(self.shape, dtype=torch.long, device=device)
            self.closing = torch.zeros(self.shape, device=device)  # every partial word is empty
        if fusion.hotwords is not None:
            self.hot = torch.zeros(self.shape, device=device)
        if lm is not None and fusion.unit == "token":
            self.cache = _ScoreCache(len(fusion.labels), device)
            self.row = self._rows_for(self.lm_rows.flatten(0, 1), self.lm_backoffs.flatten(0, 1)).view(self.shape)

    # ------------------------------------------------------------------ scores
    def extension_scores(self, tokens: torch.Tensor | None) -> torch.Tensor:
        """(B, K, C) score change of appending ``tokens`` (B, C) to each beam; -inf where not allowed.
        ``tokens`` None: every label in id order (C = V), which needs no per-candidate gathers."""
        f, t = self.f, self.t
        num_labels = len(f.labels)
        token_lm = f.lm is not None and f.unit == "token"
        if token_lm:  # one gather from the (LM state, token) cache
            delta = _table_lookup(self.cache.scores, self.row, tokens)
        elif "step" in t:  # one gather from the (trie node, token) table
            delta = _table_lookup(t["step"].view(-1, num_labels), self.node, tokens)
            if f.unit == "token":
                delta += f.word_bonus
        else:  # the per-token bonus of a token unit without an LM
            bonus = f.word_bonus if f.unit == "token" else 0.0
            width = num_labels if tokens is None else tokens.shape[-1]
            delta = torch.full((*self.shape, width), bonus, device=self.device)
        if not f.track_words:
            return delta
        if token_lm and "step" in t:
            delta += _table_lookup(t["step"].view(-1, num_labels), self.node, tokens)
        if f.hotwords is not None:
            delta -= self.hot.unsqueeze(-1)
        # The delimiter does not grow the word, it closes it: its score is the closing score each beam
        # keeps up to date (see advance), plus the token LM's score of the delimiter itself.
        closing = self.closing
        if token_lm:
            closing = closing + hashing.take(self.cache.scores.view(-1), self.row * num_labels + f.delimiter)
        elif f.unit == "token":
            closing = closing + f.word_bonus
        if tokens is None:
            delta[..., f.delimiter] = closing  # delta is a fresh tensor
            return delta
        is_delimiter = tokens == f.delimiter
        if bool(is_delimiter.any()):
            delta = torch.where(is_delimiter.unsqueeze(1), closing.unsqueeze(-1), delta)
        return delta

    def final_scores(self) -> torch.Tensor:
        """(B, K) score change of ending every beam now: the last word, then ``</s>``."""
        f = self.f
        score = torch.zeros(self.shape, device=self.device)
        if f.track_words:
            score = score + self.closing
            if f.lm is not None and f.unit == "word":
                self._close_words(self.node != 0, self.node)
        if f.lm is not None:
            eos = torch.full(self.shape, f.lm.eos, dtype=torch.long, device=self.device)
            score = score + f.lm_weight * f.lm.score_after(self.lm_rows, self.lm_backoffs, eos)
        return score

    # ------------------------------------------------------------------ state
    def advance(self, source: torch.Tensor, tokens: torch.Tensor, extended: torch.Tensor) -> None:
        """Reorder to the new beams: beam k continues old beam ``source[b, k]``, extended by
        ``tokens[b, k]`` where ``extended`` (all (B, K); tokens are -1 where not extended)."""
        self.gather_(source)
        self.extend(tokens, extended)

    def extend(self, tokens: torch.Tensor, extended: torch.Tensor) -> None:
        """Append ``tokens[b, k]`` to beam k where ``extended`` (both (B, K); tokens -1 elsewhere). The
        per-beam tensors must be the beams' own, as :meth:`gather` leaves them: some are updated in place."""
        f, t = self.f, self.t
        safe = tokens.clamp(min=0)
        if f.track_words:
            node = self.node
            closes = extended & (tokens == f.delimiter)
            grows = extended & ~closes
            grown = hashing.take(t["child"], torch.add(safe, node, alpha=len(f.labels)))  # node * V + token
            if f.hotwords is not None:
                potential = hashing.take(t["hot_potential"], grown)
                self.hot = torch.where(grows, potential, torch.where(closes, 0.0, self.hot))
            if f.lm is not None and f.unit == "word":
                self._close_words(closes & (node != 0), node)  # a delimiter after a delimiter closes no word
            self.node = torch.where(grows, grown, torch.where(closes, 0, node))
            # A beam's closing score changes only when its partial word does: recompute it for the beams
            # that grew one (a few per frame), 0 for those that closed one, the old one for the rest.
            self.closing.masked_fill_(closes, 0.0)
            beams = grows.view(-1).nonzero().squeeze(1)
            if beams.numel():
                self.closing.view(-1).index_copy_(0, beams, self._closing(beams))
        if f.lm is not None and f.unit == "token":
            beams = extended.view(-1).nonzero().squeeze(1)
            if beams.numel():
                words = hashing.take(t["token_lm_id"], safe.view(-1).index_select(0, beams))
                self.row.view(-1).index_copy_(0, beams, self._rows_for(*self._push_words(beams, words)))

    # ------------------------------------------------------------------ helpers
    def _push_words(self, beams: torch.Tensor, words: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Append LM ``words`` (n,) to the LM states of ``beams`` (n,) (flat indices); the LM lookups run
        for those beams only. Returns their new states."""
        rows, backoffs = self.lm_rows.flatten(0, 1), self.lm_backoffs.flatten(0, 1)
        new_rows, new_backoffs = self.f.lm.advance_state(rows.index_select(0, beams), words)
        self.lm_rows = rows.index_copy(0, beams, new_rows).view(self.lm_rows.shape)
        self.lm_backoffs = backoffs.index_copy(0, beams, new_backoffs).view(self.lm_backoffs.shape)
        return new_rows, new_backoffs

    def _close_words(self, closes: torch.Tensor, node: torch.Tensor) -> None:
        """Append the partial word of each beam where ``closes`` (B, K), at trie ``node`` (B, K), to its
        LM state."""
        beams = closes.view(-1).nonzero().squeeze(1)
        if beams.numel():
            self._push_words(beams, hashing.take(self.t["lm_word"], node.view(-1).index_select(0, beams)))

    def _closing(self, beams: torch.Tensor) -> torch.Tensor:
        """(n,) score of closing the partial word of ``beams`` (n,) (flat beam indices) now; 0 for an
        empty word (a label spelt "" grows nothing)."""
        f, t = self.f, self.t
        node = self.node.view(-1).index_select(0, beams)  # (index_select: faster than indexing on CPU)
        score = hashing.take(t["closing"], node)
        if f.lm is not None and f.unit == "word":
            rows = self.lm_rows.flatten(0, 1).index_select(0, beams)
            backoffs = self.lm_backoffs.flatten(0, 1).index_select(0, beams)
            score = score + f.lm_weight * f.lm.score_after(rows, backoffs, hashing.take(t["lm_word"], node))
        if f.hotwords is not None:
            score = score - self.hot.view(-1).index_select(0, beams) * hashing.take(t["hot_drop"], node)
        return torch.where(node == 0, 0.0, score)

    def _rows_for(self, rows: torch.Tensor, backoffs: torch.Tensor) -> torch.Tensor:
        """Cache rows (n,) for token-LM states (n, order − 1) and (n, order), computing the rows of states
        not cached yet. A state is known by the key of its n-gram rows (they determine every score)."""
        f = self.f
        base = hashing.constant(f.lm.none_id + 2)
        state_key = torch.zeros_like(rows[:, 0]) if rows.shape[-1] else rows.new_zeros(rows.shape[0])
        for m in range(rows.shape[-1]):
            state_key = hashing.extend(state_key, base, hashing.constant(rows[:, m] + 2))
        found, row = self.cache.find(state_key)
        if not bool(found.all()):
            new_keys, first = _unique_first(state_key[~found])
            scores = f.lm.score_after(rows[~found][first].unsqueeze(1), backoffs[~found][first].unsqueeze(1),
                                      self.t["token_lm_id"])
            scores = f.lm_weight * scores + f.word_bonus + self.t["token_unk_score"]
            scores[:, f.blank] = 0.0
            self.cache.add(new_keys, scores)
            found, row = self.cache.find(state_key)
        return row


class _ScoreCache:
    """The token LM's weighted scores of every token (+ bonus, unk_score; 0 for the blank) after each LM
    state met so far, one row per state, found by the state's key. Shared by a FusionState and all its
    copies: a row depends on its state alone and rows are only ever added, so any copy may read and add.
    Rows live in a buffer that doubles when full: concatenating at every addition copied the whole cache
    each time (hundreds of MB per batch at V = 1296), and its page faults made the search's time depend
    on the allocator (10 % more with the same operations, only the frees in another order)."""

    def __init__(self, num_labels: int, device: torch.device):
        self.scores = torch.empty(0, num_labels, device=device)  # (capacity, V); rows [:count] in use
        self.count = 0
        self._index(torch.empty(0, dtype=torch.long, device=device))

    def find(self, keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(found (n,), row (n,), valid where found) for LM-state ``keys`` (n,)."""
        found, at = hashing.lookup(self.table, keys)
        return found, self.row_of[at]

    def add(self, keys: torch.Tensor, scores: torch.Tensor) -> None:
        """Rows ``scores`` (k, V) for the new state ``keys`` (k,)."""
        end = self.count + len(keys)
        if end > self.scores.shape[0]:
            grown = self.scores.new_empty(max(end, 2 * self.scores.shape[0]), self.scores.shape[1])
            grown[:self.count] = self.scores[:self.count]
            self.scores = grown
        self.scores[self.count:end] = scores
        self.count = end
        self._index(torch.cat([self.keys, keys]))

    def _index(self, keys: torch.Tensor) -> None:
        """``keys``: the LM-state key of each row; builds the sorted table and its row numbers."""
        self.keys = keys
        self.table, order = hashing.sorted_keys(keys)
        self.row_of = hashing.align(torch.arange(len(keys), device=keys.device), order)


def _table_lookup(table: torch.Tensor, rows: torch.Tensor, tokens: torch.Tensor | None) -> torch.Tensor:
    """(B, K, C) entries ``table[rows[b, k], tokens[b, c]]`` of a (N, V) table; ``tokens`` None: whole
    rows (C = V). When the C tokens are a good share of the V columns, whole rows first and then the
    columns (faster on CPU than one gather at broadcast flat indices); otherwise flat indices, so that
    few candidates never copy long rows."""
    width = table.shape[1]
    if tokens is not None and width > 2 * tokens.shape[-1]:
        return hashing.take(table.view(-1), (rows * width).unsqueeze(-1) + tokens.unsqueeze(1))
    picked = table.index_select(0, rows.reshape(-1)).view(*rows.shape, width)
    return picked if tokens is None else picked.gather(2, tokens.unsqueeze(1).expand(-1, rows.shape[1], -1))


def _unique_first(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct ``keys`` (sorted) and the index of one occurrence of each."""
    unique, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full_like(unique, keys.numel()).scatter_reduce_(
        0, inverse, torch.arange(keys.numel(), device=keys.device), "amin")
    return unique, first
