"""Video modality: per-frame CNN frontends, video datasets and their registrations.

Importing this package registers its datasets and models; the core never imports it.
"""
from ..registry import register_dataset
from .frontends import FrameCNN
from .synthetic import ACTIONS, SyntheticActions


@register_dataset
def synthetic_actions(split: str, train_size: int = 2000, val_size: int = 200, test_size: int = 200,
                      frame_size: int = 32, min_frames: int = 40, max_frames: int = 150, noise: float = 0.05,
                      seed: int = 0) -> SyntheticActions:
    """SyntheticActions with a size per split (see :class:`SyntheticActions` for the rest)."""
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    if split not in sizes:
        raise ValueError(f"synthetic_actions has splits {list(sizes)}, not {split!r}")
    return SyntheticActions(split, size=sizes[split], frame_size=frame_size, min_frames=min_frames,
                            max_frames=max_frames, noise=noise, seed=seed)


__all__ = ["ACTIONS", "FrameCNN", "SyntheticActions", "synthetic_actions"]
