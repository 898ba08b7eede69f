"""Architectures over precomputed per-frame features (I3D, 2048-d): projection -> bidirectional RNN -> CTC.

Entries take ``in_shape=(D,)`` (the trainer passes the dataset's ``step_shape``) and ``cell="gru" | "lstm"``,
a shortcut for ``encoder={"cell": ...}``.
"""
from __future__ import annotations

from ..nn.encoder import EncoderConfig
from ..features import FeatureProjection
from ..nn.model import CTCModel
from ..registry import register_model
from .common import encoder_with_cell, feature_bins


@register_model
def weak_action_bigru(*, num_classes: int, in_shape: tuple[int] = (2048,), cell: str | None = None,
                      proj_dim: int = 256, kernel: int = 1, stride: int = 1, input_dropout: float = 0.25,
                      encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """Weakly supervised action labelling from transcripts: features -> projection -> 1 BiGRU x 64 -> CTC.

    The setting of ECTC (Huang et al. 2016, "Connectionist Temporal Modeling for Weakly Supervised Action
    Labeling", CTC over frames trained from the ordered action list) with the recurrent model of NN-Viterbi
    (Richard et al. 2018, "NeuralNetwork-Viterbi", one GRU layer of 64 units, also used by CDFL, Li et al. 2019).
    Input: I3D features (2048-d, RGB and flow, each frame's feature covering a 21-frame window, as in the
    MS-TCN data release) -> :class:`~ctcrnn.features.FeatureProjection` (dropout 0.25 on the input, a linear
    layer to 256, ReLU; ``kernel``/``stride`` > 1 make it a centred temporal convolution that subsamples time)
    -> one bidirectional GRU layer x 64 per direction -> linear CTC head. About 0.65 M parameters with 49
    classes (48 Breakfast actions + blank). ``cell="lstm"`` swaps in a BiLSTM.

    Deviations: NN-Viterbi reads 64-d PCA-reduced Fisher vectors of dense trajectories through a
    unidirectional GRU trained on 21-frame chunks with frame targets from a Viterbi alignment and a length
    model; we read I3D features (whose 21-frame windows stand in for the chunks) through a learnt projection
    (the 256 and the input dropout are ours), run the GRU both ways over whole videos and train with plain
    CTC, without ECTC's visual-similarity constraints. Published Breakfast MoF to compare: ECTC 27.7,
    NN-Viterbi 43.0, CDFL 50.2 (fully supervised MS-TCN 66.3).
    """
    frontend = FeatureProjection(feature_bins("weak_action_bigru", in_shape), proj_dim, kernel=kernel,
                                 stride=stride, dropout=input_dropout)
    defaults = {"cell": "gru", "hidden_size": 64, "num_layers": 1, "bidirectional": True, "dropout": 0.0}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes)
