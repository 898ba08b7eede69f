"""Randomness: per-item generators for data augmentation (one per (seed, epoch, item)) and scalar draws
from them; the run's seeding and the RNG states a checkpoint saves and restores.

Seeding each item's augmentation by (seed, epoch, index) makes it the same in any DataLoader worker, in
any order and after a resume (the trainer passes seed and epoch through a dataset's ``set_epoch``).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import random

import numpy as np
import torch


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63)


def step_seed(seed: int, epoch: int, position: int, rank: int) -> int:
    """Seed of the global RNG for one training batch of one rank (used under DDP, see the trainer)."""
    return (((seed * 1_000_003 + epoch) * 10_000_019 + position) * 1_009 + rank) % 2**63


def generator_device(generator: torch.Generator | None) -> torch.device | None:
    # Draws must happen on the generator's device (a CUDA generator cannot fill a CPU tensor).
    return generator.device if generator is not None else None


def uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    u = torch.rand((), generator=generator, dtype=torch.float64, device=generator_device(generator))
    return low + (high - low) * u.item()


def randint(high: int, generator: torch.Generator | None) -> int:
    """Uniform integer in [0, high)."""
    return int(torch.randint(high, (), generator=generator, device=generator_device(generator)).item())


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    # NumPy's legacy state holds an ndarray; store it as a tensor so weights_only loading accepts it.
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                       "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
