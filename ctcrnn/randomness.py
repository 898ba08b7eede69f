"""Randomness: the one rule that mixes several integers into a seed (:func:`mix_seed`), per-item
generators for data augmentation (one per (seed, epoch, item)) and scalar draws from them; the run's
seeding and the RNG states a checkpoint saves and restores.

Seeding each item's augmentation by (seed, epoch, index) makes it the same in any DataLoader worker, in
any order and after a resume (the trainer passes seed and epoch through a dataset's ``set_epoch``).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import random

import numpy as np
import torch

# Multiplier i folds part i + 1 into the parts before it: primes above any epoch, item index or batch position,
# and rank met in practice, so the fold is a mixed-radix number and distinct tuples give distinct seeds.
# Changing them changes every shuffle and augmentation draw, and with them the published figures.
SEED_MULTIPLIERS = (1_000_003, 10_000_019, 1_009)
TORCH_SEEDS = 2**63  # torch.Generator.manual_seed takes [-2**63, 2**64); seeds reduced here are non-negative


def mix_seed(*parts: int, multipliers: tuple[int, ...] = SEED_MULTIPLIERS) -> int:
    """One integer from several, ``((p0 * m0 + p1) * m1 + p2) * m2 + ...``: exact, not reduced (callers that
    seed torch reduce it modulo :data:`TORCH_SEEDS`; ``random.Random`` takes any int).

    >>> mix_seed(7, 2), 7 * 1_000_003 + 2
    (7000023, 7000023)
    >>> mix_seed(7, 2, multipliers=(100_003,))
    700023
    """
    if len(parts) - 1 > len(multipliers):
        raise ValueError(f"mix_seed got {len(parts)} parts but only {len(multipliers)} multipliers")
    seed = parts[0]
    for part, multiplier in zip(parts[1:], multipliers):
        seed = seed * multiplier + part
    return seed


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU torch generator seeded by :func:`mix_seed` of ``parts`` (reduced to torch's range)."""
    return torch.Generator().manual_seed(mix_seed(*parts) % TORCH_SEEDS)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The generator of item ``index``'s augmentation in ``epoch``."""
    return seeded_generator(seed, epoch, index)


def step_seed(seed: int, epoch: int, position: int, rank: int) -> int:
    """Seed of the global RNG for one training batch of one rank (used under DDP, see the trainer)."""
    return mix_seed(seed, epoch, position, rank) % TORCH_SEEDS


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
