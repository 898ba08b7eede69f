"""SyntheticActions: procedurally generated videos labelled only by ordered action transcripts.

A clip shows one sprite (bar, triangle, ellipse or L; random colour, size and position) over a
noisy gradient background performing 2-6 primitive actions in sequence. Training sees only the
transcript (e.g. ``move_left rotate blink``); per-frame labels are kept for evaluation. Every clip
is a pure function of (seed, split, index) through NumPy's PCG64, so it is identical on any machine
and never stored on disk.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

from ..data import BLANK_LABEL

ACTIONS = ("stay", "move_left", "move_right", "move_up", "move_down", "grow", "shrink", "rotate", "blink")
SHAPES = ("bar", "triangle", "ellipse", "ell")
SPLITS = {"train": 0, "val": 1, "test": 2}
MIN_SEGMENT = 8          # frames; short enough to be hard, long enough to be seen
POSITION_RANGE = (0.15, 0.85)
SIZE_RANGE = (0.05, 0.3)  # half-extent, as a fraction of the frame


def plan_durations(rng: np.random.Generator, min_frames: int, max_frames: int) -> list[int]:
    """Durations of 2-6 segments, each at least MIN_SEGMENT frames, summing to [min_frames, max_frames]."""
    count = int(rng.integers(2, min(6, max_frames // MIN_SEGMENT) + 1))
    low = max(min_frames, MIN_SEGMENT * count)
    total = int(rng.integers(low, max(max_frames, low) + 1))
    extra = rng.multinomial(total - MIN_SEGMENT * count, rng.dirichlet(np.full(count, 2.0)))
    return [MIN_SEGMENT + int(e) for e in extra]


def simulate(rng: np.random.Generator, durations: list[int]) -> tuple[list[int], dict]:
    """Choose a feasible action per segment (never the previous one, so the transcript is exactly
    the collapsed frame labels) and roll the sprite state forward frame by frame."""
    x, y = rng.uniform(*POSITION_RANGE, size=2)
    size = rng.uniform(0.1, 0.18)
    angle = rng.uniform(0, math.pi)
    spin_direction = rng.choice([-1, 1])
    period = int(rng.integers(2, 4))           # blink: frames on, then frames off
    actions, track = [], {k: [] for k in ("x", "y", "size", "angle", "visible")}
    previous = None
    for d in durations:
        # Each action covers a clearly visible amount per segment whatever its duration, so a short
        # segment is fast and a long one slow: speed is part of the nuisance the model must ignore.
        distance = rng.uniform(0.3, 0.45)      # frame widths moved
        growth = rng.uniform(2.0, 2.5) ** (1 / d)  # size factor per frame
        spin = spin_direction * rng.uniform(0.75, 1.25) * math.pi / d  # radians per frame
        step = distance / d
        lo, hi = POSITION_RANGE
        feasible = {
            "stay": True, "rotate": True, "blink": True,
            "move_left": x - distance >= lo, "move_right": x + distance <= hi,
            "move_up": y - distance >= lo, "move_down": y + distance <= hi,
            "grow": size * growth ** d <= SIZE_RANGE[1], "shrink": size / growth ** d >= SIZE_RANGE[0],
        }
        choices = [i for i, a in enumerate(ACTIONS) if feasible[a] and i != previous]
        action = int(rng.choice(choices))
        name = ACTIONS[action]
        for t in range(d):
            x += {"move_left": -step, "move_right": step}.get(name, 0.0)
            y += {"move_up": -step, "move_down": step}.get(name, 0.0)
            size *= {"grow": growth, "shrink": 1 / growth}.get(name, 1.0)
            angle += spin if name == "rotate" else 0.0
            visible = (t // period) % 2 == 0 if name == "blink" else True
            for key, value in zip(track, (x, y, size, angle, visible)):
                track[key].append(value)
        actions.append(action)
        previous = action
    return actions, {k: np.asarray(v) for k, v in track.items()}


def sprite_distance(shape: str, u: np.ndarray, v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Approximate signed distance to the sprite's edge (negative inside), in its rotated frame (u, v).
    Every shape changes under rotation, so "rotate" is visible."""
    def box(cu, cv, half_u, half_v):
        return np.maximum(np.abs(u - cu) - half_u, np.abs(v - cv) - half_v)
    if shape == "bar":
        return box(0, 0, r, 0.4 * r)
    if shape == "triangle":
        return np.maximum(v - r, (np.abs(u) - 0.5 * (v + r)) / 1.118)
    if shape == "ellipse":
        return (np.sqrt((u / r) ** 2 + (v / (0.45 * r)) ** 2) - 1) * 0.45 * r
    arm = 0.4 * r  # "ell": a long arm and a short arm meeting at a corner
    return np.minimum(box(0, r - arm, r, arm), box(-r + arm, 0, arm, r))


def render(rng: np.random.Generator, track: dict, frame_size: int, noise: float) -> np.ndarray:
    """(T, 3, S, S) float32 frames in [0, 1] (before noise) for a sprite track."""
    steps = len(track["x"])
    grid = (np.arange(frame_size) + 0.5) / frame_size
    dx = grid[None, None, :] - track["x"][:, None, None]           # (T, 1, S)
    dy = grid[None, :, None] - track["y"][:, None, None]           # (T, S, 1)
    cos, sin = np.cos(track["angle"])[:, None, None], np.sin(track["angle"])[:, None, None]
    u, v = cos * dx + sin * dy, cos * dy - sin * dx                 # (T, S, S)
    distance = sprite_distance(str(rng.choice(SHAPES)), u, v, track["size"][:, None, None])
    # Anti-aliased coverage: sub-pixel motion changes pixel values instead of jumping a pixel at a time.
    mask = np.clip(0.5 - distance * frame_size, 0.0, 1.0) * track["visible"][:, None, None]
    # The sprite is brighter than the background in every channel, whatever the two colours are.
    background = rng.uniform(0.0, 0.3, size=(3, 1, 1)) + rng.uniform(-0.1, 0.1, size=(3, 1, 1)) * grid[None, :, None]
    colour = rng.uniform(0.55, 1.0, size=(3, 1, 1))
    frames = mask[:, None] * colour[None] + (1.0 - mask[:, None]) * background[None]
    frames = frames + rng.normal(0.0, noise, size=(steps, 3, frame_size, frame_size))
    return frames.astype(np.float32)


class SyntheticActions(Dataset):
    """Seeded on-the-fly action videos. Item: ``input`` (T, 3, S, S), ``target`` (action indices,
    1-based since 0 is blank), ``frame_labels`` (T,) for evaluation only."""

    def __init__(self, split: str = "train", size: int = 2000, frame_size: int = 32, min_frames: int = 40,
                 max_frames: int = 150, noise: float = 0.05, seed: int = 0):
        if split not in SPLITS:
            raise ValueError(f"SyntheticActions has splits {list(SPLITS)}, not {split!r}")
        if size <= 0 or frame_size < 8 or not 2 * MIN_SEGMENT <= min_frames <= max_frames:
            raise ValueError(f"SyntheticActions needs size > 0, frame_size >= 8 and "
                             f"{2 * MIN_SEGMENT} <= min_frames <= max_frames (got {size}, {frame_size}, "
                             f"{min_frames}, {max_frames})")
        self.split, self.size, self.frame_size = split, size, frame_size
        self.min_frames, self.max_frames, self.noise, self.seed = min_frames, max_frames, noise, seed
        self.labels = [BLANK_LABEL, *ACTIONS]
        self.input_spec = {"modality": "video", "step_shape": [3, frame_size, frame_size], "fps": 25,
                           "value_range": [0.0, 1.0], "source": "SyntheticActions"}

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < self.size:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, SPLITS[self.split], index])
        durations = plan_durations(rng, self.min_frames, self.max_frames)
        actions, track = simulate(rng, durations)
        frames = render(rng, track, self.frame_size, self.noise)
        frame_labels = [a + 1 for a, d in zip(actions, durations) for _ in range(d)]
        return {"id": f"{self.split}_{index:05d}", "input": torch.from_numpy(frames),
                "target": [a + 1 for a in actions], "frame_labels": frame_labels}
