"""Video modality: reading videos, augmentation, per-frame CNN frontends, video datasets and their registrations.

Importing this package registers its datasets (``synthetic_actions``, ``video_manifest``, ``grid``,
``phoenix2014``) and its file reader (for ``ctcrnn transcribe`` / ``align``); the core never imports it.
"""
from pathlib import Path

import torch

from ..registry import register_dataset, register_reader
from . import datasets, deployment, grid_corpus, phoenix, streaming  # noqa: F401  (trace-safe forwards; live input)
from .datasets import VideoDataset
from .frontends import FrameCNN
from .io import FrameCache, VideoConfig, VideoError, read_video, read_video_for_spec, video_info
from .phoenix import normalise_glosses
from .synthetic import ACTIONS, SyntheticActions

video_manifest = register_dataset(datasets.video_manifest)
grid = register_dataset(grid_corpus.grid)
phoenix2014 = register_dataset(phoenix.phoenix2014)


@register_dataset
def synthetic_actions(split: str, train_size: int = 2000, val_size: int = 200, test_size: int = 200,
                      frame_size: int = 32, min_frames: int = 40, max_frames: int = 150, noise: float = 0.05,
                      seed: int = 0) -> SyntheticActions:
    """SyntheticActions with a size per split (see :class:`SyntheticActions` for the rest)."""
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    if split not in sizes:
        raise ValueError(f"synthetic_actions has splits {list(sizes)}, not {split!r}")
    return SyntheticActions(split, size=sizes[split], frame_size=frame_size, min_frames=min_frames,
                            max_frames=max_frames, noise=noise, seed=seed)


@register_reader("video")
def read_frames(path: str | Path, input_spec: dict) -> torch.Tensor:
    """One video file or frame folder as a checkpoint's model input (T, C, H, W), read as in training."""
    return read_video_for_spec(path, input_spec)


__all__ = [
    "ACTIONS",
    "FrameCNN",
    "FrameCache",
    "SyntheticActions",
    "VideoConfig",
    "VideoDataset",
    "VideoError",
    "grid",
    "normalise_glosses",
    "phoenix2014",
    "read_frames",
    "read_video",
    "read_video_for_spec",
    "synthetic_actions",
    "video_info",
    "video_manifest",
]
