"""Shared video dataset machinery and one's own clips: :class:`VideoDataset`, its :class:`Clip` and
:class:`Vocabulary`, the builder tail every video corpus ends in (:func:`build_video_dataset`,
:func:`video_spec`), and the JSON Lines manifest (:func:`video_manifest`). GRID lives in
:mod:`ctcrnn.video.grid_corpus`, PHOENIX-2014 in :mod:`ctcrnn.video.phoenix`.

Every split is a :class:`VideoDataset`: clips read (PyAV or frame folders, through an optional on-disk
:class:`~ctcrnn.video.io.FrameCache`), resized/cropped as ``video`` says and (training split only) augmented
in ``__getitem__``, i.e. in the DataLoader workers. An unreadable clip becomes a ``{"id", "error"}`` item: the
batch drops it and the trainer counts and logs it. A split built without ``fitted`` *is* a training split: it
fits the vocabulary itself and is augmented; with ``fitted`` (validation, test, a checkpoint's new data) the
model's vocabulary and video settings are used and nothing is augmented.

Targets are either characters (labels ``<blank>``, the space, letters...; ``word_delimiter`` " ", scored as
WER/CER against the raw ``text``) or whole tokens (action labels, glosses; scored as token error rate, which
for glosses is the gloss WER). A token vocabulary ends in ``<unk>``: a validation/test token never seen in
training maps to it, so it still counts as an error (a model never trained to emit ``<unk>`` cannot match it)
instead of vanishing from the reference. Token clips of a manifest may carry per-frame labels (at the clip's
own frame rate), which evaluation scores as segmentation and alignment, as for precomputed features.

``video.size`` / ``video.crop`` only resize and centre-crop whole frames: any region-of-interest cropping
(mouths, hands, faces) must be done beforehand (give pre-cropped frame folders).
Must never import the core training code or another modality.
"""
from __future__ import annotations

import dataclasses
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from torch.utils.data import Dataset

from ..data import BLANK_LABEL, check_unique_ids, collapse_runs, manifest_for_split, read_manifest
from ..randomness import item_generator
from .augment import VideoAugmentConfig, augment_clip, reading_config
from .io import FrameCache, VideoConfig, VideoError, kept_frames, video_info

log = logging.getLogger(__name__)

UNKNOWN_TOKEN = "<unk>"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mpg", ".mpeg", ".webm", ".mkv", ".mov")


@dataclass
class Clip:
    id: str
    path: str                       # a video file or a folder of frames
    units: list[str]                # what the target spells: characters of ``text``, or tokens (labels, glosses)
    text: str | None = None         # the raw reference for character targets (scored as text)
    speaker: str = ""               # GRID speaker / PHOENIX signer (for .stm output)
    error: str | None = None        # known unreadable before loading: the item is skipped
    frame_labels: list[str] | None = None  # one label per source frame (manifest "frame_labels_path"): scoring only
    frame_rate: float = 0.0         # the source frame rate those labels are at (which frames video.fps keeps)


class Vocabulary:
    """Label names <-> ids; ``labels[0]`` is the blank. Unknown units map to ``<unk>`` when the vocabulary has
    it (token targets) and are otherwise left out (character targets, whose raw text is scored); either way
    they are counted, never dropped silently."""

    def __init__(self, labels: list[str]):
        if not labels or labels[0] != BLANK_LABEL:
            raise ValueError(f"labels must start with {BLANK_LABEL!r}, got {labels[:5]}")
        repeated = sorted({x for x, n in Counter(labels).items() if n > 1})
        if repeated:
            raise ValueError(f"labels must be distinct, these repeat: {repeated[:5]}")
        self.labels = list(labels)
        self.index = {x: i for i, x in enumerate(self.labels) if i}

    @classmethod
    def fit(cls, sequences, source: str, tokens: bool) -> Vocabulary:
        """Every unit seen in the training ``sequences``, sorted (same data, same ids), plus ``<unk>`` for tokens."""
        units = sorted(set().union(*(set(s) for s in sequences)) - {UNKNOWN_TOKEN})
        if not units:
            raise ValueError(f"cannot build a vocabulary from {source}: every training target is empty")
        return cls([BLANK_LABEL, *units, *([UNKNOWN_TOKEN] if tokens else [])])

    def encode(self, units: list[str], unknown: Counter) -> list[int]:
        fallback = self.index.get(UNKNOWN_TOKEN)
        ids = []
        for unit in units:
            i = self.index.get(unit, fallback)
            if unit not in self.index:
                unknown[unit] += 1
            if i is not None:
                ids.append(i)
        return ids


class VideoDataset(Dataset):
    """Clips -> ``{"id", "input" (T, C, H, W) float in [0, 1], "target", "text"?, "frame_labels"? (T,)}`` items
    (see :mod:`ctcrnn.data`).

    ``augment`` is given for the training split only; clips are then read with
    :func:`~ctcrnn.video.augment.reading_config` (no centre crop when a random crop replaces it).
    """

    def __init__(self, name: str, clips: list[Clip], vocabulary: Vocabulary, video: VideoConfig, input_spec: dict,
                 source_fps: float = 25.0, augment: VideoAugmentConfig | None = None, cache: str = ""):
        if not clips:
            raise ValueError(f"{name}: no clips found")
        check_unique_ids(name, (c.id for c in clips), "clip")
        self.name, self.clips, self.video, self.source_fps = name, clips, video, source_fps
        self.augment = augment if augment is not None and augment.enabled else None
        self.read_config = reading_config(video, self.augment) if self.augment else video
        self.cache = FrameCache(cache or None)
        self.labels, self.input_spec = vocabulary.labels, input_spec
        self.unknown = Counter()
        self.targets = [vocabulary.encode(c.units, self.unknown) for c in clips]
        if self.unknown:
            holders = [c.id for c in clips if any(u not in vocabulary.index for u in c.units)]
            listing = ", ".join(f"{u!r}x{n}" for u, n in self.unknown.most_common(12))
            log.warning("%s: %d target units in %d clips are not in the training vocabulary (%s), e.g. in %s: they "
                        "count as errors when scoring", name, sum(self.unknown.values()), len(holders), listing,
                        ", ".join(holders[:5]))
        # Frame labels map as targets do (an unknown name becomes <unk>: a frame the model cannot get right).
        unknown_frames = Counter()
        self.frame_targets = [vocabulary.encode(c.frame_labels, unknown_frames) if c.frame_labels is not None
                              else None for c in clips]
        if unknown_frames:
            log.warning("%s: %d frame labels are not in the training vocabulary (%s): those frames count as wrong",
                        name, sum(unknown_frames.values()),
                        ", ".join(f"{u!r}x{n}" for u, n in unknown_frames.most_common(12)))
        self._lengths = None
        self.seed, self.epoch = 0, 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Augmentation of clip i in this epoch draws from a generator seeded by (seed, epoch, i): the same in
        any DataLoader worker and in any order, so a resumed run augments exactly as an unbroken one."""
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def lengths(self) -> list[int]:
        """Frames per clip from the container headers / frame counts (no decoding), after ``video.fps`` and
        ``max_frames``; with temporal rescaling, the longest a clip can become (``max_frames`` stays a bound).
        An unreadable clip counts 1 (it is skipped when loaded)."""
        if self._lengths is None:
            stretch = 1 + (self.augment.temporal_rescale if self.augment else 0.0)
            lengths = []
            for clip in self.clips:
                try:
                    count = video_info(clip.path, self.video, self.source_fps)[0] if not clip.error else 1
                except VideoError:
                    count = 1
                lengths.append(max(1, int(count * stretch + 0.5)))
            self._lengths = lengths
        return self._lengths

    def __getitem__(self, index: int) -> dict:
        clip = self.clips[index]
        if clip.error:
            return {"id": clip.id, "error": clip.error}
        try:
            frames = self.cache.read(clip.path, self.read_config, self.source_fps)
        except VideoError as e:
            return {"id": clip.id, "error": str(e)}
        labels = self.frame_targets[index]
        if labels is not None:
            # The labels of the frames read (video.fps, max_frames); both cut to the shorter, as MS-TCN does.
            keep = kept_frames(len(labels), clip.frame_rate, self.read_config)[: frames.shape[0]]
            frames, labels = frames[: len(keep)], [labels[i] for i in keep]
        if self.augment is not None:
            generator = item_generator(self.seed, self.epoch, index)
            frames, used = augment_clip(frames, self.augment, generator)
            labels = [labels[i] for i in used] if labels is not None else None
        item = {"id": clip.id, "input": frames, "target": self.targets[index]}
        if clip.text is not None:
            item["text"] = clip.text
        if labels is not None:
            item["frame_labels"] = labels
        return item


def video_spec(video: VideoConfig, step_shape: list[int], fps: float, source_fps: float, characters: bool) -> dict:
    """What a checkpoint needs to read new videos the way it was trained (plain types only)."""
    spec = {"modality": "video", "step_shape": list(step_shape), "fps": float(fps), "source_fps": float(source_fps),
            "video": dataclasses.asdict(video), "value_range": [0.0, 1.0]}
    return {**spec, "word_delimiter": " "} if characters else spec


def probe_frames(clips: list[Clip], video: VideoConfig, source_fps: float, cache: FrameCache, name: str):
    """(step_shape [C, H, W], fps) from the first readable clip: needed when ``video`` fixes no frame size."""
    for clip in clips:
        if clip.error:
            continue
        try:
            fps = video.fps or video_info(clip.path, None, source_fps)[1]
            return list(cache.read_uint8(clip.path, video, source_fps).shape[1:]), fps
        except VideoError as e:
            clip.error = str(e)
    raise ValueError(f"{name}: none of the {len(clips)} clips can be read (first: {clips[0].error})")


def build_video_dataset(name: str, split: str, clips: list[Clip], video: dict | None, augment: dict | None,
                        cache: str, fitted: dict | None, characters: bool, source_fps: float = 25.0,
                        labels: list[str] | None = None, source: str = "", dataset_class=VideoDataset, **extra):
    """Vocabulary, video settings and augmentation for one split; the shared tail of every video builder.

    Without ``fitted`` this is a training split: the vocabulary is ``labels`` (a fixed alphabet) or fitted
    on its own targets, and it is augmented. With ``fitted`` the model's vocabulary and ``input_spec["video"]``
    are used and nothing is augmented. ``source`` (a manifest path...) is what an error names.
    """
    where = f"{name}/{split}"
    if fitted is not None:
        spec = dict(fitted["input_spec"])
        config = VideoConfig.from_dict(dict(spec.get("video", {})))
        if video and dataclasses.asdict(VideoConfig.from_dict(video)) != spec.get("video"):
            log.warning("%s: data.args.video differs from the model's; the model's (its input_spec) is used", where)
        return dataset_class(where, clips, Vocabulary(list(fitted["labels"])), config, spec, source_fps,
                             cache=cache, **extra)
    config = VideoConfig.from_dict(video or {})
    augment_config = VideoAugmentConfig.from_dict(augment or {}, "data.args.augment")
    if augment_config.random_crop and augment_config.random_crop != config.crop:
        raise ValueError(f"{where}: augment.random_crop {augment_config.random_crop} needs video.crop set to the same "
                         f"[H, W] (got {config.crop or '[]'}): training crops at random where evaluation crops the "
                         f"centre, and both must give the model frames of one size")
    # Frame-label names count too (a background label that no transcript names, say), as for features.
    vocabulary = Vocabulary(labels) if labels else Vocabulary.fit((c.units + (c.frame_labels or []) for c in clips),
                                                                  source or where, tokens=not characters)
    fps = config.fps
    if config.crop or config.size:
        shape = [config.channels, *(config.crop or config.size)]
    else:
        shape, fps = probe_frames(clips, config, source_fps, FrameCache(cache or None), where)
    if not fps:
        readable = next((c for c in clips if not c.error), None)
        try:
            fps = video_info(readable.path, None, source_fps)[1] if readable else source_fps
        except VideoError:
            fps = source_fps
    spec = video_spec(config, shape, fps, source_fps, characters)
    return dataset_class(where, clips, vocabulary, config, spec, source_fps, augment_config, cache, **extra)


# ---------------------------------------------------------------------------------------------------------
# JSON Lines manifests


def read_video_manifest(path: str | Path, target: str, source_fps: float = 25.0) -> list[Clip]:
    """``{"path": "clips/x.mp4" or a frame folder, "labels": [...]}`` (``target="labels"``) or ``{"path",
    "text"}`` (``target="text"``) per line, optional ``"id"``; paths relative to the manifest's folder; checked by
    :func:`ctcrnn.data.read_manifest` (errors name the file and line).

    With token targets a line may also give ``"frame_labels_path"``: a file with one label per frame of the clip
    (as a features manifest and MS-TCN's groundTruth files), which makes evaluation report segmentation and
    alignment scores; ``"labels"`` may then be left out (the transcript is the labels with runs collapsed).
    Labels are at the clip's own rate (a folder's frames at ``source_fps``); a clip read at a lower
    ``video.fps`` keeps the label of each frame it keeps. Frame and label counts are compared from the
    header (no decoding); when they differ both are cut to the shorter, as MS-TCN does, and the clips logged.
    """
    if target not in ("labels", "text"):
        raise ValueError(f"video_manifest: target must be 'labels' (token targets) or 'text' (character targets), "
                         f"got {target!r}")
    path = Path(path)
    example = '{"path": "clips/a.mp4", "labels": ["open", "pour"]}' if target == "labels" else \
        '{"path": "clips/a.mp4", "text": "bin blue at f two now"}'
    required = (("labels", "frame_labels_path"),) if target == "labels" else ("text",)
    entries = read_manifest(path, example, required, optional=("frame_labels_path",),
                            media="a video file or frame folder", suffixes=VIDEO_SUFFIXES,
                            hint=f" (data.args.target={target}; 'text' for transcripts spelled in characters)")
    clips, cut = [], []
    for entry in entries:
        if target == "text":
            if entry.frame_labels is not None:
                raise ValueError(f"{entry.where}: 'frame_labels_path' needs token targets (data.args.target=labels): "
                                 f"frame labels name tokens, not characters")
            clips.append(Clip(entry.id, entry.path, list(entry.fields["text"]), entry.fields["text"]))
            continue
        clip = Clip(entry.id, entry.path, entry.fields.get("labels"), frame_labels=entry.frame_labels)
        if clip.frame_labels is not None:
            try:
                count, clip.frame_rate = video_info(clip.path, None, source_fps)
                if count != len(clip.frame_labels):
                    cut.append((clip.id, count, len(clip.frame_labels)))
                    clip.frame_labels = clip.frame_labels[:count]
            except VideoError as e:
                clip.error = str(e)   # a counted skip when loaded, as for any unreadable clip
        if clip.units is None:
            clip.units = collapse_runs(clip.frame_labels)
        clips.append(clip)
    if cut:
        log.warning("%s: %d of %d clips have frame and label counts that differ (by up to %d frames); both are cut "
                    "to the shorter, as MS-TCN does: %s", path, len(cut), len(clips),
                    max(abs(a - b) for _, a, b in cut), ", ".join(i for i, _, _ in cut[:5]))
    return clips


def video_manifest(split: str, train: str = "", val: str = "", test: str = "", video: dict | None = None,
                   augment: dict | None = None, cache: str = "", target: str = "labels", source_fps: float = 25.0,
                   fitted: dict | None = None) -> VideoDataset:
    """One's own videos: a JSON Lines manifest per split (``train``/``val``/``test`` paths); ``split`` may also
    be a manifest path itself. ``target="labels"``: token targets, vocabulary = the sorted label names of the
    training manifest, frame labels included (+ ``<unk>``); per-frame labels (``frame_labels_path``, see
    :func:`read_video_manifest`) add segmentation and alignment scores; ``target="text"``: character targets
    scored as WER/CER. ``video``: :class:`~ctcrnn.video.io.VideoConfig` fields; ``augment``:
    :class:`~ctcrnn.video.augment.VideoAugmentConfig` fields (training only); ``cache``: a folder for decoded
    clips ("" = decode every time); ``source_fps``: the rate of frame folders (files carry their own)."""
    path = manifest_for_split("video_manifest", split, {"train": train, "val": val, "test": test})
    return build_video_dataset("video_manifest", split, read_video_manifest(path, target, source_fps), video,
                               augment, cache, fitted, characters=target == "text", source_fps=source_fps,
                               source=f"manifest {path}")
