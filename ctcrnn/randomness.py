"""Per-item randomness for data augmentation: one generator per (seed, epoch, item), and scalar draws from it.

Seeding each item's augmentation by (seed, epoch, index) makes it the same in any DataLoader worker, in
any order and after a resume (the trainer passes seed and epoch through a dataset's ``set_epoch``).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

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
