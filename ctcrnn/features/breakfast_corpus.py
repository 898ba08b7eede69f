"""Breakfast (and 50Salads, GTEA) in the MS-TCN layout: ``features/``, ``groundTruth/``, ``splits/*.bundle``
and ``mapping.txt``, read into a :class:`~ctcrnn.features.datasets.FeatureDataset` for weakly supervised
training (see :mod:`ctcrnn.features.datasets` for what happens to bad data).

Imports the core's :mod:`ctcrnn.data` and :mod:`ctcrnn.features.datasets` only; must never import another
modality.
"""
from __future__ import annotations

from pathlib import Path

from ..data import BLANK_LABEL, read_label_lines
from .datasets import FeatureDataset, FeatureVideo, fitted_stride, label_ids, make_dataset

VAL_EVERY = 10                # Breakfast "val": every 10th video of the sorted training bundle (held out of "train")
BREAKFAST_FPS = 15.0          # frames per second of Breakfast's I3D features


def read_mapping(path: Path) -> list[str]:
    """``<index> <name>`` per line, indices 0..N-1 in any order -> the names in index order."""
    if not path.is_file():
        raise ValueError(f"{path} does not exist: the MS-TCN layout needs mapping.txt with '<index> <name>' lines")
    entries = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise ValueError(f"{path}:{number}: expected '<index> <name>', got {line!r}")
        index, name = int(parts[0]), parts[1]
        if index in entries or name in entries.values():
            raise ValueError(f"{path}:{number}: index {index} or name {name!r} appears twice")
        entries[index] = name
    if sorted(entries) != list(range(len(entries))) or not entries:
        raise ValueError(f"{path}: indices must be 0..N-1 without gaps, got {sorted(entries)[:10]}...")
    return [entries[i] for i in range(len(entries))]


def read_bundle(path: Path) -> list[str]:
    """Video names of a split bundle (``<video>.txt`` per line)."""
    if not path.is_file():
        available = sorted(p.name for p in path.parent.glob("*.bundle")) if path.parent.is_dir() else []
        raise ValueError(f"split bundle {path} does not exist; available: {available or 'none'}")
    names = [line.strip().removesuffix(".txt") for line in path.read_text(encoding="utf-8").splitlines()
             if line.strip()]
    if not names:
        raise ValueError(f"split bundle {path} lists no videos")
    return names


def breakfast_videos(root: Path, split: str, split_id: int) -> list[str]:
    """Video names of ``split``: "test" = test.split{k}.bundle; "train" = train.split{k}.bundle without every
    :data:`VAL_EVERY`-th video of it (sorted by name), which make "val"; "train_all" = the whole training
    bundle (the papers' training set); a path ending in .bundle (relative to root/splits) is read as is."""
    splits = root / "splits"
    if split.endswith(".bundle"):
        return read_bundle(splits / split if not Path(split).is_absolute() else Path(split))
    if split == "test":
        return read_bundle(splits / f"test.split{split_id}.bundle")
    if split not in ("train", "val", "train_all"):
        raise ValueError(f"breakfast has splits train, val, train_all, test (or a .bundle path), not {split!r}")
    names = read_bundle(splits / f"train.split{split_id}.bundle")
    if split == "train_all":
        return names
    held_out = set(sorted(names)[::VAL_EVERY])
    return [n for n in names if (n in held_out) == (split == "val")]


def breakfast(split: str, root: str = "data/breakfast", split_id: int = 1, features_dir: str = "features",
              temporal_stride: int = 1, background: list | tuple = ("SIL",), background_in_transcript: bool = True,
              fitted: dict | None = None) -> FeatureDataset:
    """Breakfast (or 50Salads, GTEA) as MS-TCN distributes it, for weakly supervised training.

    ``root/features/<video>.npy`` (D, T) features (I3D, 2048-d), ``root/groundTruth/<video>.txt`` one action
    name per frame, ``root/splits/{train,test}.split{k}.bundle`` and ``root/mapping.txt``. Labels are
    "<blank>" then the mapping's names in index order (label id = mapping index + 1). The target is the
    transcript: runs of equal frame labels collapsed at the full frame rate, SIL included as an action (as in
    NN-Viterbi's and CDFL's transcripts and MS-TCN's scores); ``background_in_transcript=False`` drops the
    ``background`` labels from the targets (frame labels keep them). ``background`` must name mapping labels.
    ``temporal_stride`` keeps every s-th frame of features and frame labels (MS-TCN's ``sample_rate``).
    Splits: see :func:`breakfast_videos` (val = every 10th video of the sorted training bundle).
    """
    name, root = f"breakfast/{split}", Path(root)
    if not root.is_dir():
        raise ValueError(f"breakfast root {root} does not exist: set data.args.root to the folder holding "
                         f"features/, groundTruth/, splits/ and mapping.txt (the MS-TCN data release)")
    mapping_path = root / "mapping.txt"
    actions = read_mapping(mapping_path)
    labels = [BLANK_LABEL, *actions]
    if fitted is not None and list(fitted["labels"]) != labels:
        raise ValueError(f"{mapping_path} gives labels {labels[:6]}... but the model was trained with "
                         f"{list(fitted['labels'])[:6]}...: use the mapping.txt it was trained with")
    unknown = [b for b in background if b not in actions]
    if unknown:
        raise ValueError(f"breakfast: background {unknown} not in {mapping_path}; its labels: {actions[:8]}...")
    index = {action: i + 1 for i, action in enumerate(actions)}
    dropped = set() if background_in_transcript else {index[b] for b in background}
    stride = fitted_stride(name, temporal_stride, fitted)
    videos = []
    for video in breakfast_videos(root, split, split_id):
        gt_path = root / "groundTruth" / f"{video}.txt"
        frames = label_ids(read_label_lines(gt_path), index, gt_path, mapping_path)
        videos.append(FeatureVideo(video, str(root / features_dir / f"{video}.npy"), None, frames))
    return make_dataset(name, videos, labels, "DT", stride, fitted, dropped, fps=BREAKFAST_FPS / stride,
                        background=list(background))
