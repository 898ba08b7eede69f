"""The model zoo: named architectures with their papers' defaults.

Importing this package registers every built-in modality and architecture (``video``: per-frame CNN
-> RNN; ``audio``: DeepSpeech2 and CRDNN over spectrogram/filterbank features; ``features``: precomputed
per-frame features (I3D) -> projection -> BiGRU, for weakly supervised action labelling); ``ctcrnn/__init__``
imports it, so ``ctcrnn.create_model(name)`` sees them all.
"""
from . import audio, features, image, video  # noqa: F401  (registers entries)
