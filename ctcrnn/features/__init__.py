"""Features modality: precomputed per-frame features (I3D, ResNet, ...) read from .npy files.

Importing this package registers its datasets (``breakfast`` in the MS-TCN layout, ``features_manifest``)
and its file reader (a .npy file, for ``ctcrnn transcribe`` / ``align``); the core never imports it.
"""
from ..data import collapse_runs
from ..registry import register_dataset, register_reader
from . import breakfast_corpus
from . import datasets
from .datasets import (
    MSTCN_HEADER,
    UNALIGNED_LABEL,
    FeatureDataset,
    FeatureError,
    FeatureVideo,
    load_features,
    read_feature_header,
)
from .frontends import FeatureProjection

breakfast = register_dataset(breakfast_corpus.breakfast)
features_manifest = register_dataset(datasets.features_manifest)
read_features = register_reader("features")(datasets.read_features)

__all__ = [
    "MSTCN_HEADER",
    "UNALIGNED_LABEL",
    "FeatureDataset",
    "FeatureError",
    "FeatureProjection",
    "FeatureVideo",
    "breakfast",
    "collapse_runs",
    "features_manifest",
    "load_features",
    "read_feature_header",
    "read_features",
]
