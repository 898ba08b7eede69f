"""Tiny video datasets written in their real on-disk formats, for tests (importable, not a test module).

* :func:`write_video_manifest`: PyAV-encoded .mp4 clips, a folder of PNG frames and one broken file, listed
  in JSON Lines manifests with ``labels`` and with ``text`` targets.
* :func:`write_grid`: a GRID tree (``sX/video/mpg_6000/<stem>.mpg`` in MPEG-1, one speaker as frame folders,
  ``.align`` files in both published places).
* :func:`write_phoenix2014` / :func:`write_phoenix2014t`: PHOENIX trees with pipe-separated corpus CSVs and
  folders of small PNG frames.

Every file is a pure function of its arguments (seeded NumPy), so two calls write identical trees.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image


def frames_for(key: str, count: int, height: int, width: int) -> np.ndarray:
    """(T, H, W, 3) uint8 frames: a bright square whose place and colour depend on ``key``, moving over time
    on a dark noisy background (visible content, so a model has something to look at)."""
    rng = np.random.default_rng(sum(map(ord, key)) * 7919 + len(key))
    colour = rng.integers(120, 256, size=3)
    frames = rng.integers(0, 40, size=(count, height, width, 3)).astype(np.uint8)
    side = max(2, min(height, width) // 4)
    for t in range(count):
        top = int((rng.integers(0, height - side) + t) % (height - side))
        left = int((t * 2 + rng.integers(0, width - side)) % (width - side))
        frames[t, top : top + side, left : left + side] = colour
    return frames


def encode_video(path: Path, frames: np.ndarray, fps: int = 25, codec: str = "mpeg4") -> Path:
    """Write (T, H, W, 3) uint8 frames as a video file with PyAV (``mpeg1video`` for GRID's .mpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.time_base = Fraction(1, fps)
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")
            video_frame.pts = i
            for packet in stream.encode(video_frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def write_frames(folder: Path, frames: np.ndarray, name: str = "{}.png") -> Path:
    """One PNG per frame, named ``name.format(index)`` (index from 1)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(folder / name.format(i))
    return folder


# ---------------------------------------------------------------------------------------------------------
# JSON Lines manifest

MANIFEST_CLIPS = {  # id -> (labels, text)
    "clips/pour": (["open", "pour"], "open pour"),
    "clips/stir": (["pour", "stir", "close"], "pour stir"),
    "clips/open": (["open", "close"], "open close"),
    "clips/wipe": (["stir", "open"], "stir open"),
}


def write_video_manifest(folder: Path, frames: int = 24, height: int = 32, width: int = 48) -> dict:
    """Four .mp4 clips, a frame folder (``frames/wave/frame1.png`` ... ``frame<frames>.png``, unpadded
    numbers so that only a natural sort reads them in order) and ``clips/broken.mp4`` (not a video).

    Writes ``train.jsonl`` (all six, ``labels`` targets; the broken file last), ``val.jsonl`` (two clips and the
    frame folder) and ``text.jsonl`` (all six, ``text`` targets). Returns their paths, the frame folder's
    pixels and the sorted label names.
    """
    folder = Path(folder)
    entries = []
    for stem, (labels, text) in MANIFEST_CLIPS.items():
        encode_video(folder / f"{stem}.mp4", frames_for(stem, frames, height, width))
        entries.append({"path": f"{stem}.mp4", "labels": labels, "text": text})
    wave = frames_for("wave", frames, height, width)
    write_frames(folder / "frames" / "wave", wave, "frame{}.png")
    entries.append({"path": "frames/wave", "labels": ["wave", "close"], "text": "wave close", "id": "wave"})
    (folder / "clips" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video")
    entries.append({"path": "clips/broken.mp4", "labels": ["open"], "text": "open"})

    def dump(name: str, rows: list[dict], key: str) -> Path:
        path = folder / name
        path.write_text("".join(json.dumps({k: v for k, v in row.items() if k in ("path", "id", key)}) + "\n"
                                for row in rows))
        return path

    return {"train": dump("train.jsonl", entries, "labels"), "val": dump("val.jsonl", entries[:2] + entries[4:5], "labels"),
            "text": dump("text.jsonl", entries, "text"), "wave": wave, "frames": frames,
            "labels": sorted({label for row in entries for label in row["labels"]})}


# ---------------------------------------------------------------------------------------------------------
# GRID

COMMANDS, COLOURS, PREPOSITIONS = ("bin", "lay", "place", "set"), ("blue", "green", "red", "white"), ("at", "by", "in", "with")
LETTERS = "abcdefghijklmnopqrstuvxyz"  # GRID has no "w"
DIGITS, ADVERBS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"), ("again", "now", "please", "soon")


def grid_sentence(speaker: int, index: int) -> tuple[str, list[str]]:
    """(stem, words) of a GRID-grammar sentence; the stem is spelled as GRID's are (``bbaf2n``)."""
    rng = np.random.default_rng([speaker, index])
    words = [str(rng.choice(COMMANDS)), str(rng.choice(COLOURS)), str(rng.choice(PREPOSITIONS)),
             str(rng.choice(list(LETTERS))), str(rng.choice(DIGITS)), str(rng.choice(ADVERBS))]
    stem = "".join(w[0] for w in words[:4]) + str(DIGITS.index(words[4])) + words[5][0]
    return stem + f"{index:x}", words  # the suffix keeps stems distinct in a tiny corpus


def align_text(words: list[str], frames: int) -> str:
    """An .align file: ``start end word`` in 1/1000-frame units, ``sil`` around the sentence, one ``sp``."""
    cuts = np.linspace(1, frames - 1, len(words) + 1)
    lines = [f"0 {int(cuts[0] * 1000)} sil"]
    for i, word in enumerate(words):
        lines.append(f"{int(cuts[i] * 1000)} {int(cuts[i + 1] * 1000)} {word}")
        if i == 2:
            lines.append(f"{int(cuts[i + 1] * 1000)} {int(cuts[i + 1] * 1000)} sp")
    lines.append(f"{int(cuts[-1] * 1000)} {frames * 1000} sil")
    return "\n".join(lines) + "\n"


def write_grid(root: Path, speakers: tuple = (1, 2, 3), per_speaker: int = 4, frames: int = 48,
               height: int = 48, width: int = 64) -> dict:
    """A GRID tree: speakers 1 and 2 as ``sX/video/mpg_6000/<stem>.mpg`` (MPEG-1, 25 fps) with alignments in
    ``alignments/sX/``; the last speaker as frame folders ``sX/<stem>/`` with alignments in ``sX/align/``.
    Speaker 1 also has a broken .mpg (with an alignment) and an alignment without a video.
    Returns {"<speaker>/<stem>": sentence} for the readable clips and the broken clip's id."""
    root = Path(root)
    sentences = {}
    for speaker in speakers:
        as_frames = speaker == speakers[-1]
        for index in range(per_speaker):
            stem, words = grid_sentence(speaker, index)
            pixels = frames_for(f"s{speaker}{stem}", frames, height, width)
            if as_frames:
                write_frames(root / f"s{speaker}" / stem, pixels, "frame_{:03d}.png")
                align = root / f"s{speaker}" / "align" / f"{stem}.align"
            else:
                encode_video(root / f"s{speaker}" / "video" / "mpg_6000" / f"{stem}.mpg", pixels, codec="mpeg1video")
                align = root / "alignments" / f"s{speaker}" / f"{stem}.align"
            align.parent.mkdir(parents=True, exist_ok=True)
            align.write_text(align_text(words, frames))
            sentences[f"s{speaker}/{stem}"] = " ".join(words)
    first = speakers[0]
    broken = root / f"s{first}" / "video" / "mpg_6000" / "bbbz9x.mpg"
    broken.write_bytes(b"\x00\x00\x01\xba not really mpeg")
    (root / "alignments" / f"s{first}" / "bbbz9x.align").write_text(align_text(["bin", "blue", "by", "z", "nine", "again"], frames))
    (root / "alignments" / f"s{first}" / "lost.align").write_text(align_text(["set", "red", "at", "a", "one", "now"], frames))
    return {"sentences": sentences, "broken": f"s{first}/bbbz9x"}


# ---------------------------------------------------------------------------------------------------------
# PHOENIX-2014 and PHOENIX-2014-T

# Raw annotations as published (special tokens, prefixes, spelled letters, repetitions) and what the official
# evaluation's normalisation makes of them.
PHOENIX_2014 = {
    "train": [
        ("__ON__ loc-NORD REGEN __EMOTION__ WIND __OFF__", "__ON__ NORD REGEN WIND __OFF__"),
        ("__ON__ MORGEN cl-KOMMEN S0NNE __OFF__", "__ON__ MORGEN KOMMEN SONNE __OFF__"),
        ("poss-EUCH REGEN-PLUSPLUS REGEN NORDRAUM __PU__", "EUCH REGEN NORD"),
        ("__ON__ A B C WIND __LEFTHAND__ HABEN2 __OFF__", "__ON__ A+B+C WIND HABEN __OFF__"),
    ],
    "dev": [("__ON__ REGEN WIND WIE AUSSEHEN __OFF__", "__ON__ REGEN WIND WIE-AUSSEHEN __OFF__"),
            ("MORGEN SONNE __EPENTHESIS__ NEBEL", "MORGEN SONNE NEBEL")],  # NEBEL: not in train
    "test": [("__ON__ NORD WIND __OFF__", "__ON__ NORD WIND __OFF__"),
             ("ZEIGEN MORGEN", "ZEIGEN-BILDSCHIRM MORGEN")],
}
PHOENIX_2014T = {
    "train": [("JETZT WETTER MORGEN loc-NORD REGEN", "JETZT WETTER MORGEN NORD REGEN"),
              ("__ON__ cl-KOMMEN SONNE SONNE __OFF__", "KOMMEN SONNE"),
              ("REGEN-PLUSPLUS WIND __EMOTION__ WESTRAUM", "REGEN WIND WEST"),
              ("MORGEN A S WIND", "MORGEN A+S WIND")],
    "dev": [("JETZT REGEN WIND", "JETZT REGEN WIND"), ("SONNE NEBEL", "SONNE NEBEL")],
    "test": [("WETTER MORGEN SONNE", "WETTER MORGEN SONNE"), ("NORD REGEN", "NORD REGEN")],
}


def write_phoenix2014(root: Path, frames: int = 12, height: int = 32, width: int = 26) -> dict:
    """``root/phoenix-2014-multisigner/`` with ``annotations/manual/{train,dev,test}.corpus.csv`` and frames
    ``features/fullFrame-210x260px/<split>/<id>/1/<id>.avi_pid0_fn<NNNNNN>-0.png`` (the folder column is the
    published glob ``<id>/1/*.png``). The first test clip's folder is missing. Returns the expected clips."""
    base = Path(root) / "phoenix-2014-multisigner"
    expected = {}
    for split, rows in PHOENIX_2014.items():
        lines = ["id|folder|signer|annotation"]
        for i, (raw, normalised) in enumerate(rows):
            name = f"{i + 1:02d}April_2010_Thursday_{split}_default-{i}"
            lines.append(f"{name}|{name}/1/*.png|Signer0{i + 1}|{raw}")
            if not (split == "test" and i == 0):
                write_frames(base / "features" / "fullFrame-210x260px" / split / name / "1",
                             frames_for(name, frames + i, height, width), name + ".avi_pid0_fn{:06d}-0.png")
            expected[name] = {"split": split, "raw": raw, "glosses": normalised.split(), "frames": frames + i,
                              "signer": f"Signer0{i + 1}", "missing": split == "test" and i == 0}
        folder = base / "annotations" / "manual"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{split}.corpus.csv").write_text("\n".join(lines) + "\n")
    return expected


def write_phoenix2014t(root: Path, frames: int = 12, height: int = 32, width: int = 26) -> dict:
    """``root/PHOENIX-2014-T/`` with ``annotations/manual/PHOENIX-2014-T.{train,dev,test}.corpus.csv`` and frames
    ``features/fullFrame-210x260px/<split>/<name>/images<NNNN>.png``. Returns the expected clips."""
    base = Path(root) / "PHOENIX-2014-T"
    expected = {}
    for split, rows in PHOENIX_2014T.items():
        lines = ["name|video|start|end|speaker|orth|translation"]
        for i, (raw, normalised) in enumerate(rows):
            name = f"25October_2010_Monday_tagesschau_{split}-{i}"
            lines.append(f"{name}|{name}/1/*.png|-1|-1|Signer0{i + 4}|{raw}|und nun die wettervorhersage")
            write_frames(base / "features" / "fullFrame-210x260px" / split / name,
                         frames_for(name, frames + i, height, width), "images{:04d}.png")
            expected[name] = {"split": split, "raw": raw, "glosses": normalised.split(), "frames": frames + i,
                              "signer": f"Signer0{i + 4}"}
        folder = base / "annotations" / "manual"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"PHOENIX-2014-T.{split}.corpus.csv").write_text("\n".join(lines) + "\n")
    return expected
