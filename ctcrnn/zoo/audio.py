"""Audio architectures: 2-D conv frontend over (time, frequency) features -> stacked bidirectional RNN -> CTC.

Every entry takes ``in_shape=(F,)``, the number of feature bins per frame (the trainer passes the
dataset's ``step_shape``), and ``cell="gru" | "lstm"``, a shortcut for ``encoder={"cell": ...}``.
"""
from __future__ import annotations

from ..audio.frontends import CRDNNFrontend, DeepSpeech2Conv
from ..nn.encoder import EncoderConfig
from ..nn.model import CTCModel
from ..registry import register_model
from .common import encoder_with_cell, feature_bins


def deepspeech2_model(entry: str, num_classes: int, in_shape, conv_channels: int, freq_kernels, freq_strides,
                      time_kernels, time_strides, rnn: dict, encoder, cell: str | None,
                      lookahead: int | None = None) -> CTCModel:
    """The DeepSpeech2 conv stack -> RNN (``rnn``: cell, size, layers) -> CTC; shared by the paper-size entry,
    the CPU-sized one and their streaming twins. ``lookahead`` None: bidirectional RNN, centred convolutions;
    a number: causal convolutions, unidirectional RNN and a lookahead convolution of that many frames."""
    streaming = lookahead is not None
    frontend = DeepSpeech2Conv(feature_bins(entry, in_shape), channels=conv_channels,
                               freq_kernels=tuple(freq_kernels), freq_strides=tuple(freq_strides),
                               time_kernels=tuple(time_kernels), time_strides=tuple(time_strides), causal=streaming)
    defaults = {**rnn, "bidirectional": not streaming, "dropout": 0.0, "lookahead": lookahead or 0}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes)


@register_model
def deepspeech2(*, num_classes: int, in_shape: tuple[int] = (161,), cell: str | None = None,
                conv_channels: int = 32, freq_kernels: tuple[int, ...] = (41, 21),
                freq_strides: tuple[int, ...] = (2, 2), time_kernels: tuple[int, ...] = (11, 11),
                time_strides: tuple[int, ...] = (2, 1), encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """DeepSpeech2 (Amodei et al. 2016, "Deep Speech 2"), as configured in deepspeech.pytorch.

    161 STFT bins (20 ms windows, 10 ms hop) -> :class:`~ctcrnn.audio.frontends.DeepSpeech2Conv`
    (kernels 41x11 and 21x11 over freq x time, strides 2x2 and 2x1, 32 channels, BatchNorm,
    Hardtanh(0, 20); 32 x 41 = 1312 features per frame, time stride 2) -> 5 bidirectional LSTM layers
    x 1024 -> linear CTC head. About 120.2 M parameters with 29 classes.

    Deviations from deepspeech.pytorch (86.6 M parameters): our encoder concatenates the two
    directions (2048 features into layers 2-5) where deepspeech.pytorch sums them, and has no
    BatchNorm between RNN layers nor before the head. ``cell="gru"`` swaps in BiGRUs.
    """
    return deepspeech2_model("deepspeech2", num_classes, in_shape, conv_channels, freq_kernels, freq_strides,
                             time_kernels, time_strides, {"cell": "lstm", "hidden_size": 1024, "num_layers": 5}, encoder, cell)


@register_model
def deepspeech2_small(*, num_classes: int, in_shape: tuple[int] = (80,), cell: str | None = None,
                      conv_channels: int = 32, freq_kernels: tuple[int, ...] = (21, 11),
                      freq_strides: tuple[int, ...] = (2, 2), time_kernels: tuple[int, ...] = (11, 11),
                      time_strides: tuple[int, ...] = (2, 1), encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """A CPU-sized DeepSpeech2 (Amodei et al. 2016) for 40/80-bin filterbank input; not from the paper.

    The same two-layer conv stack with frequency kernels halved to 21 and 11 (filterbank bins are
    ~2x wider than 161-bin STFT bins), 32 channels (80 bins -> 40 -> 20 rows, 640 features per frame;
    40 bins -> 320), time stride 2, then 3 bidirectional GRU layers x 192 -> linear CTC head.
    About 2.4 M parameters at 80 bins, 2.1 M at 40 (29 classes). ``cell="lstm"`` swaps in BiLSTMs
    (about 3.2 M at 80 bins).
    """
    return deepspeech2_model("deepspeech2_small", num_classes, in_shape, conv_channels, freq_kernels, freq_strides,
                             time_kernels, time_strides, {"cell": "gru", "hidden_size": 192, "num_layers": 3}, encoder, cell)


@register_model
def deepspeech2_streaming(*, num_classes: int, in_shape: tuple[int] = (161,), cell: str | None = None,
                          conv_channels: int = 32, freq_kernels: tuple[int, ...] = (41, 21),
                          freq_strides: tuple[int, ...] = (2, 2), time_kernels: tuple[int, ...] = (11, 11),
                          time_strides: tuple[int, ...] = (2, 1), lookahead: int = 20,
                          encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """The streaming DeepSpeech2 (Amodei et al. 2016, section 3.5): :func:`deepspeech2`'s conv stack made
    causal (time kernels padded on the left only) -> 5 unidirectional LSTM layers x 1024 -> a lookahead
    convolution over ``lookahead`` = 20 output frames (deepspeech.pytorch's ``lookahead_context``; 400 ms at
    the 20 ms output rate) -> linear CTC head. Latency: the feature window's half (10 ms) + 400 ms.
    ``cell="gru"`` swaps in GRUs (the paper's deployed model uses GRUs).
    """
    return deepspeech2_model("deepspeech2_streaming", num_classes, in_shape, conv_channels, freq_kernels,
                             freq_strides, time_kernels, time_strides,
                             {"cell": "lstm", "hidden_size": 1024, "num_layers": 5}, encoder, cell, lookahead)


@register_model
def deepspeech2_small_streaming(*, num_classes: int, in_shape: tuple[int] = (80,), cell: str | None = None,
                                conv_channels: int = 32, freq_kernels: tuple[int, ...] = (21, 11),
                                freq_strides: tuple[int, ...] = (2, 2), time_kernels: tuple[int, ...] = (11, 11),
                                time_strides: tuple[int, ...] = (2, 1), lookahead: int = 4,
                                encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """The streaming twin of :func:`deepspeech2_small`: causal conv stack -> 3 unidirectional GRU layers x 256
    -> lookahead convolution over 4 output frames (80 ms at a 10 ms hop) -> linear CTC head. Runs live
    through :class:`ctcrnn.streaming.StreamingRecognizer`. ``cell="lstm"`` swaps in LSTMs.
    """
    return deepspeech2_model("deepspeech2_small_streaming", num_classes, in_shape, conv_channels, freq_kernels,
                             freq_strides, time_kernels, time_strides,
                             {"cell": "gru", "hidden_size": 256, "num_layers": 3}, encoder, cell, lookahead)


@register_model
def crdnn(*, num_classes: int, in_shape: tuple[int] = (40,), cell: str | None = None,
          channels: tuple[int, ...] = (128, 256), kernel_size: int = 3, freq_pooling: int = 2, time_pooling: int = 2,
          dnn_sizes: tuple[int, ...] = (512, 512), dropout: float = 0.15,
          encoder: dict | EncoderConfig | None = None) -> CTCModel:
    """CRDNN as in SpeechBrain (Ravanelli et al. 2021, "SpeechBrain"; ``speechbrain.lobes.models.CRDNN``)
    with the TIMIT CTC recipe's settings (``recipes/TIMIT/ASR/CTC/hparams/train.yaml``).

    40 fbank bins -> :class:`~ctcrnn.audio.frontends.CRDNNFrontend` (2 CNN blocks of 128 and 256
    channels, each 2 x (3x3 conv, LayerNorm, LeakyReLU), max-pool frequency by 2, Dropout2d 0.15;
    then max-pool time by 2 as the recipe's ``time_pooling: True``; 2560 features per frame) ->
    4 bidirectional GRU layers x 512 (dropout 0.15) -> 2 DNN layers x 512 (Linear, LayerNorm,
    LeakyReLU, dropout 0.15) -> linear CTC head. About 25.5 M parameters with 40 classes.

    Deviations: SpeechBrain's TIMIT recipe uses a light GRU (LiGRU) where we use a GRU (``cell="lstm"``
    for an LSTM), and BatchNorm in the DNN layers where we use LayerNorm (so padding cannot leak).
    """
    frontend = CRDNNFrontend(feature_bins("crdnn", in_shape), channels=tuple(channels), kernel_size=kernel_size,
                             freq_pooling=freq_pooling, time_pooling=time_pooling, dropout=dropout)
    defaults = {"cell": "gru", "hidden_size": 512, "num_layers": 4, "bidirectional": True, "dropout": dropout}
    return CTCModel(frontend, encoder_with_cell(defaults, encoder, cell), num_classes,
                    head_hidden=tuple(dnn_sizes), head_dropout=dropout)
