"""Evaluation: scoring a checkpoint on a split (reports and plots), transcription and alignment of files,
and LM weight tuning. Imports the shared modules and decoding, never the training loop."""
from .scoring import evaluate
from .lm_tuning import tune_lm
from .transcribe import Recogniser

__all__ = ["evaluate", "tune_lm", "Recogniser"]
