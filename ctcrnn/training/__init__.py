"""Training: the loop (run preparation, one epoch, end of epoch), optimizer steps with accumulation and
mixed precision, torchrun DDP, and the resume side of checkpoints. Imports the shared modules below it,
never evaluation."""
from .trainer import train

__all__ = ["train"]
