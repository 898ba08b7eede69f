"""PHOENIX-2014 (multisigner) and PHOENIX-2014-T (continuous sign language), gloss targets, in their
published layout: corpus CSVs, 210x260 frame folders, the official evaluation's gloss normalisation, and
predictions written in the official scoring formats (.stm / .ctm). Hand/face cropping is out of scope:
``video.size`` / ``video.crop`` only resize and centre-crop whole frames. Builds on :mod:`ctcrnn.video.datasets`.
Must never import the core training code or another modality.
"""
from __future__ import annotations

import csv
import re
from itertools import groupby
from pathlib import Path

from .datasets import Clip, VideoDataset, build_video_dataset

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
