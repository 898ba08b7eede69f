"""Video architectures: per-frame 2-D CNN or spatio-temporal 3-D CNN -> stacked bidirectional RNN -> CTC.

Every entry takes ``in_shape=(C, H, W)``, the shape of one frame.
"""
from __future__ import annotations

from ..nn.encoder import EncoderConfig
from ..nn.model import CTCModel
from ..registry import register_model
from ..video.frontends import CSLRFrontend, FrameCNN, LipNet3D
from .common import encoder_with_cell


@register_model
def frame_cnn_rnn(*, num_classes: int, in_shape: tuple[int, int, int] = (3, 32, 32), trunk: str = "small",
                  widths: tuple[int, ...] = (16, 32, 64), grid: int = 4, feature_dim: int = 128,
                  dropout: float = 0.0, weights_path: str | None = None, freeze_trunk: bool = False,
                  temporal_kernel: int = 9, temporal_stride: int = 4, frame_difference: bool = True,
                  motion_cues: bool = True, pool: str = "avgmax", input_norm: bool = True,
                  aux_ctc_weight: float = 1.0, encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """Per-frame 2D CNN -> temporal conv (kernel 9, stride 4) -> 2-layer BiGRU x 96 -> CTC, plus an
    auxiliary CTC head on the frontend output.

    The frame CNN is a small stride-2 conv stack over each frame, its difference to the previous one
    and normal-flow motion cues (standardised per channel first), pooled by mean and max over space (``pool="grid"`` keeps a coarse position grid instead,
    ``"softargmax"`` keypoint coordinates), or ``trunk="resnet18"``: torchvision's ResNet-18 with
    ``weights=None`` unless ``weights_path`` names a local state_dict. This is the default recipe for
    weakly supervised action labelling on SyntheticActions (``configs/synthetic_actions_gru.yaml``);
    ``encoder={"cell": "lstm"}`` swaps in a BiLSTM. ``motion_cues`` adds normal-flow channels (see
    :func:`ctcrnn.video.frontends.normal_flow`) and ``input_norm`` standardises the input channels.
    ``aux_ctc_weight`` (default 1) weights an auxiliary CTC loss from a linear head on the frontend output
    (as VAC does for sign language): it hands the CNN a direct, RNN-free gradient from the transcripts,
    which is what lets it learn motion direction early (README, "What to expect", measures the default
    recipe with and without it). ``aux_ctc_weight=0`` removes the head.
    """
    frontend = FrameCNN(tuple(in_shape), trunk=trunk, widths=tuple(widths), grid=grid, feature_dim=feature_dim,
                        dropout=dropout, weights_path=weights_path, freeze_trunk=freeze_trunk,
                        temporal_kernel=temporal_kernel, temporal_stride=temporal_stride,
                        frame_difference=frame_difference, motion_cues=motion_cues, pool=pool,
                        input_norm=input_norm)
    defaults = {"cell": "gru", "hidden_size": 96, "num_layers": 2, "bidirectional": True, "dropout": 0.0}
    return CTCModel(frontend, EncoderConfig.resolve(defaults, encoder), num_classes, aux_ctc_weight=aux_ctc_weight)


@register_model
def frame_cnn_rnn_streaming(*, num_classes: int, in_shape: tuple[int, int, int] = (3, 32, 32), trunk: str = "small",
                            widths: tuple[int, ...] = (16, 32, 64), grid: int = 4, feature_dim: int = 128,
                            dropout: float = 0.0, weights_path: str | None = None, freeze_trunk: bool = False,
                            temporal_kernel: int = 9, temporal_stride: int = 4, frame_difference: bool = True,
                            motion_cues: bool = True, pool: str = "avgmax", input_norm: bool = True,
                            aux_ctc_weight: float = 1.0, cell: str | None = None, lookahead: int = 1,
                            encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """Online action labelling: :func:`frame_cnn_rnn` made causal, to label a live camera feed.

    The same per-frame CNN (differences and motion cues look back one frame), a causal temporal conv
    (kernel 9 over the current and 8 past frames, stride 4) -> 2 unidirectional GRU layers x 128 -> a
    lookahead convolution over ``lookahead`` = 1 output frame (4 input frames) -> CTC head, plus the
    auxiliary CTC head in training. Latency: 4 frames of lookahead plus up to 3 frames waiting for the
    stride (about 0.23 s at 30 fps). Runs live through :class:`ctcrnn.streaming.StreamingRecognizer`;
    ``cell="lstm"`` swaps in LSTMs.
    """
    frontend = FrameCNN(tuple(in_shape), trunk=trunk, widths=tuple(widths), grid=grid, feature_dim=feature_dim,
                        dropout=dropout, weights_path=weights_path, freeze_trunk=freeze_trunk,
                        temporal_kernel=temporal_kernel, temporal_stride=temporal_stride,
                        frame_difference=frame_difference, motion_cues=motion_cues, pool=pool,
                        input_norm=input_norm, causal=True)
    defaults = {"cell": "gru", "hidden_size": 128, "num_layers": 2, "bidirectional": False, "dropout": 0.0,
                "lookahead": lookahead}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes, aux_ctc_weight=aux_ctc_weight)


@register_model
def lipnet(*, num_classes: int, in_shape: tuple[int, int, int] = (3, 50, 100), cell: str | None = None,
           dropout: float = 0.5, encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """LipNet (Assael et al. 2016, "LipNet: End-to-End Sentence-level Lipreading") for GRID sentences.

    75 frames of 50 x 100 RGB mouth crops -> :class:`~ctcrnn.video.frontends.LipNet3D` (3 x Conv3d of
    32/64/96 channels, kernels 3x5x5, 3x5x5, 3x3x3, each followed by ReLU, spatial dropout 0.5 and
    max-pooling (1, 2, 2); 96 x 3 x 6 = 1728 features per frame, time not subsampled) -> 2 bidirectional
    GRU layers x 256 -> linear CTC head (28 classes on GRID: blank, 26 letters, space). About 4.57 M
    parameters with 28 classes. ``cell="lstm"`` swaps in BiLSTMs.

    Deviations: ``dropout`` also sets the encoder's dropout (between the GRU layers and on their output,
    where VIPL's PyTorch reproduction drops after each GRU). VIPL's reproduction crops 64 x 128 (3072
    features per frame); we keep the paper's 50 x 100.
    """
    frontend = LipNet3D(tuple(in_shape), dropout=dropout)
    defaults = {"cell": "gru", "hidden_size": 256, "num_layers": 2, "bidirectional": True, "dropout": dropout}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes)


@register_model
def cslr_resnet18_bilstm(*, num_classes: int, in_shape: tuple[int, int, int] = (3, 224, 224), trunk: str = "resnet18",
                         weights_path: str | None = None, freeze_trunk: bool = False, hidden: int = 1024,
                         aux_ctc_weight: float = 1.0, cell: str | None = None,
                         encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """Continuous sign-language recognition as in VAC (Min et al. 2021, "Visual Alignment Constraint for
    Continuous Sign Language Recognition"), the baseline of the VAC/CorrNet family on PHOENIX-2014.

    224 x 224 RGB frames -> :class:`~ctcrnn.video.frontends.CSLRFrontend`: torchvision ResNet-18 per frame
    (512-d; ``weights=None`` unless ``weights_path`` names a local ImageNet state_dict, as VAC starts
    from), then K5-P2-K5-P2 temporal convs with ``hidden`` = 1024 channels (BatchNorm1d, ReLU; T' =
    ceil(T / 4) after VAC's edge padding of 6 + 6 replicated frames) -> 2 bidirectional LSTM layers x 512
    (1024 in total, dropout 0.3) -> linear CTC head, plus an auxiliary CTC head on the temporal conv
    output weighted by ``aux_ctc_weight`` (VAC's visual enhancement loss, weight 1). About 34.3 M
    parameters with 1296 classes (PHOENIX-2014's 1295 glosses + blank). ``trunk="small"`` is a CPU-sized
    stand-in CNN for tests, ``freeze_trunk`` freezes the ResNet with its BatchNorm statistics.

    Deviations: VAC's visual alignment (KL distillation between the two heads) is not implemented; the
    ResNet's BatchNorm statistics in training see every real frame once, where VAC's also see its
    replicated edge frames; our encoder also drops its output (dropout 0.3), VAC only between layers.
    """
    if hidden % 2:
        raise ValueError(f"cslr_resnet18_bilstm: hidden={hidden} is split between two LSTM directions: "
                         f"use an even size")
    frontend = CSLRFrontend(tuple(in_shape), trunk=trunk, weights_path=weights_path, freeze_trunk=freeze_trunk,
                            hidden=hidden)
    defaults = {"cell": "lstm", "hidden_size": hidden // 2, "num_layers": 2, "bidirectional": True, "dropout": 0.3}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes, aux_ctc_weight=aux_ctc_weight)
