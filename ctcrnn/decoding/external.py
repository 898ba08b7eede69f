"""Other CTC beam-search decoders behind ctcrnn's interface: ``decoder(log_probs (B, T, V), lengths (B,))
-> list[list[Hypothesis]]``, so results, scores and timestamps compare like for like.

* :class:`FlashlightDecoder`: flashlight-text's C++ decoder through torchaudio's ``ctc_decoder``.
* :class:`PyCTCDecoder`: pyctcdecode (pure Python; KenLM for LMs).

Both are optional (``pip install ctcrnn[decoders]``), imported when a decoder is built. Units follow
ctcrnn: ``lm_weight`` multiplies natural-log LM probabilities (flashlight multiplies log10 ones, so it
gets lm_weight × ln 10); token spans always come from :func:`ctcrnn.alignment.forced_align_segments`, so
"start" and "end" mean the same for every decoder. Blank is index 0 unless ``blank`` says otherwise.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

from .decoders import Hypothesis, make_hypotheses
from .lm import LN10

__all__ = ["FlashlightDecoder", "PyCTCDecoder"]


def _require(module: str, package: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError as error:
        raise ImportError(f"this decoder needs {package}: pip install {package} "
                          f"(or pip install 'ctcrnn[decoders]')") from error


class FlashlightDecoder:
    """flashlight-text's lexicon-free or lexicon decoder (via torchaudio) with ctcrnn's interface.

    labels: unique, non-empty label strings by id. lm: an ARPA or KenLM binary path; without a lexicon it
    scores every token as an LM word (like ctcrnn's ``lm_unit="token"``), with one it scores words.
    lexicon: allowed words, spelled with the labels (longest label first) and closed by the
    ``word_delimiter`` token, which flashlight also uses as its "silence". ``log_add=True`` sums merged
    hypotheses (exact CTC prefix scores, like ctcrnn); flashlight's own default (False) keeps the max.
    beam_threshold: flashlight drops hypotheses this far below the best (natural log). unk_score:
    flashlight's score for lexicon words the LM does not know (its default -inf: never decoded).
    """

    def __init__(self, labels: Sequence[str], blank: int = 0, *, beam_size: int = 16, nbest: int = 1,
                 beam_size_token: int | None = None, beam_threshold: float = 50.0,
                 lm: str | Path | None = None, lm_weight: float = 0.5, word_bonus: float = 0.0,
                 word_delimiter: int | None = None, lexicon: Iterable[str] | None = None, log_add: bool = True,
                 unk_score: float = -math.inf, frame_shift_s: float | None = None, timestamps: bool = True):
        _require("flashlight.lib.text.decoder", "flashlight-text")
        from torchaudio.models.decoder import ctc_decoder

        labels = list(labels)
        if len(set(labels)) != len(labels) or any(not label or label.split() != [label] for label in labels):
            raise ValueError("flashlight needs unique, non-empty labels without whitespace")
        self.labels, self.blank, self.word_delimiter = labels, blank, word_delimiter
        self.frame_shift_s, self.timestamps, self.has_lm = frame_shift_s, timestamps, lm is not None
        if word_bonus and lexicon is None:
            raise ValueError("flashlight's lexicon-free decoder has no word bonus: use word_bonus=0 or a lexicon")
        self._lexicon_file = None
        if lexicon is not None:
            if word_delimiter is None:
                raise ValueError("a lexicon needs word_delimiter: the id of the token that ends each word")
            self._lexicon_file = tempfile.NamedTemporaryFile("w", suffix=".lexicon", encoding="utf-8")  # noqa: SIM115
            for word in sorted(set(lexicon)):
                spelling = _spell(word, [label for i, label in enumerate(labels) if i not in (blank, word_delimiter)])
                if spelling is not None:
                    self._lexicon_file.write(f"{word}\t{' '.join(spelling + [labels[word_delimiter]])}\n")
            self._lexicon_file.flush()
        self._lm_dict_file = None
        if lm is not None and lexicon is None:
            # Lexicon-free decoding scores token id n as LM word n, but torchaudio's own word list puts
            # <unk> first and shifts every word by one: give it the labels in id order instead.
            self._lm_dict_file = tempfile.NamedTemporaryFile("w", suffix=".dict", encoding="utf-8")  # noqa: SIM115
            self._lm_dict_file.write("\n".join([*labels, "<unk>"]) + "\n")
            self._lm_dict_file.flush()
        silence = labels[word_delimiter] if word_delimiter is not None else labels[blank]
        self._decoder = ctc_decoder(
            lexicon=self._lexicon_file.name if self._lexicon_file else None, tokens=labels,
            lm_dict=self._lm_dict_file.name if self._lm_dict_file else None,
            lm=str(lm) if lm is not None else None, nbest=nbest, beam_size=beam_size,
            beam_size_token=beam_size_token, beam_threshold=beam_threshold, lm_weight=lm_weight * LN10,
            word_score=word_bonus, unk_score=unk_score, log_add=log_add, blank_token=labels[blank],
            sil_token=silence, unk_word="<unk>")

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        emissions = log_probs.detach().float().cpu().contiguous()
        results = self._decoder(emissions, lengths.cpu().to(torch.int32))
        tokens = [[[int(t) for t in hyp.tokens] for hyp in nbest] for nbest in results]
        scores = [[float(hyp.score) for hyp in nbest] for nbest in results]
        hyps = make_hypotheses(log_probs, lengths, tokens, scores, [[0.0] * len(s) for s in scores],
                               blank=self.blank, labels=self.labels, word_delimiter=self.word_delimiter,
                               frame_shift_s=self.frame_shift_s, timestamps=self.timestamps)
        if self.has_lm:  # torchaudio reports only flashlight's total: its parts are unknown
            for hyp in (h for nbest in hyps for h in nbest):
                hyp.am_score = hyp.lm_score = math.nan
        return hyps


class PyCTCDecoder:
    """pyctcdecode with ctcrnn's interface. It works on text: the blank becomes "", the word delimiter
    " ", and without an LM every other label is replaced by one private-use character so that any
    label set (glosses, word pieces) decodes back to exact ids. With an LM (a KenLM/ARPA path, needs the
    ``kenlm`` module) labels must be single characters. pyctcdecode normalises spaces, so returned
    tokens never start or end with the delimiter nor repeat it.

    beam_prune_logp / token_min_logp: pyctcdecode's pruning (its defaults -10 and -5); pass -inf-like
    values (e.g. -1e9) for an unpruned search. unk_score: pyctcdecode's ``unk_score_offset``, added to
    words outside the LM's unigrams and to partial words that are no prefix of one (its default -10).
    """

    def __init__(self, labels: Sequence[str], blank: int = 0, *, beam_size: int = 16, nbest: int = 1,
                 lm: str | Path | None = None, lm_weight: float = 0.5, word_bonus: float = 0.0,
                 word_delimiter: int | None = None, hotwords: Iterable[str] | None = None,
                 hotword_bonus: float = 10.0, beam_prune_logp: float = -10.0, token_min_logp: float = -5.0,
                 unk_score: float = -10.0, frame_shift_s: float | None = None, timestamps: bool = True):
        pyctcdecode = _require("pyctcdecode", "pyctcdecode")
        labels = list(labels)
        if lm is not None and any(len(label) != 1 for i, label in enumerate(labels) if i != blank):
            raise ValueError("pyctcdecode with an LM needs single-character labels (words are spelled by them)")
        if lm is None:
            text_labels = [chr(0xE000 + i) for i in range(len(labels))]  # private-use: one char per id
        else:
            text_labels = list(labels)
        text_labels[blank] = ""
        if word_delimiter is not None:
            text_labels[word_delimiter] = " "
        self._id_of = {label: i for i, label in enumerate(text_labels) if label}
        self.labels, self.blank, self.word_delimiter = labels, blank, word_delimiter
        self.nbest, self.beam_size, self.hotwords = nbest, beam_size, list(hotwords) if hotwords else None
        self.prune = {"beam_prune_logp": beam_prune_logp, "token_min_logp": token_min_logp,
                      "hotword_weight": hotword_bonus}
        self.frame_shift_s, self.timestamps = frame_shift_s, timestamps
        self._decoder = pyctcdecode.build_ctcdecoder(text_labels, kenlm_model_path=str(lm) if lm else None,
                                                     alpha=lm_weight, beta=word_bonus, unk_score_offset=unk_score)

    def __call__(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[list[Hypothesis]]:
        emissions = log_probs.detach().float().cpu().numpy()
        tokens, am, lm = [], [], []
        for b, length in enumerate(lengths.tolist()):
            beams = self._decoder.decode_beams(emissions[b, :length], beam_width=self.beam_size,
                                               hotwords=self.hotwords, **self.prune)[:self.nbest]
            tokens.append([[self._id_of[ch] for ch in text] for text, *_ in beams])
            am.append([float(beam[3]) for beam in beams])
            lm.append([float(beam[4] - beam[3]) if math.isfinite(beam[4]) else beam[4] for beam in beams])
        return make_hypotheses(log_probs, lengths, tokens, am, lm, blank=self.blank, labels=self.labels,
                               word_delimiter=self.word_delimiter, frame_shift_s=self.frame_shift_s,
                               timestamps=self.timestamps)


def _spell(word: str, labels: Sequence[str]) -> list[str] | None:
    """``word`` as labels, longest label first at each position; None if some part has no label."""
    by_length = sorted(set(labels), key=len, reverse=True)
    spelling, i = [], 0
    while i < len(word):
        match = next((label for label in by_length if word.startswith(label, i)), None)
        if match is None:
            return None
        spelling.append(match)
        i += len(match)
    return spelling
