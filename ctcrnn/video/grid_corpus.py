"""GRID (lip reading): the audio-visual corpus, video only, with character targets, in its published layout.

``root/sX/video/mpg_6000/<stem>.mpg`` (or frame folders ``root/sX/<stem>/``), ``root/alignments/sX/<stem>.align``
(or ``root/sX/align/<stem>.align``); overlapped- and unseen-speaker splits as LipNet. Mouth cropping is out of
scope: ``video.size`` / ``video.crop`` only resize and centre-crop whole frames; give pre-cropped frame folders
for LipNet-style mouth crops. Builds on :mod:`ctcrnn.video.datasets`.
Must never import the core training code or another modality.
"""
from __future__ import annotations

import logging
import random
import re
from pathlib import Path

from ..data import BLANK_LABEL
from ..randomness import mix_seed
from .datasets import VIDEO_SUFFIXES, Clip, VideoDataset, build_video_dataset

log = logging.getLogger(__name__)

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
            # mix_seed with its own multiplier: the value seed * 1000 + speaker that published splits came from.
            random.Random(mix_seed(seed, number, multipliers=(1000,))).shuffle(order)
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
