"""Audio modality: reading audio, features, augmentation, frontends and audio datasets.

Importing this package registers its datasets (``audio_manifest``, ``librispeech``, ``synthetic_dtmf``) and
its file reader (for ``ctcrnn transcribe`` / ``align``); the core never imports it.
"""
from pathlib import Path

import torch

from ..registry import register_dataset, register_reader
from . import datasets, deployment, streaming  # noqa: F401  (in-graph features for export, waveform input; live input)
from .datasets import AudioDataset, AudioPipeline
from .features import FeatureConfig, FeatureExtractor
from .io import AudioError, audio_info, read_audio

audio_manifest = register_dataset(datasets.audio_manifest)
librispeech = register_dataset(datasets.librispeech)
synthetic_dtmf = register_dataset(datasets.synthetic_dtmf)


@register_reader("audio")
def read_features(path: str | Path, input_spec: dict) -> torch.Tensor:
    """One audio file as a checkpoint's model input (T, F): resampled, featurised and normalised as in training."""
    return AudioPipeline.from_spec(input_spec)(read_audio(path, input_spec["sample_rate"]))


__all__ = [
    "AudioDataset",
    "AudioError",
    "AudioPipeline",
    "FeatureConfig",
    "FeatureExtractor",
    "audio_info",
    "audio_manifest",
    "librispeech",
    "read_audio",
    "read_features",
    "synthetic_dtmf",
]
