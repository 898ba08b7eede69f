"""Character vocabularies for transcripts: built from the training text or given by the user.

Labels are ``["<blank>", c1, c2, ...]`` (blank = 0), one per character, the space included: it is the word
delimiter, so greedy output spells words directly and WER needs no extra rule.
"""
from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from ..data import BLANK_LABEL

log = logging.getLogger(__name__)

SPACE_NAMES = ("<space>", "|")  # how a token file may spell the space (a bare space line is easy to lose)


class CharTokenizer:
    """Characters <-> label ids; ``labels[0]`` is the blank."""

    def __init__(self, labels: list[str]):
        if not labels or labels[0] != BLANK_LABEL:
            raise ValueError(f"labels must start with {BLANK_LABEL!r}, got {labels[:5]}")
        chars = labels[1:]
        bad = [c for c in chars if len(c) != 1]
        repeated = sorted({c for c in chars if chars.count(c) > 1})
        if bad or repeated:
            raise ValueError(f"character labels must be distinct single characters; "
                             f"{f'not single characters: {bad}' if bad else f'repeated: {repeated}'}")
        self.labels = list(labels)
        self.index = {c: i for i, c in enumerate(self.labels) if i}

    @classmethod
    def from_texts(cls, texts: Iterable[str], source: str = "the training data") -> CharTokenizer:
        """Every character seen in ``texts``, sorted (so the same text gives the same ids); ``source`` (a
        manifest path, a dataset/split name) is named if there are none."""
        chars = sorted(set().union(*(set(t) for t in texts)))
        if not chars:
            raise ValueError(f"cannot build a character vocabulary from {source}: every training transcript is "
                             f"empty: fill in the transcripts ('text'), or give the characters in data.args.tokens")
        return cls([BLANK_LABEL, *chars])

    @classmethod
    def from_tokens(cls, tokens: list[str] | str) -> CharTokenizer:
        """A user-given vocabulary: a list of characters, or a file with one per line (``<space>`` or
        ``|`` for the space); the blank is added in front."""
        if isinstance(tokens, str):
            path = Path(tokens)
            if not path.is_file():
                raise ValueError(f"token list {path} does not exist (one character per line, <space> for space)")
            tokens = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        tokens = [" " if t in SPACE_NAMES else t for t in tokens if t != BLANK_LABEL]
        return cls([BLANK_LABEL, *tokens])

    def encode(self, text: str, unknown: Counter | None = None) -> list[int]:
        """Label ids of ``text``; characters outside the vocabulary are left out and counted in ``unknown``."""
        ids = []
        for c in text:
            i = self.index.get(c)
            if i is None:
                if unknown is not None:
                    unknown[c] += 1
            else:
                ids.append(i)
        return ids


def report_unknown(where: str, unknown: Counter, ids: list[str]) -> None:
    """Say which characters the vocabulary cannot write, how often, and in which utterances (``ids``: those
    holding any; the first few are named): never drop them silently."""
    if unknown:
        listing = ", ".join(f"{c!r}x{n}" for c, n in unknown.most_common(12))
        named = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        log.warning("%s: %d characters in %d transcripts are not in the vocabulary (%s), in %s: they are left out "
                    "of the training targets and count as errors when scoring against the reference text (fix "
                    "those transcripts, or when training add the characters to data.args.tokens)",
                    where, sum(unknown.values()), len(ids), listing, named)
