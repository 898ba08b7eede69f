"""A tiny Breakfast tree in the MS-TCN layout, written in the real on-disk formats, for tests.

``root/features/<video>.npy`` float32 (D, T); ``root/groundTruth/<video>.txt`` one label per line;
``root/splits/{train,test}.split1.bundle``; ``root/mapping.txt``. Each action has its own mean feature
vector (plus Gaussian noise), so a small model can learn them; every video is SIL, 1-2 actions, SIL,
40-66 frames.
Broken variants (missing or corrupt .npy, NaN features, a label outside the mapping, feature/label length
mismatches) are switched on by argument.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

ACTIONS = ["SIL", "take_bowl", "pour_cereals", "pour_milk", "stir_cereals", "crack_egg"]  # mapping.txt order
# Middle actions per activity (every video starts and ends with SIL).
ACTIVITIES = {"cereals": ["take_bowl", "pour_cereals"], "milk": ["pour_milk", "stir_cereals"],
              "friedegg": ["crack_egg"], "bowl": ["take_bowl", "pour_milk"]}
DIM = 16


def video_names(count: int) -> list[str]:
    kinds = list(ACTIVITIES)
    return [f"P{i + 3:02d}_cam01_P{i + 3:02d}_{kinds[i % len(kinds)]}" for i in range(count)]


def write_breakfast(root: Path, videos: int = 12, test_videos: int = 3, dim: int = DIM, seed: int = 0,
                    missing: tuple = (), corrupt: tuple = (), nan: tuple = (), unknown_label: tuple = (),
                    length_change: dict | None = None, noise: float = 0.6) -> dict:
    """Write the tree; returns {"names", "train", "test", "frames": {video: [label per frame]}, "means"}.

    missing / corrupt / nan / unknown_label: video names whose .npy is absent / not a .npy file / holds NaNs /
    whose ground truth has a label ("spill_milk") not in the mapping. length_change: {video: n} writes n more
    (or, negative, fewer) feature frames than ground-truth frames.
    """
    rng = np.random.default_rng(seed)                 # layout: means, segment lengths
    noise_rng = np.random.default_rng(seed + 1)       # noise: so the layout never depends on the broken variants
    means = rng.normal(0.0, 1.5, size=(len(ACTIONS), dim)).astype(np.float32)
    for folder in ("features", "groundTruth", "splits"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "mapping.txt").write_text("".join(f"{i} {a}\n" for i, a in enumerate(ACTIONS)))
    names, frames_by_video, length_change = video_names(videos), {}, length_change or {}
    for name in names:
        middle = ACTIVITIES[name.rsplit("_", 1)[1]]
        runs = [("SIL", int(rng.integers(5, 9)))] + [(a, int(rng.integers(30, 51)) // len(middle)) for a in middle]
        runs.append(("SIL", int(rng.integers(5, 9))))
        frames = [a for a, n in runs for _ in range(n)]
        frames_by_video[name] = frames
        gt = list(frames)
        if name in unknown_label:
            gt[len(gt) // 2] = "spill_milk"
        (root / "groundTruth" / f"{name}.txt").write_text("".join(f"{a}\n" for a in gt))
        feature_frames = frames + [frames[-1]] * max(0, length_change.get(name, 0))
        if length_change.get(name, 0) < 0:
            feature_frames = frames[: len(frames) + length_change[name]]
        ids = np.array([ACTIONS.index(a) for a in feature_frames])
        features = (means[ids] + noise * noise_rng.normal(size=(len(ids), dim))).astype(np.float32).T   # (D, T)
        if name in nan:
            features[3, 5] = np.nan
        path = root / "features" / f"{name}.npy"
        if name in corrupt:
            path.write_text("not a numpy file")
        elif name not in missing:
            np.save(path, features)
    train, test = names[: videos - test_videos], names[videos - test_videos:]
    (root / "splits" / "train.split1.bundle").write_text("".join(f"{n}.txt\n" for n in train))
    (root / "splits" / "test.split1.bundle").write_text("".join(f"{n}.txt\n" for n in test))
    return {"names": names, "train": train, "test": test, "frames": frames_by_video, "means": means}


def mstcn_read_recognition(path: Path) -> list[str]:
    """How MS-TCN's eval.py reads a result file: ``read_file(path).split('\\n')[1].split()``."""
    with open(path) as f:
        return f.read().split("\n")[1].split()


def mstcn_scores(recognized: list[list[str]], ground_truth: list[list[str]]) -> dict:
    """MS-TCN's eval.py scores re-implemented (bg_class ["background"], so SIL counts): Acc over all frames,
    Edit as the mean of per-video normalised Levenshtein scores, F1@{10,25,50} from summed TP/FP/FN."""

    def segments(labels):
        out = []
        for i, label in enumerate(labels):
            if i == 0 or label != labels[i - 1]:
                out.append([label, i, i + 1])
            else:
                out[-1][2] = i + 1
        return out

    def levenshtein(p, y):
        d = np.zeros((len(p) + 1, len(y) + 1))
        d[:, 0], d[0, :] = np.arange(len(p) + 1), np.arange(len(y) + 1)
        for j in range(1, len(y) + 1):
            for i in range(1, len(p) + 1):
                d[i, j] = d[i - 1, j - 1] if y[j - 1] == p[i - 1] else min(d[i - 1, j], d[i, j - 1], d[i - 1, j - 1]) + 1
        return (1 - d[-1, -1] / max(len(p), len(y))) * 100

    correct = total = edit = 0.0
    counts = {k: np.zeros(3) for k in (10, 25, 50)}
    for rec, gt in zip(recognized, ground_truth):
        total += len(gt)
        correct += sum(g == r for g, r in zip(gt, rec))
        p, y = segments(rec), segments(gt)
        edit += levenshtein([s[0] for s in p], [s[0] for s in y])
        for k in counts:
            hits, tp, fp = np.zeros(len(y)), 0, 0
            for label, start, end in p:
                ys, ye = np.array([s[1] for s in y]), np.array([s[2] for s in y])
                iou = (np.minimum(end, ye) - np.maximum(start, ys)) / (np.maximum(end, ye) - np.minimum(start, ys))
                iou = iou * np.array([s[0] == label for s in y])
                best = int(iou.argmax())
                if iou[best] >= k / 100 and not hits[best]:
                    tp, hits[best] = tp + 1, 1
                else:
                    fp += 1
            counts[k] += [tp, fp, len(y) - hits.sum()]
    scores = {"acc": 100 * correct / total, "edit": edit / len(recognized)}
    for k, (tp, fp, fn) in counts.items():
        precision, recall = tp / max(tp + fp, 1e-12), tp / max(tp + fn, 1e-12)
        scores[f"f1@{k}"] = 100 * 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return scores
