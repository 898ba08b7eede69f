"""Text-line architectures: a line CNN over columns of pixels -> stacked bidirectional LSTM -> CTC.

Every entry takes ``in_shape=(1, H)``, one column of a line image ``H`` pixels high (the trainer passes the
dataset's ``step_shape``), and ``cell="lstm" | "gru"``, a shortcut for ``encoder={"cell": ...}``. The
frontend's ``stride`` is the width, in pixels, of one output frame.
"""
from __future__ import annotations

from ..image.frontends import LineCNN
from ..image.rnn import ProjectedRNNStack
from ..nn.encoder import EncoderConfig
from ..nn.model import CTCModel
from ..registry import register_model
from .common import encoder_with_cell


@register_model
def crnn(*, num_classes: int, in_shape: tuple[int, int] = (1, 32), cell: str | None = None,
         rnn_projection: bool = True, encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """CRNN (Shi, Bai and Yao 2016, "An End-to-End Trainable Neural Network for Image-based Sequence
    Recognition and Its Application to Scene Text Recognition", TPAMI), its Table 1.

    32-pixel-high grey lines -> :class:`~ctcrnn.image.frontends.LineCNN`: seven 3x3 convolutions (the last
    2x2, unpadded) of 64, 128, 256, 256, 512, 512, 512 channels with ReLU, BatchNorm after the 5th and 6th,
    max-pooling 2x2 after the 1st and 2nd and 2x1 (rows only) after the 4th and 6th: the rows go 32 -> 16 -> 8
    -> 4 -> 2 -> 1 and each frame is 4 pixels of width (512 features) -> 2 bidirectional LSTM layers x 256,
    each followed by a linear layer (``rnn_projection``; the second one is the CTC head) -> CTC. About 8.33 M
    parameters with the paper's 37 classes (36 alphanumerics + blank), as the paper states (8.3 M).

    Deviations: the last convolution's window, two columns wide, is given one blank column on the right, so
    a line W pixels wide gives exactly W // 4 frames (the paper's pooling padding gives W / 4 + 1).
    ``rnn_projection=False`` uses the plain stack instead (512 features into the second layer; 8.72 M).
    """
    frontend = LineCNN(tuple(in_shape), channels=(64, 128, 256, 256, 512, 512),
                       batch_norm=(False, False, False, False, True, True),
                       pools=((2, 2), (2, 2), None, (2, 1), None, (2, 1)), collapse="conv", collapse_channels=512)
    config = encoder_with_cell({"cell": "lstm", "hidden_size": 256, "num_layers": 2, "bidirectional": True,
                                "dropout": 0.0}, encoder, cell)
    model = CTCModel(frontend, config, num_classes)
    if rnn_projection:
        model.encoder = ProjectedRNNStack(frontend.out_dim, config)  # same out_dim: the head stays as built
    return model


@register_model
def crnn_small(*, num_classes: int, in_shape: tuple[int, int] = (1, 32), cell: str | None = None,
               channels: tuple[int, ...] = (16, 32, 64, 64, 96, 96), collapse_channels: int = 96,
               dropout: float = 0.1, encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """A CPU-sized CRNN (Shi et al. 2016) for the embedded text-line default; not from the paper.

    CRNN's layout (3x3 convolutions, max-pooling 2x2, 2x2, rows-only 2x1, 2x1, a last 2x2 convolution that
    spans the remaining two rows; 4 pixels of width per frame) with narrower layers (16, 32, 64, 64, 96, 96,
    then 96 channels: the full-resolution layers cost most on a CPU), BatchNorm after every convolution (CPU
    runs are short: it trains faster) -> 2 bidirectional LSTM layers x 128 (dropout ``dropout`` between and
    after them) -> CTC. About 0.88 M parameters with 77 classes (the synthetic lines' alphabet + blank).
    ``cell="gru"`` swaps in BiGRUs.
    """
    frontend = LineCNN(tuple(in_shape), channels=tuple(channels), batch_norm=(True,) * len(channels),
                       pools=((2, 2), (2, 2), None, (2, 1), None, (2, 1))[: len(channels)], collapse="conv",
                       collapse_channels=collapse_channels)
    defaults = {"cell": "lstm", "hidden_size": 128, "num_layers": 2, "bidirectional": True, "dropout": dropout}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes)


@register_model
def puigcerver2017(*, num_classes: int, in_shape: tuple[int, int] = (1, 128), cell: str | None = None,
                   channels: tuple[int, ...] = (16, 32, 48, 64, 80), pooled_blocks: int = 3,
                   conv_dropout: float = 0.2, dropout: float = 0.5,
                   encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """CNN + 1-D BLSTM of Puigcerver 2017 ("Are Multidimensional Recurrent Layers Really Necessary for
    Handwritten Text Recognition?", ICDAR), for IAM lines 128 pixels high.

    :class:`~ctcrnn.image.frontends.LineCNN`: 5 blocks of 3x3 convolutions with 16, 32, 48, 64, 80 filters,
    BatchNorm and LeakyReLU, 2x2 max-pooling in the first ``pooled_blocks`` = 3 (8 pixels of width per
    frame), dropout ``conv_dropout`` = 0.2 at the input of the last three; each column's 80 x 16 = 1280
    features, dropped with p = ``dropout`` -> 5 bidirectional LSTM layers x 256 with dropout 0.5 between them
    and on their output (the input of the linear layer) -> CTC. About 9.6 M parameters with IAM's 80 classes
    (79 characters + blank), as the paper's 9.6 M.
    """
    if not 0 <= pooled_blocks <= len(channels):
        raise ValueError(f"puigcerver2017: pooled_blocks must be in [0, {len(channels)}], got {pooled_blocks}")
    blocks = len(channels)
    frontend = LineCNN(tuple(in_shape), channels=tuple(channels), batch_norm=(True,) * blocks,
                       pools=tuple((2, 2) if i < pooled_blocks else None for i in range(blocks)),
                       dropouts=tuple(conv_dropout if i >= blocks - 3 else 0.0 for i in range(blocks)),
                       activation="leaky_relu", collapse="flatten", output_dropout=dropout)
    defaults = {"cell": "lstm", "hidden_size": 256, "num_layers": 5, "bidirectional": True, "dropout": dropout}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes)
