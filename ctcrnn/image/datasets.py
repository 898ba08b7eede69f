"""Text-line datasets: :class:`LineImageDataset`, the builder tail every line corpus ends in
(:func:`build_line_dataset`), and one's own lines as a JSON Lines manifest (:func:`image_manifest`).
IAM lives in :mod:`ctcrnn.image.iam`, the generated lines in :mod:`ctcrnn.image.synthetic`.

Every split is a :class:`LineImageDataset`: lines read (or rendered), normalised to ink 1 / paper 0 at a
fixed height and (training split only) augmented in ``__getitem__``, i.e. in the DataLoader workers. An
unreadable image becomes a ``{"id", "error"}`` item: the batch drops it and the trainer counts and logs it.
So does a training line narrower than its transcript needs at the model's width stride (``stride``): the
message names the file and the width it would need. Validation and test lines are never dropped for that
(the model is charged for what it cannot write). A split built without ``fitted`` *is* a training split: it
fits the vocabulary and is augmented; with ``fitted`` (validation, test, a checkpoint's new data) the model's
vocabulary and line settings are used and nothing is augmented.

Targets are characters (the space is the word delimiter), scored as WER/CER against the raw ``text``.
Must never import the core training code or another modality.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import BLANK_LABEL, manifest_for_split, read_manifest
from ..nn.ctc import min_ctc_frames
from ..randomness import item_generator
from .augment import LineAugmentConfig, augment_line
from .io import ImageError, LineConfig, as_steps, line_size, line_spec, prepare_line, read_grey, scaled_width

log = logging.getLogger(__name__)


@dataclass
class Line:
    id: str
    text: str
    path: str = ""               # the image file; empty for generated lines
    width: int | None = None     # upright width and height in pixels, from the header (None: unknown yet)
    height: int | None = None
    error: str | None = None     # known unreadable before loading: the item is skipped
    source: str = ""             # what else to show about the line (a font name for generated lines)


class CharVocabulary:
    """Characters <-> label ids; ``labels[0]`` is the blank, the space is a label (the word delimiter)."""

    def __init__(self, labels: list[str]):
        chars = labels[1:]
        if not labels or labels[0] != BLANK_LABEL:
            raise ValueError(f"labels must start with {BLANK_LABEL!r}, got {labels[:5]}")
        bad = [c for c in chars if len(c) != 1]
        repeated = sorted(c for c, n in Counter(chars).items() if n > 1)
        if bad or repeated:
            raise ValueError(f"character labels must be distinct single characters; "
                             f"{f'not single characters: {bad[:5]}' if bad else f'repeated: {repeated[:5]}'}")
        self.labels = list(labels)
        self.index = {c: i for i, c in enumerate(self.labels) if i}

    @classmethod
    def fit(cls, texts, source: str) -> CharVocabulary:
        """Every character of the training ``texts``, sorted (the same text gives the same ids)."""
        chars = sorted(set().union(*(set(t) for t in texts)))
        if not chars:
            raise ValueError(f"cannot build a character vocabulary from {source}: every transcript is empty")
        return cls([BLANK_LABEL, *chars])

    @classmethod
    def from_tokens(cls, tokens: list[str] | str) -> CharVocabulary:
        """A list of characters, or a file with one per line (``<space>`` for the space)."""
        if isinstance(tokens, str):
            path = Path(tokens)
            if not path.is_file():
                raise ValueError(f"token list {path} does not exist (one character per line, <space> for space)")
            tokens = [line.rstrip("\n") for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        return cls([BLANK_LABEL, *(" " if t == "<space>" else t for t in tokens if t != BLANK_LABEL)])

    def encode(self, text: str, unknown: Counter) -> list[int]:
        """Label ids of ``text``; characters outside the vocabulary are left out and counted in ``unknown``."""
        ids = []
        for c in text:
            if c in self.index:
                ids.append(self.index[c])
            else:
                unknown[c] += 1
        return ids


def read_line_file(line: Line) -> np.ndarray:
    """Grey levels (h, w) in [0, 1] of a file-based line; ImageError if it cannot be read."""
    return read_grey(line.path)


class LineImageDataset(Dataset):
    """Lines -> ``{"id", "input" (W, 1, H) float in [0, 1], ink 1, "target", "text"}`` (see :mod:`ctcrnn.data`).

    ``load(line) -> (h, w)`` grey levels in [0, 1] (1 = white): :func:`read_line_file`, or a renderer for
    generated lines (picklable, for DataLoader workers). ``training``: a training split, augmented with
    ``augment`` (if given and active) and dropping lines narrower than their transcript needs at the model's
    width ``stride`` (> 0: ``min_ctc_frames(target) * stride`` pixels at the line height).
    """

    def __init__(self, name: str, lines: list[Line], vocabulary: CharVocabulary, config: LineConfig,
                 augment: LineAugmentConfig | None = None, load: Callable = read_line_file, stride: int = 0,
                 spec: dict | None = None, training: bool = False):
        if not lines:
            raise ValueError(f"{name}: no lines found")
        duplicates = [i for i, n in Counter(line.id for line in lines).items() if n > 1]
        if duplicates:
            raise ValueError(f"{name}: line ids must be unique, these repeat: {duplicates[:5]}")
        self.name, self.lines, self.config, self.load, self.stride = name, lines, config, load, stride
        self.training = training
        self.augment = augment if training and augment is not None and augment.active else None
        self.labels = vocabulary.labels
        self.input_spec = spec or line_spec(config)
        self.unknown = Counter()
        self.targets = [vocabulary.encode(line.text, self.unknown) for line in lines]
        if self.unknown:
            holders = [line.id for line in lines if any(c not in vocabulary.index for c in line.text)]
            listing = ", ".join(f"{c!r}x{n}" for c, n in self.unknown.most_common(12))
            log.warning("%s: %d characters in %d transcripts are not in the vocabulary (%s), e.g. in %s: they are "
                        "left out of the targets and count as errors when scoring", name, sum(self.unknown.values()),
                        len(holders), listing, ", ".join(holders[:5]))
        self._lengths = None
        self.seed, self.epoch = 0, 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Augmentation of line i in this epoch draws from a generator seeded by (seed, epoch, i): the same in
        any DataLoader worker and in any order, so a resumed run augments exactly as an unbroken one."""
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def lengths(self) -> list[int]:
        """Input steps (pixel columns at the line height) per line from the image headers, without decoding;
        with augmentation, the widest a line can become (so ``data.max_frames`` stays a true bound). A line
        whose header cannot be read counts 1 (it is skipped when loaded)."""
        if self._lengths is None:
            height = self.config.height
            lengths = []
            for line in self.lines:
                if line.width is None and not line.error and line.path:
                    try:
                        line.width, line.height = line_size(line.path)
                    except ImageError as e:
                        line.error = str(e)
                if line.error or not line.width:
                    lengths.append(1)
                    continue
                width = scaled_width(line.width, line.height, height)
                lengths.append(self.augment.max_width(width, height) if self.augment else width)
            self._lengths = lengths
        return self._lengths

    def image(self, index: int, augmented: bool = True) -> torch.Tensor:
        """Line ``index`` as the model sees it: (H, W) ink in [0, 1]; ImageError if it cannot be read."""
        line = self.lines[index]
        if line.error:
            raise ImageError(line.error)
        image = prepare_line(self.load(line), self.config)
        if augmented and self.augment is not None:
            image = augment_line(image, self.augment, item_generator(self.seed, self.epoch, index))
        return image

    def __getitem__(self, index: int) -> dict:
        line = self.lines[index]
        try:
            image = self.image(index)
        except ImageError as e:
            return {"id": line.id, "error": str(e)}
        target = self.targets[index]
        if self.stride and self.training and target:
            need = min_ctc_frames(target)
            if image.shape[1] < need * self.stride:
                where = line.path or line.id
                return {"id": line.id, "error": (
                    f"line image {where} is {image.shape[1]} px wide at height {self.config.height} but its "
                    f"transcript ({len(target)} characters, {need - len(target)} repeats) needs {need} output frames "
                    f"= {need * self.stride} px at the model's width stride {self.stride}: check the transcript or "
                    f"the image (too narrow to train on)")}
        return {"id": line.id, "input": as_steps(image), "target": target, "text": line.text}

    def write_predictions(self, results: list[dict], out_dir) -> None:
        """``lines.png`` in the evaluation folder: a few lines as the model saw them, with reference and
        hypothesis (the first lines with errors, then correct ones), and a link to it in ``summary.md``."""
        from .report import plot_lines

        plot_lines(self, results, Path(out_dir))


def build_line_dataset(name: str, split: str, lines: list[Line], line: dict | None, augment: dict | None,
                       tokens, fitted: dict | None, stride: int = 0, load: Callable = read_line_file,
                       labels: list[str] | None = None, source: str = "") -> LineImageDataset:
    """Vocabulary, line settings and augmentation for one split; the shared tail of every line builder.

    Without ``fitted`` this is a training split: the vocabulary is ``labels`` (a fixed alphabet), ``tokens``
    (a list or file) or the characters of its own transcripts, and it is augmented. With ``fitted`` the model's
    vocabulary and ``input_spec["line"]`` are used and nothing is augmented. ``source`` is what an error names.
    """
    where = f"{name}/{split}"
    if stride < 0:
        raise ValueError(f"{where}: stride must be >= 0 (0: no width check), got {stride}")
    if fitted is not None:
        spec = dict(fitted["input_spec"])
        if spec.get("modality") != "image":
            raise ValueError(f"{where}: the model reads {spec.get('modality')!r} input, not text-line images")
        config = LineConfig.from_dict(dict(spec.get("line", {})))
        if line and dataclasses.asdict(LineConfig.from_dict(line)) != spec.get("line"):
            log.warning("%s: data.args.line differs from the model's; the model's (its input_spec) is used", where)
        return LineImageDataset(where, lines, CharVocabulary(list(fitted["labels"])), config, load=load,
                                stride=stride, spec=spec)
    config = LineConfig.from_dict(line or {})
    if labels:
        vocabulary = CharVocabulary(labels)
    elif tokens:
        vocabulary = CharVocabulary.from_tokens(tokens)
    else:
        vocabulary = CharVocabulary.fit((x.text for x in lines), source or where)
    return LineImageDataset(where, lines, vocabulary, config, LineAugmentConfig.from_dict(augment or {}, "data.args.augment"), load, stride,
                            training=True)


# ---------------------------------------------------------------------------------------------------------
# JSON Lines manifests

MANIFEST_EXAMPLE = '{"path": "lines/a.png", "text": "A MOVE to stop"}'


def read_image_manifest(path: str | Path) -> list[Line]:
    """``{"path": "lines/a.png", "text": "..."}`` per line, optional ``"id"``; paths relative to the manifest,
    checked by :func:`ctcrnn.data.read_manifest` (errors name the file and line). Image headers are read here
    (sizes for batching); an unreadable image is kept, skipped when loaded and listed in skipped.tsv."""
    lines, bad = [], 0
    for entry in read_manifest(path, MANIFEST_EXAMPLE, required=("text",), media="the line image"):
        line = Line(entry.id, entry.fields["text"], entry.path)
        try:
            line.width, line.height = line_size(line.path)
        except ImageError as e:
            line.error, bad = str(e), bad + 1
        lines.append(line)
    if bad:
        log.warning("%s: %d of %d line images cannot be read; they will be skipped and listed in skipped.tsv",
                    path, bad, len(lines))
    return lines


def image_manifest(split: str, train: str = "", val: str = "", test: str = "", line: dict | None = None,
                   augment: dict | None = None, tokens: list | str | None = None, stride: int = 4,
                   fitted: dict | None = None) -> LineImageDataset:
    """One's own text lines: a JSON Lines manifest per split (``train``/``val``/``test`` paths); ``split`` may
    also be a manifest path itself (to evaluate a checkpoint on any manifest). ``line``:
    :class:`~ctcrnn.image.io.LineConfig` fields (height, polarity); ``augment``:
    :class:`~ctcrnn.image.augment.LineAugmentConfig` fields (training only); ``tokens``: a character list or
    file instead of the characters of the training transcripts; ``stride``: the model's width stride in
    pixels (4 for ``crnn``/``crnn_small``, 8 for ``puigcerver2017``), for dropping training lines too narrow
    for their transcript with a message naming the width they need (0: leave it to the model's CTC check)."""
    path = manifest_for_split("image_manifest", split, {"train": train, "val": val, "test": test})
    return build_line_dataset("image_manifest", split, read_image_manifest(path), line, augment, tokens, fitted,
                              stride, source=f"manifest {path}")
