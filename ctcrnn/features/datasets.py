"""Shared machinery for datasets of precomputed per-frame features (:class:`FeatureDataset`, header and
feature readers, :func:`make_dataset`) and one's own features as JSON Lines manifests. Breakfast in the
MS-TCN layout lives in :mod:`ctcrnn.features.breakfast_corpus`.

All are weakly supervised: the target is the transcript (the ordered action labels, runs of equal frame
labels collapsed); per-frame labels, when known, travel as ``frame_labels`` for the segmentation and
alignment scores only. Features are read from ``.npy`` files in ``__getitem__`` (lengths come from the
headers, memory-mapped, at build time), so a split of thousands of videos costs no memory until used.

What happens to bad data, by kind:

- feature file missing, not a readable ``.npy``, not 2-D numeric, or of another feature size than the
  model's: a counted skip (an ``{"id", "error"}`` item naming the file; listed in ``skipped.tsv``). One
  failed feature extraction among 1712 videos must not stop a run.
- NaN/inf features: a counted skip too, found when the video is loaded (the header alone cannot tell).
- feature and label lengths differ: both are cut to the shorter, as MS-TCN's batch generator does; the
  count is logged and the videos are listed in ``dataset.truncated``.
- a ground-truth label that is not in ``mapping.txt`` (or not in a checkpoint's vocabulary), a missing or
  empty ground-truth file, a bundle naming no videos: an error naming the file and line. These mean the
  annotation and the vocabulary disagree, and skipping would silently change what is scored.

Imports numpy, torch and the core's :mod:`ctcrnn.data` only.
"""
from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import BLANK_LABEL, check_unique_ids, collapse_runs, manifest_for_split, read_manifest

log = logging.getLogger(__name__)

MSTCN_HEADER = "### Frame level recognition: ###\n"  # first line of MS-TCN's per-video result files
UNALIGNED_LABEL = "<none>"    # written for every frame of a video the model could not align (never a mapping name)
LAYOUTS = ("DT", "TD")        # how a .npy file is laid out: (feature, time) as MS-TCN, or (time, feature)


class FeatureError(ValueError):
    """A feature file that cannot be used; the message names the file and the fix."""


@dataclass
class FeatureVideo:
    id: str
    path: str                               # the .npy file
    target: list[int] | None                # the transcript (label ids, no blank); None: collapse frame_labels
    frame_labels: np.ndarray | None = None  # (num_frames,) label ids at the full frame rate
    num_frames: int = 0                     # min(feature frames, label frames), before temporal_stride
    gt_frames: int = 0                      # frames in the ground-truth file (what MS-TCN's eval.py reads)
    error: str | None = None                # why the features cannot be read: the item is a counted skip


def label_ids(names: list[str], index: dict[str, int], where: Path | str, vocabulary: str,
              one_per_line: bool = True) -> np.ndarray:
    """Label names -> ids; a name outside the vocabulary is an error naming the file (and line, when the
    names are ``one_per_line`` of ``where``) and the vocabulary."""
    try:
        return np.fromiter((index[name] for name in names), dtype=np.int32, count=len(names))
    except KeyError as e:
        place = f"{where}:{names.index(e.args[0]) + 1}" if one_per_line else str(where)
        raise ValueError(f"{place}: label {e.args[0]!r} is not in {vocabulary} ({len(index)} labels): add it "
                         f"there or fix the annotation") from None


def read_feature_header(path: str | Path, layout: str) -> tuple[int, int]:
    """(feature size D, frames T) of a .npy file, from its header (memory-mapped: no data is read)."""
    try:
        array = np.load(path, mmap_mode="r")
    except FileNotFoundError:
        raise FeatureError(f"{path}: feature file missing: extract its features or remove the video from the "
                           f"split") from None
    except (ValueError, OSError, EOFError) as e:
        raise FeatureError(f"{path}: not a readable .npy file ({e}): extract its features again") from None
    if not isinstance(array, np.ndarray) or array.ndim != 2 or not np.issubdtype(array.dtype, np.number):
        shape = getattr(array, "shape", "an archive")
        raise FeatureError(f"{path}: expected a 2-D numeric array laid out {layout} "
                           f"({'features x frames' if layout == 'DT' else 'frames x features'}), got {shape}")
    dim, frames = array.shape if layout == "DT" else array.shape[::-1]
    if frames == 0 or dim == 0:
        raise FeatureError(f"{path}: empty feature array {array.shape}")
    return int(dim), int(frames)


def load_features(path: str | Path, layout: str, num_frames: int | None = None, stride: int = 1) -> np.ndarray:
    """Frames ``0, stride, 2 stride, ...`` below ``num_frames`` of a .npy file as (T', D) float32 (MS-TCN's
    ``features[:, ::sample_rate]``); FeatureError naming the file when it is unreadable or not finite."""
    try:
        array = np.load(path, mmap_mode="r")
    except (ValueError, OSError, EOFError) as e:
        raise FeatureError(f"{path}: not a readable .npy file ({e}): extract its features again") from None
    frames = array.T if layout == "DT" else array
    out = np.array(frames[:num_frames:stride], dtype=np.float32, order="C")   # a copy: never a view of the file
    bad = int(out.size - np.isfinite(out).sum())
    if bad:
        raise FeatureError(f"{path}: {bad} NaN/inf feature values: extract its features again or remove the video")
    return out


class FeatureDataset(Dataset):
    """Videos of precomputed features -> ``{"id", "input" (T', D), "target", "frame_labels"}`` items
    (see :mod:`ctcrnn.data`); T' = ceil(frames / temporal_stride). ``frame_labels`` is present when the
    videos have per-frame labels."""

    def __init__(self, name: str, videos: list[FeatureVideo], labels: list[str], input_spec: dict):
        if not videos:
            raise ValueError(f"{name}: no videos")
        self.name, self.videos, self.labels, self.input_spec = name, videos, list(labels), input_spec
        self.layout, self.stride = input_spec["layout"], input_spec["temporal_stride"]
        check_unique_ids(name, (v.id for v in videos), "video")
        self.by_id = {v.id: v for v in videos}
        self.lengths = [math.ceil(v.num_frames / self.stride) if v.error is None else 1 for v in videos]
        self.truncated: list[tuple[str, int, int]] = []   # (id, feature frames, label frames) cut to the shorter

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict:
        video = self.videos[index]
        if video.error is not None:
            return {"id": video.id, "error": video.error}
        try:
            features = load_features(video.path, self.layout, video.num_frames, self.stride)
        except FeatureError as e:
            return {"id": video.id, "error": str(e)}
        item = {"id": video.id, "input": torch.from_numpy(features), "target": list(video.target)}
        if video.frame_labels is not None:
            item["frame_labels"] = video.frame_labels[:: self.stride].tolist()
        return item

    def label_names(self, frames: list | None, video: FeatureVideo) -> list[str]:
        """Per-frame labels at the model's input rate -> names at the ground truth's full frame rate.

        Each label is repeated ``temporal_stride`` times (MS-TCN's ``predict`` does the same with its
        ``sample_rate``), then the sequence is cut, or padded with its last label, to the ground-truth
        file's length, so MS-TCN's eval.py, which walks every ground-truth frame, can read it. None (no
        alignment) and ids that are not actions give :data:`UNALIGNED_LABEL` on every frame, which is
        scored as wrong, as ``ctcrnn evaluate`` scores an unaligned clip."""
        total = video.gt_frames or video.num_frames
        if frames is None:
            return [UNALIGNED_LABEL] * total
        names = [self.labels[i] if isinstance(i, int) and 0 < i < len(self.labels) else UNALIGNED_LABEL
                 for i in frames for _ in range(self.stride)][:total]
        return names + names[-1:] * (total - len(names))

    def write_predictions(self, results: list[dict], out_dir: str | Path) -> None:
        """MS-TCN result files: ``out_dir/mstcn/{segmentation,alignment}/<video>`` (no suffix), each
        ``### Frame level recognition: ###`` then the space-separated action names of every frame (no
        final newline), exactly as MS-TCN's ``model.py`` ``predict`` writes them. Point their ``eval.py``
        ``recog_path`` at one of the two folders. ``segmentation``: the greedy transcript, force-aligned;
        ``alignment``: the true transcript, force-aligned (transcript given at test time)."""
        rows = [r for r in results if "segmentation_frames" in r and r["id"] in self.by_id]
        if not rows:
            log.info("%s: no frame-level results to write in the MS-TCN format", self.name)
            return
        for setting in ("segmentation", "alignment"):
            folder = Path(out_dir) / "mstcn" / setting
            for row in rows:
                path = folder / row["id"]
                path.parent.mkdir(parents=True, exist_ok=True)
                names = self.label_names(row[f"{setting}_frames"], self.by_id[row["id"]])
                path.write_text(MSTCN_HEADER + " ".join(names))
        log.info("%s: MS-TCN result files for %d videos in %s", self.name, len(rows), Path(out_dir) / "mstcn")


def attach_features(name: str, videos: list[FeatureVideo], layout: str,
                    fitted: dict | None) -> tuple[int, list[tuple[str, int, int]]]:
    """Read every video's feature header: set ``num_frames`` (features and labels cut to the shorter) and
    ``gt_frames``, or ``error``. Returns the feature size D (the checkpoint's when ``fitted``, else the most
    common one; a file of another size becomes a counted skip) and the cut videos as (id, feature frames,
    label frames). Logs how many videos were cut and skipped."""
    headers = {}
    for video in videos:
        try:
            headers[video.id] = read_feature_header(video.path, layout)
        except FeatureError as e:
            video.error = str(e)
    dim = None
    if fitted is not None and fitted.get("input_spec", {}).get("modality") == "features":
        dim = int(fitted["input_spec"]["step_shape"][0])
    elif headers:
        dim = Counter(d for d, _ in headers.values()).most_common(1)[0][0]
    truncated = []
    for video in videos:
        if video.id not in headers:
            continue
        video_dim, frames = headers[video.id]
        if video_dim != dim:
            video.error = (f"{video.path}: {video_dim} features per frame, but the model reads {dim}: extract "
                           f"them with the same network as the others")
            continue
        label_frames = len(video.frame_labels) if video.frame_labels is not None else frames
        video.gt_frames, video.num_frames = label_frames, min(frames, label_frames)
        if frames != label_frames:
            truncated.append((video.id, frames, label_frames))
            video.frame_labels = video.frame_labels[: video.num_frames]
    if dim is None:
        first = next(v.error for v in videos if v.error)
        raise ValueError(f"{name}: none of the {len(videos)} feature files can be read, e.g. {first}")
    if truncated:
        worst = max(abs(a - b) for _, a, b in truncated)
        log.warning("%s: %d of %d videos have feature and label lengths that differ (by up to %d frames); both are "
                    "cut to the shorter, as MS-TCN does: %s", name, len(truncated), len(videos), worst,
                    ", ".join(v for v, _, _ in truncated[:5]))
    skipped = [v for v in videos if v.error]
    if skipped:
        log.warning("%s: %d of %d videos have unusable features; they will be skipped and listed in skipped.tsv. "
                    "First: %s", name, len(skipped), len(videos), skipped[0].error)
    return dim, truncated


def fitted_stride(name: str, temporal_stride: int, fitted: dict | None) -> int:
    """The checkpoint's temporal stride when evaluating (a model reads data at the rate it was trained at)."""
    if temporal_stride < 1:
        raise ValueError(f"{name}: temporal_stride must be >= 1, got {temporal_stride}")
    spec = (fitted or {}).get("input_spec", {})
    if spec.get("modality") == "features" and spec.get("temporal_stride", temporal_stride) != temporal_stride:
        log.warning("%s: data.args.temporal_stride=%d differs from the model's %d; the model's is used", name,
                    temporal_stride, spec["temporal_stride"])
        return int(spec["temporal_stride"])
    return temporal_stride


def make_dataset(name: str, videos: list[FeatureVideo], labels: list[str], layout: str, stride: int,
                 fitted: dict | None, dropped: set = frozenset(), **spec) -> FeatureDataset:
    """Read the headers, then give videos without a transcript the collapsed runs of their (cut) frame
    labels, less the ``dropped`` label ids."""
    dim, truncated = attach_features(name, videos, layout, fitted)
    for video in videos:
        if video.target is None:
            video.target = [int(i) for i in collapse_runs(video.frame_labels.tolist()) if i not in dropped]
    input_spec = {"modality": "features", "step_shape": [dim], "layout": layout, "temporal_stride": stride, **spec}
    dataset = FeatureDataset(name, videos, labels, input_spec)
    dataset.truncated = truncated
    return dataset


# ---------------------------------------------------------------------------------------------------------
# JSON Lines manifests


def features_manifest(split: str, train: str = "", val: str = "", test: str = "", layout: str = "TD",
                      temporal_stride: int = 1, fitted: dict | None = None) -> FeatureDataset:
    """One's own precomputed features: a JSON Lines manifest per split, ``{"path": "feats/x.npy", "labels":
    ["pour", "stir"], "frame_labels_path": "gt/x.txt", "id": ...}`` per line (checked by
    :func:`ctcrnn.data.read_manifest`: errors name the file and line); ``labels`` may be left out when
    ``frame_labels_path`` is given (the transcript is then collapsed from it); paths are relative to the
    manifest's folder; ``split`` may also be a manifest path. ``.npy`` files are (T, D) by default
    (``layout="DT"`` for MS-TCN-style (D, T)); per-frame label files hold one name per line. The vocabulary is
    "<blank>" and the sorted label names of the training manifest (transcripts and frame labels), or the
    checkpoint's."""
    if layout not in LAYOUTS:
        raise ValueError(f"features_manifest: layout must be one of {LAYOUTS}, got {layout!r}")
    path = manifest_for_split("features_manifest", split, {"train": train, "val": val, "test": test})
    entries = read_manifest(path, '{"path": "feats/x.npy", "labels": ["pour", "stir"]}',
                            required=(("labels", "frame_labels_path"),), optional=("frame_labels_path",),
                            media="the .npy features")
    if fitted is not None:
        labels = list(fitted["labels"])
    else:
        names = {n for e in entries for n in (e.fields.get("labels") or []) + (e.frame_labels or [])}
        labels = [BLANK_LABEL, *sorted(names - {BLANK_LABEL})]
    index = {label: i for i, label in enumerate(labels) if i > 0}
    vocabulary = "the model's labels" if fitted is not None else f"the training manifest {path}"
    videos = []
    for e in entries:
        frames = (label_ids(e.frame_labels, index, e.frame_labels_path, vocabulary) if e.frame_labels is not None
                  else None)
        target = (None if "labels" not in e.fields else
                  [int(i) for i in label_ids(e.fields["labels"], index, e.where, vocabulary, one_per_line=False)])
        videos.append(FeatureVideo(e.id, e.path, target, frames))
    stride = fitted_stride(f"features_manifest/{split}", temporal_stride, fitted)
    return make_dataset(f"features_manifest/{split}", videos, labels, layout, stride, fitted)


def read_features(path: str | Path, input_spec: dict) -> torch.Tensor:
    """One .npy file as a checkpoint's model input (T', D), laid out and subsampled as in training."""
    layout, stride = input_spec.get("layout", "TD"), int(input_spec.get("temporal_stride", 1))
    dim, _ = read_feature_header(path, layout)
    if dim != input_spec["step_shape"][0]:
        raise FeatureError(f"{path}: {dim} features per frame, but the model reads {input_spec['step_shape'][0]}")
    return torch.from_numpy(load_features(path, layout, None, stride))
