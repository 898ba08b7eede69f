"""Video datasets: JSON Lines manifests of one's own clips, GRID (lip reading) and PHOENIX-2014 / -2014-T
(continuous sign language), each in its published layout.

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
instead of vanishing from the reference.

Mouth cropping (GRID) and hand/face cropping (PHOENIX) are out of scope: ``video.size`` / ``video.crop`` only
resize and centre-crop whole frames; give pre-cropped frame folders for LipNet-style mouth crops.
Must never import the core training code or another modality.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import logging
import random
import re
from collections import Counter
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..data import BLANK_LABEL
from .augment import VideoAugmentConfig, augment_clip, reading_config
from .io import FrameCache, VideoConfig, VideoError, video_info

log = logging.getLogger("ctcrnn.video")

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
    """Clips -> ``{"id", "input" (T, C, H, W) float in [0, 1], "target", "text"?}`` items (see :mod:`ctcrnn.data`).

    ``augment`` is given for the training split only; clips are then read with
    :func:`~ctcrnn.video.augment.reading_config` (no centre crop when a random crop replaces it).
    """

    def __init__(self, name: str, clips: list[Clip], vocabulary: Vocabulary, video: VideoConfig, input_spec: dict,
                 source_fps: float = 25.0, augment: VideoAugmentConfig | None = None, cache: str = ""):
        if not clips:
            raise ValueError(f"{name}: no clips found")
        duplicates = [i for i, n in Counter(c.id for c in clips).items() if n > 1]
        if duplicates:
            raise ValueError(f"{name}: clip ids must be unique, these repeat: {duplicates[:5]}")
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
        if self.augment is not None:
            generator = torch.Generator().manual_seed(((self.seed * 1_000_003 + self.epoch) * 10_000_019 + index) % 2**63)
            frames, _ = augment_clip(frames, self.augment, generator)
        item = {"id": clip.id, "input": frames, "target": self.targets[index]}
        if clip.text is not None:
            item["text"] = clip.text
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
    augment_config = VideoAugmentConfig.from_dict(augment or {})
    if augment_config.random_crop and augment_config.random_crop != config.crop:
        raise ValueError(f"{where}: augment.random_crop {augment_config.random_crop} needs video.crop set to the same "
                         f"[H, W] (got {config.crop or '[]'}): training crops at random where evaluation crops the "
                         f"centre, and both must give the model frames of one size")
    vocabulary = Vocabulary(labels) if labels else Vocabulary.fit((c.units for c in clips),
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


def split_source(split: str, paths: dict, name: str) -> str:
    path = paths.get(split) or (split if split.endswith((".jsonl", ".json")) else None)
    if not path:
        raise ValueError(f"{name} has no manifest for split {split!r}: set data.args.{split}=path.jsonl "
                         f"or pass a .jsonl path as the split")
    return path


# ---------------------------------------------------------------------------------------------------------
# JSON Lines manifests


def read_video_manifest(path: str | Path, target: str) -> list[Clip]:
    """``{"path": "clips/x.mp4" or a frame folder, "labels": [...]}`` (``target="labels"``) or ``{"path",
    "text"}`` (``target="text"``) per line, optional ``"id"``; paths relative to the manifest's folder.

    A line that is not JSON, lacks a key, holds a value of the wrong type or repeats an id is an error naming
    the file and line (a silent skip would hide the bug in whatever wrote the manifest). Without an ``"id"``
    a clip is named by its path relative to the manifest, without the suffix.
    """
    if target not in ("labels", "text"):
        raise ValueError(f"video_manifest: target must be 'labels' (token targets) or 'text' (character targets), "
                         f"got {target!r}")
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ValueError(f"manifest {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"manifest {path} cannot be read as UTF-8 text ({e})") from None
    example = '{"path": "clips/a.mp4", "labels": ["open", "pour"]}' if target == "labels" else \
        '{"path": "clips/a.mp4", "text": "bin blue at f two now"}'
    clips, seen = [], {}
    for number, line in enumerate(raw.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where}: not a JSON object ({e.msg}); each line must look like {example}") from None
        if not isinstance(entry, dict) or "path" not in entry or target not in entry:
            raise ValueError(f"{where}: each line needs 'path' and {target!r} (data.args.target={target}), like {example}")
        if not isinstance(entry["path"], str) or not entry["path"]:
            raise ValueError(f"{where}: 'path' must be a string naming a video file or frame folder, got "
                             f"{json.dumps(entry['path'])}")
        value = entry[target]
        if target == "labels" and (not isinstance(value, list) or not all(isinstance(x, str) and x.strip() and
                                                                             " " not in x for x in value)):
            raise ValueError(f"{where}: 'labels' must be a list of label names without spaces, like "
                             f'["open", "pour"], got {json.dumps(value)[:80]}')
        if target == "text" and not isinstance(value, str):
            raise ValueError(f"{where}: 'text' must be a string, got {json.dumps(value)[:80]}")
        if "id" in entry and (not isinstance(entry["id"], (str, int)) or isinstance(entry["id"], bool) or entry["id"] == ""):
            raise ValueError(f"{where}: 'id' must be a non-empty string or an integer; or leave it out")
        video = Path(entry["path"])
        default_id = str(video.with_suffix("") if video.suffix.lower() in VIDEO_SUFFIXES else video) \
            if not video.is_absolute() else video.stem
        clip_id = str(entry.get("id", default_id))
        if clip_id in seen:
            raise ValueError(f"{where}: id {clip_id!r} was already used on line {seen[clip_id]}; ids must be unique")
        seen[clip_id] = number
        video = video if video.is_absolute() else path.parent / video
        clips.append(Clip(clip_id, str(video), list(value), value if target == "text" else None))
    if not clips:
        raise ValueError(f"manifest {path} has no entries: write one JSON object per line, like {example}")
    return clips


def video_manifest(split: str, train: str = "", val: str = "", test: str = "", video: dict | None = None,
                   augment: dict | None = None, cache: str = "", target: str = "labels", source_fps: float = 25.0,
                   fitted: dict | None = None) -> VideoDataset:
    """One's own videos: a JSON Lines manifest per split (``train``/``val``/``test`` paths); ``split`` may also
    be a manifest path itself. ``target="labels"``: token targets, vocabulary = the sorted label names of the
    training manifest (+ ``<unk>``); ``target="text"``: character targets scored as WER/CER. ``video``:
    :class:`~ctcrnn.video.io.VideoConfig` fields; ``augment``: :class:`~ctcrnn.video.augment.VideoAugmentConfig`
    fields (training only); ``cache``: a folder for decoded clips ("" = decode every time); ``source_fps``:
    the rate of frame folders (files carry their own)."""
    path = split_source(split, {"train": train, "val": val, "test": test}, "video_manifest")
    return build_video_dataset("video_manifest", split, read_video_manifest(path, target), video, augment, cache,
                               fitted, characters=target == "text", source_fps=source_fps,
                               source=f"manifest {path}")


# ---------------------------------------------------------------------------------------------------------
# GRID: root/sX/video/mpg_6000/<stem>.mpg (or frame folders root/sX/<stem>/), root/alignments/sX/<stem>.align
# (or root/sX/align/<stem>.align)

GRID_LABELS = [BLANK_LABEL, " ", *"abcdefghijklmnopqrstuvwxyz"]  # LipNet's 28 classes: a-z, space, blank
GRID_SILENCES = ("sil", "sp")
GRID_UNSEEN_TEST = (1, 2, 20, 22)  # LipNet's held-out speakers


def read_align(path: Path) -> list[tuple[str, float, float]]:
    """``(word, start_frame, end_frame)`` per spoken word of a GRID .align file (``start end word`` lines, times
    in 1/1000-frame units: 1000 = one 25 fps frame), ``sil`` and ``sp`` dropped, words lower-cased."""
    words = []
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 3 or not all(f.lstrip("-").isdigit() for f in fields[:2]):
            raise ValueError(f"{path}:{number}: expected 'start end word' with integer times (1000 per frame), "
                             f"got {line.strip()!r}")
        if fields[2].lower() not in GRID_SILENCES:
            words.append((fields[2].lower(), int(fields[0]) / 1000, int(fields[1]) / 1000))
    if not words:
        raise ValueError(f"{path}: no words besides sil/sp: fix or remove this alignment")
    return words


def speaker_number(value, where: str) -> int:
    match = re.fullmatch(r"s?(\d+)", str(value).strip())
    if not match:
        raise ValueError(f"{where}: speakers are numbers or names like s1, got {value!r}")
    return int(match.group(1))


def grid_videos(folder: Path) -> dict[str, Path]:
    """stem -> video file or frame folder of one speaker (both published layouts; files win over folders)."""
    found = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name not in ("video", "align")):
        found[sub.name] = sub
    for pattern in ("video/mpg_6000/*", "video/*", "*"):
        for p in sorted(folder.glob(pattern)):
            if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES:
                found[p.stem] = p
    return found


def read_grid(root: Path) -> dict[int, list[Clip]]:
    """speaker number -> clips (sorted by stem) with their alignments; a video without an alignment is left
    out (and counted in a warning): it has no transcript."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"GRID root {root} does not exist (expected {root}/sX/video/mpg_6000/*.mpg and "
                         f"{root}/alignments/sX/*.align)")
    speakers, unaligned = {}, 0
    for folder in sorted(root.iterdir()):
        if not (folder.is_dir() and re.fullmatch(r"s\d+", folder.name)):
            continue
        clips = []
        for stem, video in sorted(grid_videos(folder).items()):
            align = next((a for a in (root / "alignments" / folder.name / f"{stem}.align",
                                      folder / "align" / f"{stem}.align") if a.is_file()), None)
            if align is None:
                unaligned += 1
                continue
            text = " ".join(word for word, _, _ in read_align(align))
            clips.append(Clip(f"{folder.name}/{stem}", str(video), list(text), text, folder.name))
        if clips:
            speakers[int(folder.name[1:])] = clips
    if not speakers:
        raise ValueError(f"GRID root {root} has no speaker folders sX with videos and .align files")
    if unaligned:
        log.warning("GRID %s: %d videos have no .align file (looked in alignments/sX/ and sX/align/): left out",
                    root, unaligned)
    return speakers


def grid_splits(speakers: dict[int, list[Clip]], setting: str, groups: dict | None, test_per_speaker: int,
                val_per_speaker: int, seed: int) -> dict[str, list[Clip]]:
    """The clips of train/val/test.

    ``unseen``: whole speakers: test = ``groups["test"]`` (default LipNet's 1, 2, 20, 22), val =
    ``groups["val"]`` (default none), train = ``groups["train"]`` (default every other speaker found).
    ``overlapped``: every speaker in every split; per speaker, the stems are shuffled by
    ``random.Random(seed * 1000 + speaker)`` and the first ``test_per_speaker`` (LipNet: 255) are test, the
    next ``val_per_speaker`` val, the rest train: the same split on any machine, whatever the listing order.
    """
    if setting == "unseen":
        groups = {"val": [], "test": list(GRID_UNSEEN_TEST), **(groups or {})}
        chosen = {k: {speaker_number(s, f"data.args.speakers.{k}") for s in (v or [])} for k, v in groups.items()
                  if k in ("train", "val", "test")}
        unknown_keys = set(groups) - {"train", "val", "test"}
        if unknown_keys:
            raise ValueError(f"grid: data.args.speakers has keys train/val/test, not {sorted(unknown_keys)}")
        if not groups.get("train"):
            chosen["train"] = set(speakers) - chosen["val"] - chosen["test"]
        overlap = (chosen["train"] & chosen["test"]) | (chosen["train"] & chosen["val"]) | (chosen["val"] & chosen["test"])
        if overlap:
            raise ValueError(f"grid unseen: speakers {sorted(overlap)} are in two splits; unseen-speaker splits "
                             f"must not share speakers")
        return {k: [c for s in sorted(v) for c in speakers.get(s, [])] for k, v in chosen.items()}
    if setting == "overlapped":
        splits = {"train": [], "val": [], "test": []}
        for number, clips in sorted(speakers.items()):
            order = sorted(clips, key=lambda c: c.id)
            random.Random(seed * 1000 + number).shuffle(order)
            splits["test"] += order[:test_per_speaker]
            splits["val"] += order[test_per_speaker : test_per_speaker + val_per_speaker]
            splits["train"] += order[test_per_speaker + val_per_speaker :]
        return {k: sorted(v, key=lambda c: c.id) for k, v in splits.items()}
    raise ValueError(f"grid: setting must be 'overlapped' or 'unseen', got {setting!r}")


def grid(split: str, root: str = "data/GRID", speakers: dict | None = None, setting: str = "overlapped",
         test_per_speaker: int = 255, val_per_speaker: int = 0, seed: int = 0, video: dict | None = None,
         augment: dict | None = None, cache: str = "", fitted: dict | None = None) -> VideoDataset:
    """GRID audio-visual corpus, video only, character targets: the sentence's words without ``sil``/``sp``,
    lower case, joined by spaces (``bin blue at f two now``), over LipNet's fixed 28 classes (blank, space,
    a-z: GRID's words hold no apostrophes or digits, so the alphabet is fixed rather than fitted; anything else
    is counted and scored as an error). Splits: see :func:`grid_splits` (``setting``, ``speakers``,
    ``test_per_speaker``, ``val_per_speaker``, ``seed``). The frames are whole faces: LipNet's 100x50 mouth
    crops must be made beforehand (frame folders); ``video.size``/``video.crop`` only resize and centre-crop.
    """
    clips = grid_splits(read_grid(Path(root)), setting, speakers, test_per_speaker, val_per_speaker, seed)
    if split not in clips:
        raise ValueError(f"grid has splits train/val/test, not {split!r}")
    if not clips[split]:
        hint = ("set data.args.speakers.val=[...] (speakers taken out of training)" if setting == "unseen" else
                "set data.args.val_per_speaker > 0") if split == "val" else "check data.args.speakers and root"
        raise ValueError(f"grid ({setting}): the {split} split is empty: {hint}, or use data.val_split=test as "
                         f"LipNet (which had no validation set) did")
    return build_video_dataset("grid", split, clips[split], video, augment, cache, fitted, characters=True,
                               labels=GRID_LABELS, source=f"GRID {root}")


# ---------------------------------------------------------------------------------------------------------
# PHOENIX-2014 (multisigner) and PHOENIX-2014-T

PHOENIX_SPLITS = {"train": "train", "val": "dev", "dev": "dev", "test": "test"}

# The official evaluation's normalisation (evaluatePhoenix2014.sh / preprocess.sh of PHOENIX-2014; the
# reference side of evaluatePHOENIX-2014-T.sh): applied to the references *and* the training targets, so the
# model learns exactly the glosses it is scored on and gloss WER is the token error rate.
# PHOENIX-2014: prefixes loc-/cl-/qu-/poss-/lh- are annotation detail (location, classifier, question,
# possessive, left hand) of one sign; S0NNE and HABEN2 are typos/variants; __EMOTION__, __PU__ (palm up),
# __LEFTHAND__ and __EPENTHESIS__ mark non-lexical movements; -PLUSPLUS marks a repeated sign; <XX>RAUM
# ("region") names the same place as <XX>. __ON__/__OFF__ (hands rise/fall) are kept, as the official script
# and its ground-truth .stm keep them. PHOENIX-2014-T removes every __X__ token, __ON__/__OFF__ included.
_SPELLED = [  # fingerspelled letters join into one gloss: A B C -> A+B+C
    (r"^([A-Z]) ([A-Z][+ ])", r"\1+\2"), (r"[ +]([A-Z]) ([A-Z]) ", r" \1+\2 "),
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"), (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"),
    (r"([ +][A-Z]) ([A-Z][ +])", r"\1+\2"), (r"([ +]SCH) ([A-Z][ +])", r"\1+\2"),
    (r"([ +]NN) ([A-Z][ +])", r"\1+\2"), (r"([ +][A-Z]) (NN[ +])", r"\1+\2"), (r"([ +][A-Z]) ([A-Z])$", r"\1+\2"),
]
_REPEAT = (r"(?<![\w-])(\b[A-Z]+(?![\w-])) \1(?![\w-])", r"\1")  # applied 4 times, as the official perl loop
PHOENIX_RULES = {
    "2014": [(r"loc-", ""), (r"cl-", ""), (r"qu-", ""), (r"poss-", ""), (r"lh-", ""), (r"S0NNE", "SONNE"),
             (r"HABEN2", "HABEN"), (r"__EMOTION__", ""), (r"__PU__", ""), (r"__LEFTHAND__", ""),
             (r"__EPENTHESIS__", ""), (r"WIE AUSSEHEN", "WIE-AUSSEHEN"), (r"ZEIGEN ", "ZEIGEN-BILDSCHIRM "),
             (r"ZEIGEN$", "ZEIGEN-BILDSCHIRM"), *_SPELLED, (r"([A-Z][A-Z])RAUM", r"\1"), (r"-PLUSPLUS", ""),
             (r" +", " "), *[_REPEAT] * 4],
    "2014T": [(r"__LEFTHAND__", ""), (r"__EPENTHESIS__", ""), (r"__EMOTION__", ""), (r"\b__[^_ ]*__\b", ""),
              (r"\bloc-([^ ]*)\b", r"\1"), (r"\bcl-([^ ]*)\b", r"\1"), (r"\b([^ ]*)-PLUSPLUS\b", r"\1"),
              (r"\b([A-Z][A-Z]*)RAUM\b", r"\1"), (r"WIE AUSSEHEN", "WIE-AUSSEHEN"), *_SPELLED, (r" +", " "),
              *[_REPEAT] * 4],
}


def normalise_glosses(annotation: str, variant: str = "2014") -> list[str]:
    """The glosses the official PHOENIX evaluation scores (see PHOENIX_RULES), with immediate repetitions
    collapsed (as the 2014-T script does for hypotheses; CTC output cannot tell them apart from one long sign)."""
    text = re.sub(r"\s+", " ", annotation.strip())
    for pattern, replacement in PHOENIX_RULES[variant]:
        text = re.sub(pattern, replacement, text)  # no strip between rules: sed does not
    return [gloss for gloss, _ in groupby(text.split())]


def phoenix_base(root: Path, variant: str) -> Path:
    name = {"2014": "phoenix-2014-multisigner", "2014T": "PHOENIX-2014-T"}[variant]
    return root if (root / "annotations").is_dir() else root / name


def read_phoenix_corpus(base: Path, variant: str, part: str, normalise: bool) -> list[Clip]:
    """The clips of one corpus CSV (pipe-separated, with its header), frames under
    ``features/fullFrame-210x260px/<part>/``. A malformed line is an error naming file and line."""
    if variant == "2014":
        csv_path = base / "annotations" / "manual" / f"{part}.corpus.csv"
        header, name_key, folder_key, signer_key, gloss_key = ["id", "folder", "signer", "annotation"], "id", "folder", "signer", "annotation"
    else:
        csv_path = base / "annotations" / "manual" / f"PHOENIX-2014-T.{part}.corpus.csv"
        header, name_key, folder_key, signer_key, gloss_key = (["name", "video", "start", "end", "speaker", "orth",
                                                                "translation"], "name", None, "speaker", "orth")
    if not csv_path.is_file():
        raise ValueError(f"PHOENIX-{variant}: {csv_path} not found (data.args.root should hold "
                         f"{base.name}/annotations/manual/); download from "
                         f"https://www-i6.informatik.rwth-aachen.de/~koller/RWTH-PHOENIX/")
    frames_root = base / "features" / "fullFrame-210x260px" / part
    with csv_path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f, delimiter="|", quoting=csv.QUOTE_NONE))
    if not rows or [h.strip() for h in rows[0]] != header:
        raise ValueError(f"{csv_path}:1: expected the header {'|'.join(header)}, got {'|'.join(rows[0]) if rows else 'nothing'}")
    clips = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or not "".join(row).strip():
            continue
        if len(row) != len(header):
            raise ValueError(f"{csv_path}:{number}: expected {len(header)} '|'-separated fields "
                             f"({'|'.join(header)}), got {len(row)}")
        entry = dict(zip(header, row))
        if folder_key:  # "<id>/1/*.png": the frames are the folder of the glob
            folder = Path(entry[folder_key])
            folder = folder.parent if any(ch in folder.name for ch in "*?[") else folder
            path = frames_root / folder
        else:
            path = frames_root / entry[name_key]
        glosses = normalise_glosses(entry[gloss_key], variant) if normalise else entry[gloss_key].split()
        clips.append(Clip(entry[name_key], str(path), glosses, None, entry[signer_key]))
    if not clips:
        raise ValueError(f"{csv_path} has no clips")
    return clips


class PhoenixDataset(VideoDataset):
    """A PHOENIX split that also writes its predictions in the official scoring formats."""

    def write_predictions(self, results: list[dict], out_dir) -> None:
        """``reference.stm`` (``<id> 1 <signer> 0.0 1.79769e+308 <glosses>``) and ``hypothesis.ctm``
        (``<id> 1 <start> <duration> <gloss>``, 10 ms per gloss: sclite scores words, not times), both with
        the normalised glosses, so the official sclite scoring can be rerun on them."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        clips = {c.id: c for c in self.clips}
        with (out_dir / "reference.stm").open("w") as stm, (out_dir / "hypothesis.ctm").open("w") as ctm:
            for row in sorted(results, key=lambda r: r["id"]):
                clip = clips[row["id"]]  # its glosses, not the label ids: a gloss unseen in training stays itself
                stm.write(f"{clip.id} 1 {clip.speaker} 0.0 1.79769e+308 {' '.join(clip.units)}\n")
                for k, i in enumerate(row["hyp"]):
                    ctm.write(f"{row['id']} 1 {k * 0.01:.3f} 0.010 {self.labels[i]}\n")


def phoenix2014(split: str, root: str = "data", variant: str = "2014", normalise: bool = True,
                video: dict | None = None, augment: dict | None = None, cache: str = "",
                fitted: dict | None = None) -> VideoDataset:
    """RWTH-PHOENIX-Weather 2014 (multisigner, ``variant="2014"``) or PHOENIX-2014-T (``"2014T"``), gloss
    targets. ``root`` holds ``phoenix-2014-multisigner/`` or ``PHOENIX-2014-T/`` (or is that folder).
    Splits train / val (= dev) / test. Frames are the published 210x260 PNGs at 25 fps (kept as they are).
    Glosses are normalised as the official evaluation does (:data:`PHOENIX_RULES`; ``normalise=False`` keeps
    the raw annotation, whose token error rate is then *not* the published WER); the vocabulary is the
    training split's normalised glosses + ``<unk>``.
    """
    if variant not in ("2014", "2014T"):
        raise ValueError(f"phoenix2014: variant must be '2014' or '2014T', got {variant!r}")
    if split not in PHOENIX_SPLITS:
        raise ValueError(f"phoenix2014 has splits train/val/test (val = dev), not {split!r}")
    base = phoenix_base(Path(root), variant)
    clips = read_phoenix_corpus(base, variant, PHOENIX_SPLITS[split], normalise)
    return build_video_dataset(f"phoenix{variant}", split, clips, video, augment, cache, fitted, characters=False,
                               source=f"PHOENIX-{variant} under {root}", dataset_class=PhoenixDataset)
