"""Builds a decoder from command-line style options: ctcrnn's own beam search, or flashlight-text /
pyctcdecode behind the same interface. Used by every command that decodes (evaluate, transcribe, tune-lm).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from pathlib import Path

from .decoders import BeamSearchDecoder

DECODERS = ("ctcrnn", "flashlight", "pyctcdecode")


def make_decoder(labels: list[str], beam_size: int, lm: str | None = None, lm_weight: float = 0.5,
                 word_bonus: float = 0.0, lexicon: str | None = None, word_delimiter: str | None = None,
                 engine: str = "ctcrnn", unk_score: float | None = None):
    """A beam-search decoder for a checkpoint's labels; ``lexicon`` is a file with one word per line and
    ``word_delimiter`` the label that separates words (e.g. "|"), if the labels spell words. ``engine``:
    ctcrnn's own search, or flashlight-text / pyctcdecode behind the same interface (``pip install
    'ctcrnn[decoders]'``); on a CPU flashlight is the faster choice for a word LM with a lexicon on
    small batches (benchmarks/README.md). ``unk_score`` (added to words the LM does not know): None
    leaves each engine's default (ctcrnn 0, pyctcdecode -10, flashlight -inf)."""
    if engine not in DECODERS:
        raise ValueError(f"unknown decoder {engine!r}: choose one of {', '.join(DECODERS)}")
    words = None
    if lexicon:
        words = [w for w in Path(lexicon).read_text().split() if w]
        if not words:
            raise ValueError(f"lexicon {lexicon} has no words (expected one word per line)")
    delimiter = None
    if word_delimiter is not None:
        if word_delimiter not in labels:
            raise ValueError(f"word delimiter {word_delimiter!r} is not a label of this model: {labels[:12]}...")
        delimiter = labels.index(word_delimiter)
    options = dict(beam_size=beam_size, lm=lm, lm_weight=lm_weight, word_bonus=word_bonus,
                   word_delimiter=delimiter, timestamps=False)
    if unk_score is not None:
        options["unk_score"] = unk_score
    if engine == "flashlight":
        from .external import FlashlightDecoder
        return FlashlightDecoder(labels, lexicon=words, **options)
    if engine == "pyctcdecode":
        if words is not None:
            raise ValueError("pyctcdecode has no lexicon constraint: drop --lexicon or pick another decoder")
        from .external import PyCTCDecoder
        return PyCTCDecoder(labels, **options)
    return BeamSearchDecoder(labels=labels, lexicon=words, **options)


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
