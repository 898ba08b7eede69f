"""Builds a decoder from command-line style options: ctcrnn's own beam search, or flashlight-text /
pyctcdecode behind the same interface. Used by every command that decodes (evaluate, transcribe, tune-lm).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path

from ..paths import input_file_problem
from .decoders import BeamSearchDecoder
from .lm import NGramLM, read_arpa

DECODERS = ("ctcrnn", "flashlight", "pyctcdecode")

log = logging.getLogger(__name__)


def make_decoder(labels: list[str], beam_size: int, lm: str | NGramLM | None = None, lm_weight: float = 0.5,
                 word_bonus: float = 0.0, lexicon: str | Path | list[str] | None = None,
                 word_delimiter: str | None = None, engine: str = "ctcrnn", unk_score: float | None = None):
    """A beam-search decoder for a checkpoint's labels.

    lexicon: a file with one word per line, read by :func:`read_lexicon` (words the model cannot spell
    are left out with a warning, or refused when they are most of the file), or the words it returned.
    word_delimiter: the label that separates words (e.g. "|"), if the labels spell words. lm: an ARPA
    path (or, for ctcrnn's engine, an :class:`NGramLM` already read); a missing, truncated or malformed
    file is a ValueError naming it. engine: ctcrnn's own search, or flashlight-text / pyctcdecode behind
    the same interface (``pip install 'ctcrnn[decoders]'``); on a CPU flashlight is the faster choice for
    a word LM with a lexicon on small batches (benchmarks/README.md). unk_score (added to words the LM
    does not know): None leaves each engine's default (ctcrnn 0, pyctcdecode -10, flashlight -inf).
    Numbers are checked by :func:`check_decoder_numbers`.
    """
    if engine not in DECODERS:
        raise ValueError(f"unknown decoder {engine!r}: choose one of {', '.join(DECODERS)}")
    check_decoder_numbers(beam_size, lm_weight, word_bonus, unk_score)
    if engine == "pyctcdecode" and lexicon:
        raise ValueError("pyctcdecode has no lexicon constraint: drop --lexicon or pick another decoder")
    delimiter = delimiter_id(labels, word_delimiter)
    words = read_lexicon(lexicon, labels, skip=(0, delimiter)) if isinstance(lexicon, (str, Path)) else lexicon
    words = words if lexicon else None
    if isinstance(lm, (str, Path)) and lm:
        problem = input_file_problem(lm)
        if problem:
            raise ValueError(f"LM file {problem}")
        if engine == "ctcrnn":
            lm = read_arpa(lm)  # errors naming the file (truncated, not ARPA) come before any decoding
    options = dict(beam_size=beam_size, lm=lm, lm_weight=lm_weight, word_bonus=word_bonus,
                   word_delimiter=delimiter, timestamps=False)
    if unk_score is not None:
        options["unk_score"] = unk_score
    if engine == "ctcrnn":
        return BeamSearchDecoder(labels=labels, lexicon=words, **options)
    from .external import FlashlightDecoder, PyCTCDecoder

    try:
        if engine == "flashlight":
            return FlashlightDecoder(labels, lexicon=words, **options)
        return PyCTCDecoder(labels, **options)
    except ImportError as e:  # the engine is an optional package; the message says what to install
        raise ValueError(f"--decoder {engine}: {e}") from None
    except RuntimeError as e:  # KenLM's reader, on a file it cannot parse ("End of file in the 1-gram ...")
        if lm is None:
            raise
        raise ValueError(f"--decoder {engine} cannot read the LM {lm} ({e}): is it a complete ARPA or KenLM binary "
                         "file? A truncated copy fails this way; copy it again") from None


def delimiter_id(labels: list[str], word_delimiter: str | None) -> int | None:
    """The id of ``word_delimiter`` among ``labels`` (None for None); an error if it is not one of them."""
    if word_delimiter is None:
        return None
    if word_delimiter not in labels:
        raise ValueError(f"word delimiter {word_delimiter!r} is not a label of this model: {labels[:12]}...")
    return labels.index(word_delimiter)


def check_decoder_numbers(beam_size: int, lm_weight: float, word_bonus: float, unk_score: float | None) -> None:
    """Refuse settings that would decode quietly wrong: a beam below 1, or a NaN or infinite weight or bonus
    (every score they touch becomes NaN, and NaN compares as neither better nor worse)."""
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise ValueError(f"beam size must be a whole number >= 1 (1 keeps the single best prefix), got {beam_size!r}")
    for name, value in (("lm_weight", lm_weight), ("word_bonus", word_bonus)):
        if not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")
    if unk_score is not None and not unk_score <= 0:  # also refuses NaN
        raise ValueError(f"unk_score must be <= 0 (-inf forbids unknown words), got {unk_score}")


# A lexicon is refused, not filtered, when more than this share of its words cannot be spelled: it is then
# most likely the wrong file for the model (another alphabet, another letter case), not a list with a few
# stray entries.
MAX_UNSPELLABLE_SHARE = 0.5


def read_lexicon(path: str | Path, labels: Sequence[str], skip: Sequence[int | None] = (0,)) -> list[str]:
    """The words of a lexicon file (UTF-8, one word per line; every whitespace-separated item counts as a
    word) that the model can spell: written as a sequence of its labels, leaving out the ids in ``skip``
    (blank and word delimiter). Words it cannot spell (a character that is no label, e.g. another letter
    case) could never be decoded: up to half of the words are left out with a warning that counts them and
    names the first few with their lines; more than that, or a file with no words, is an error naming the
    file, since the lexicon is then most likely the wrong one for this model."""
    problem = input_file_problem(path)
    if problem:
        raise ValueError(f"lexicon {problem}")
    units = {label for i, label in enumerate(labels) if i not in skip and label}
    words, unspellable = [], []
    for number, encoded in enumerate(Path(path).read_bytes().removeprefix(b"\xef\xbb\xbf").splitlines(), start=1):
        try:
            line = encoded.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"lexicon {path}:{number}: not UTF-8 text (byte {encoded[e.start]:#04x} at byte "
                             f"{e.start + 1} of the line): save the lexicon as UTF-8") from None
        for word in line.split():
            (words if _spellable(word, units) else unspellable).append((number, word))
    if not words and not unspellable:
        raise ValueError(f"lexicon {path} has no words: expected one word per line")
    if unspellable:
        known = {ch for unit in units for ch in unit}
        examples = "; ".join(f"line {number} {word!r}" + (f" ({''.join(sorted(set(word) - known))!r} not in the "
                                                             "labels)" if set(word) - known else "")
                             for number, word in unspellable[:5])
        counted = f"{len(unspellable)} of {len(words) + len(unspellable)} words in lexicon {path}"
        if len(unspellable) > MAX_UNSPELLABLE_SHARE * (len(words) + len(unspellable)):
            raise ValueError(f"{counted} cannot be spelled with this model's labels, e.g. {examples}: is it the "
                             f"lexicon for this model (same alphabet and letter case as its labels "
                             f"{sorted(units)[:30]})?")
        log.warning("%s cannot be spelled with this model's labels and are left out, e.g. %s", counted, examples)
    return [word for _, word in words]


def _spellable(word: str, units: set[str]) -> bool:
    """Whether ``word`` splits into a sequence of ``units`` (labels of one or several characters)."""
    if all(ch in units for ch in word):
        return True
    longest = max(map(len, units), default=0)
    reachable = [True] + [False] * len(word)  # reachable[i]: word[:i] splits into units
    for end in range(1, len(word) + 1):
        reachable[end] = any(reachable[start] and word[start:end] in units
                             for start in range(max(0, end - longest), end))
    return reachable[-1]


def with_word_delimiter(options: dict, input_spec: dict) -> dict:
    """Decoder options with the word delimiter defaulting to the model's own (the space, for character
    models): an LM given to a character model is then a word LM, and a lexicon lists words."""
    if options.get("word_delimiter") is None and input_spec.get("word_delimiter") is not None:
        return {**options, "word_delimiter": input_spec["word_delimiter"]}
    return options


def describe_decoder(options: dict) -> str:
    text = f"beam {options['beam_size']}"
    if options.get("engine", "ctcrnn") != "ctcrnn":
        text = f"{options['engine']} {text}"
    if options.get("lm"):
        text += f", LM {Path(options['lm']).name} weight {options.get('lm_weight', 0.5)}"
    if options.get("word_bonus"):
        text += f", word bonus {options['word_bonus']}"
    if options.get("unk_score") is not None:
        text += f", unk score {options['unk_score']}"
    if options.get("lexicon"):
        text += f", lexicon {Path(options['lexicon']).name}"
    return text
