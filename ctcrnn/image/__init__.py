"""Image modality: text lines read as sequences of pixel columns (width is time), CNN frontends for them,
line datasets (one's own JSON Lines manifests, IAM in its published layout, synthetic printed lines) and a
file reader.

Importing this package registers its datasets (``image_manifest``, ``iam_lines``, ``synthetic_textlines``)
and its file reader for ``ctcrnn transcribe`` / ``align`` (modality ``"image"``); the core never imports it.
"""
from pathlib import Path

import torch

from ..registry import register_dataset, register_reader
from . import datasets, iam, synthetic
from .augment import LineAugmentConfig, augment_line
from .datasets import CharVocabulary, Line, LineImageDataset
from .frontends import LineCNN
from .io import ImageError, LineConfig, line_size, read_grey, read_line
from .synthetic import ALPHABET, FONT_SPLITS

image_manifest = register_dataset(datasets.image_manifest)
iam_lines = register_dataset(iam.iam_lines)
synthetic_textlines = register_dataset(synthetic.synthetic_textlines)


@register_reader("image")
def read_line_for_spec(path: str | Path, input_spec: dict) -> torch.Tensor:
    """One line image file as a checkpoint's model input (W, 1, H), read exactly as its evaluation data."""
    return read_line(path, LineConfig.from_dict(dict(input_spec["line"])))


__all__ = [
    "ALPHABET",
    "FONT_SPLITS",
    "CharVocabulary",
    "ImageError",
    "Line",
    "LineAugmentConfig",
    "LineCNN",
    "LineConfig",
    "LineImageDataset",
    "augment_line",
    "iam_lines",
    "image_manifest",
    "line_size",
    "read_grey",
    "read_line",
    "read_line_for_spec",
    "synthetic_textlines",
]
