"""The one model contract: frontend -> RNN encoder -> linear CTC head.

``model(x, lengths) -> (log_probs (B, T', V), out_lengths (B,))``, blank = index 0.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...);
modalities subclass :class:`Frontend`.
"""
from __future__ import annotations

import torch
from torch import nn

from .encoder import EncoderConfig, build_encoder
from .streaming import NotStreamableError, State

BLANK = 0


def conv_output_lengths(lengths: torch.Tensor, kernel: int, stride: int = 1, padding: int = 0,
                        dilation: int = 1) -> torch.Tensor:
    """Output length of a 1-D convolution or pooling along time, as torch computes it.

    >>> conv_output_lengths(torch.tensor([1, 9, 10]), kernel=3, stride=2, padding=1).tolist()
    [1, 5, 5]
    """
    return torch.div(lengths + 2 * padding - dilation * (kernel - 1) - 1, stride, rounding_mode="floor") + 1


class Frontend(nn.Module):
    """Maps each time step to a feature vector: (B, T, *step_shape) -> (B, T', out_dim).

    Subclasses set ``out_dim`` and, when they subsample time, ``stride`` and :meth:`output_lengths`
    (the CTC feasibility check relies on it being exact). Output frame j is taken to be centred on
    input frame ``j * stride`` (true for centred, zero-padded convolutions and poolings).
    """

    out_dim: int
    stride: int = 1
    causal: bool = False  # output j reads input steps up to j * stride only: it can run on a live stream

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        return lengths

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def initial_state(self, batch: int, device=None, dtype=None) -> State:
        """What :meth:`stream` carries from chunk to chunk at the start of a stream (causal frontends only)."""
        raise NotStreamableError(f"{type(self).__name__} is not causal (it reads future input steps), so it "
                                 f"cannot stream")

    def stream(self, x: torch.Tensor, state: State, final: bool) -> torch.Tensor:  # pragma: no cover
        """(B, n, *step) next input steps -> (B, n', out_dim) the output frames they complete; ``state`` is
        updated in place with new tensors. Over any chunking, the frames equal :meth:`forward`'s."""
        raise NotStreamableError(f"{type(self).__name__} cannot stream")


def dnn_block(in_dim: int, out_dim: int, dropout: float) -> nn.Sequential:
    """Linear -> LayerNorm -> LeakyReLU -> dropout: a per-frame DNN layer (CRDNN's "DNN" part).
    LayerNorm rather than BatchNorm so a frame's output never depends on the padding beside it."""
    return nn.Sequential(nn.Linear(in_dim, out_dim), nn.LayerNorm(out_dim), nn.LeakyReLU(), nn.Dropout(dropout))


class CTCModel(nn.Module):
    """frontend -> RNN encoder -> [per-frame DNN layers] -> linear head -> log-softmax over V (blank = 0).

    With ``aux_ctc_weight`` > 0 a second linear CTC head reads the frontend's output directly (the
    auxiliary CTC loss of VAC-style sign-language models, which makes the visual features themselves
    discriminative); in training mode its log-probs are left in ``aux_output`` for the trainer, which
    adds ``aux_ctc_weight`` x its CTC loss. The model contract (what ``forward`` returns) is unchanged.
    """

    def __init__(self, frontend: Frontend, encoder: EncoderConfig, num_classes: int,
                 head_hidden: tuple[int, ...] = (), head_dropout: float = 0.0, aux_ctc_weight: float = 0.0):
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a CTC model needs blank plus at least one label, got num_classes={num_classes}")
        self.frontend = frontend
        self.encoder = build_encoder(frontend.out_dim, encoder)
        dims = [self.encoder.out_dim, *head_hidden]
        self.dnn = nn.Sequential(*(dnn_block(a, b, head_dropout) for a, b in zip(dims, dims[1:])))
        self.head = nn.Linear(dims[-1], num_classes)
        self.num_classes = num_classes
        self.aux_ctc_weight = aux_ctc_weight
        self.aux_head = nn.Linear(frontend.out_dim, num_classes) if aux_ctc_weight > 0 else None
        self.aux_output: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def streamable(self) -> bool:
        """A causal frontend and a unidirectional encoder: :meth:`stream` gives what :meth:`forward` gives."""
        return self.frontend.causal and getattr(self.encoder, "causal", False)

    @property
    def stream_delay(self) -> int:
        """Output frames a stream gives before output frame 0 (the encoder's lookahead), to be dropped."""
        lookahead = getattr(self.encoder, "lookahead", None)
        return lookahead.frames if lookahead is not None else 0

    def latency(self) -> dict:
        """Algorithmic latency in input steps, beyond the preprocessing's own (e.g. an audio feature window):
        ``lookahead_steps`` of future input an output frame waits for, and ``frame_steps`` per output frame."""
        return {"causal": self.streamable, "lookahead_steps": self.stream_delay * self.frontend.stride,
                "frame_steps": self.frontend.stride}

    def initial_state(self, batch: int = 1, device=None, dtype=None) -> dict[str, State]:
        """The state of B new streams: ``{"frontend": {...}, "encoder": {...}}`` of tensors."""
        if not self.streamable:
            raise NotStreamableError(
                f"this model cannot stream: its {'frontend' if not self.frontend.causal else 'encoder'} reads "
                f"future input without bound (bidirectional RNN, centred convolution or self-attention)")
        return {"frontend": self.frontend.initial_state(batch, device, dtype),
                "encoder": self.encoder.initial_state(batch, device, dtype)}

    def stream(self, x: torch.Tensor, state: dict[str, State], final: bool = False) -> torch.Tensor:
        """(B, n, *step) next input steps of B streams -> (B, n', V) log-probs of the output frames they
        complete; ``state`` (from :meth:`initial_state`) is updated in place. The first :attr:`stream_delay`
        frames of a stream are not real frames (drop them); ``final`` flushes the lookahead. Concatenated
        over a stream, the frames equal :meth:`forward`'s for every chunking (eval mode)."""
        features = self.frontend.stream(x, state["frontend"], final)
        return self.classify(self.encoder.stream(features, state["encoder"], final))

    def flush(self, state: dict[str, State]) -> torch.Tensor:
        """(B, stream_delay, V): the last frames of B streams, which waited for a lookahead past their end;
        what ``stream(<no steps>, state, final=True)`` gives, as a function of the lookahead buffer alone
        (``state["encoder"]["lookahead"]``)."""
        if "lookahead" not in state["encoder"]:                              # no lookahead: nothing waits
            batch = next(iter(state["encoder"].values())).shape[1]           # h0: (1, B, H)
            return torch.zeros(batch, 0, self.num_classes)
        buffer = state["encoder"]["lookahead"]                               # (B, τ, F)
        features = buffer.new_zeros(buffer.shape[0], 0, self.frontend.out_dim)
        return self.classify(self.encoder.stream(features, {"lookahead": buffer}, final=True))

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, T, encoder.out_dim) -> (B, T, V) log-probs; float32 even under mixed precision (CTC wants it)."""
        return self.head(self.dnn(hidden)).float().log_softmax(dim=-1)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out_lengths = self.frontend.output_lengths(lengths)
        features = self.frontend(x, lengths)
        if self.aux_head is not None and self.training:
            self.aux_output = (self.aux_head(features).float().log_softmax(dim=-1), out_lengths)
        return self.classify(self.encoder(features, out_lengths)), out_lengths
