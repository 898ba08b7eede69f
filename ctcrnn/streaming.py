"""Live recognition: a causal model run on a stream, chunk by chunk, in constant memory.

``StreamingRecognizer.from_checkpoint(path)`` rebuilds a ``*_streaming`` model from a checkpoint or bundle and
carries everything the offline path uses from one chunk to the next: the modality's preprocessing state (an
audio feature window's overlap, the previous video frame), every causal convolution's context, the RNN
hidden states, the lookahead buffer, and the decoder's beams (with LM fusion). ``accept(chunk)`` returns the
best transcript so far, ``finish()`` the final one, which equals the offline model's on the whole input for
every chunking (``tests/test_streaming.py``).

A modality that can stream registers a :class:`StreamInput` class in :data:`STREAM_INPUTS`: it turns raw
chunks (audio samples, video frames) into model input steps. Core module: must never import a modality
package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .data import labels_to_text
from .decoding.streaming import StreamingDecoder
from .nn.streaming import NotStreamableError
from .registry import MODELS, Registry

STREAM_INPUTS = Registry("stream input")  # modality -> StreamInput subclass, taking the input_spec


class StreamInput:
    """Raw chunks of one modality -> model input steps ``(n, *step_shape)``, as the offline reader makes them.

    ``check`` refuses a bad chunk before anything changes, so a refused chunk never corrupts the stream. This
    base passes chunks through (for modalities whose raw media already are model input: video frames,
    precomputed features); subclasses keep preprocessing state (audio: the feature window's overlap)."""

    raw_per_step = 1          # raw units (samples, frames) per model input step
    lookahead_s = 0.0         # seconds of future input the preprocessing waits for
    dtype_hint = ""           # added to the wrong-dtype message (how to convert)

    def __init__(self, input_spec: dict, windows: bool = False):
        # windows: only window_input will be used (long-form windows of a non-causal model), no live stream
        self.input_spec, self.windows = input_spec, windows
        self.step_shape = tuple(input_spec["step_shape"])
        self.raw_shape = self.step_shape   # one raw unit (a frame, a feature vector); audio: () for a sample

    def describe(self) -> str:
        return f"float tensors (N, {', '.join(map(str, self.step_shape))})"

    def check(self, chunk) -> torch.Tensor:
        """``chunk`` as float32 if it is N raw units of :attr:`raw_shape`, finite; else a TypeError/ValueError
        naming what is wrong (nothing about the stream has changed yet)."""
        if not isinstance(chunk, torch.Tensor):
            raise TypeError(f"a chunk must be a torch.Tensor of {self.describe()}, got {type(chunk).__name__}")
        if not chunk.is_floating_point():
            raise TypeError(f"a chunk must hold floats ({self.describe()}), got dtype {chunk.dtype}{self.dtype_hint}")
        if chunk.dim() != 1 + len(self.raw_shape) or tuple(chunk.shape[1:]) != self.raw_shape:
            raise ValueError(f"a chunk of shape {tuple(chunk.shape)} does not match this model's input: "
                             f"{self.describe()}")
        if not torch.isfinite(chunk).all():
            raise ValueError("the chunk holds NaN or infinite values: refused (the stream is unchanged)")
        return chunk.float()

    def accept(self, chunk: torch.Tensor) -> torch.Tensor:
        return self.check(chunk)

    def finish(self) -> torch.Tensor:
        return torch.zeros(0, *self.step_shape)

    def reset(self) -> None:
        pass

    def open_file(self, path: str | Path, chunk_seconds: float):
        """A file of this modality as raw chunks of about ``chunk_seconds`` (an iterator of tensors)."""
        raise NotImplementedError(f"reading {self.input_spec.get('modality')!r} files chunk by chunk")

    def open_stdin(self, stream, chunk_seconds: float):
        """Raw chunks from a binary stream (standard input)."""
        raise ValueError(f"reading a live stream from standard input needs an audio model (raw 16-bit PCM); this "
                         f"one reads {self.input_spec.get('modality')!r}: give a file instead of '-'")

    def window_input(self, raw: torch.Tensor) -> torch.Tensor:
        """A window of raw media -> model input, preprocessed as a file of its own (long-form windows)."""
        return raw.float()


@dataclass
class StreamSegment:
    label: str
    start_s: float | None   # the frame where its spike starts, in seconds (None without a frame rate)
    end_s: float | None     # greedy: the end of its run of frames; beam search: one frame after the start


class StreamingRecognizer:
    """A causal CTC model run live: ``accept(chunk) -> str`` (best transcript so far), ``finish() -> str``,
    ``reset()``, ``segments()``.

    Text is joined as ``ctcrnn transcribe`` joins it (characters for character models, labels separated by
    spaces otherwise). Partial results can still change (beam search revises; the lookahead and the decoder
    may move the last labels); the result of :meth:`finish` is final.
    """

    def __init__(self, model: torch.nn.Module, labels: list[str], input_spec: dict,
                 decoder=None, device: str | torch.device = "cpu"):
        if not getattr(model, "streamable", False):
            causal = ", ".join(MODELS.list("*_streaming")) or "none registered"
            raise NotStreamableError(
                f"this model is not causal (a bidirectional RNN or a centred convolution reads the future), so it "
                f"cannot stream; train one of the causal zoo entries instead ({causal}), or transcribe long "
                f"input in overlapping windows with `ctcrnn transcribe --chunk-seconds`")
        modality = input_spec.get("modality")
        if modality not in STREAM_INPUTS.list():
            raise NotStreamableError(f"the {modality!r} modality has no streaming input (streamable: "
                                     f"{', '.join(STREAM_INPUTS.list())})")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.labels, self.input_spec = labels, input_spec
        self.input = STREAM_INPUTS.get(modality)(input_spec)
        self.decoder = StreamingDecoder(decoder)
        fps = input_spec.get("fps")
        self.seconds_per_frame = model.frontend.stride / fps if fps else None
        self.reset()

    @classmethod
    def from_checkpoint(cls, path: str | Path, beam_size: int = 1, device: str | torch.device = "cpu",
                        **decoder_options) -> StreamingRecognizer:
        """A checkpoint or bundle folder (or a shipped bundle's name). ``beam_size`` > 1 or any decoder option
        (``lm``, ``lexicon``, ``lm_weight``, ...: see ``ctcrnn.decoding.make_decoder``) selects prefix beam
        search; otherwise greedy."""
        from .checkpoint import load_checkpoint, model_from_checkpoint
        from .decoding.factory import make_decoder, with_word_delimiter

        state = load_checkpoint(path)
        decoder = None
        if beam_size > 1 or decoder_options:
            options = with_word_delimiter(decoder_options, state["input_spec"])
            decoder = make_decoder(state["labels"], beam_size=beam_size, **options)
        return cls(model_from_checkpoint(state), state["labels"], state["input_spec"], decoder, device)

    def reset(self) -> None:
        """Start a new stream (the model, decoder and options are kept)."""
        self.input.reset()
        self.decoder.reset()
        self.state = self.model.initial_state(1, self.device)
        self.to_drop = self.model.stream_delay
        self.finished = False
        self.hypothesis = None

    def latency(self) -> dict:
        """Algorithmic latency in seconds: what the preprocessing and the model wait for before an output
        frame can be computed (add your chunk length for the delay a user sees)."""
        lookahead = self.model.latency()["lookahead_steps"]
        step_s = self.seconds_per_frame / self.model.frontend.stride if self.seconds_per_frame else None
        model_s = lookahead * step_s if step_s else None
        return {"preprocessing_s": self.input.lookahead_s, "model_lookahead_steps": lookahead,
                "model_lookahead_s": model_s,
                "total_s": None if model_s is None else self.input.lookahead_s + model_s}

    def accept(self, chunk: torch.Tensor) -> str:
        """Feed the next chunk (audio: 1-D float samples at the model's rate; video: frames (N, C, H, W));
        returns the best transcript so far."""
        if self.finished:
            raise RuntimeError("accept() after finish(): call reset() to start a new stream")
        saved = self._snapshot()
        try:
            self._run(self.input.accept(chunk), final=False)
        except Exception:
            self._restore(saved)   # a refused chunk leaves the stream as it was
            raise
        self.hypothesis = self.decoder.best()
        return self.text()

    def _snapshot(self):
        """What accept() changes before the decoder has taken the frames: the stream code replaces tensors and
        never writes into them, so shallow copies are a full snapshot (the decoder refuses bad frames itself,
        before it changes anything)."""
        return dict(vars(self.input)), {part: dict(tensors) for part, tensors in self.state.items()}, self.to_drop

    def _restore(self, saved) -> None:
        preprocessing, self.state, self.to_drop = saved
        vars(self.input).update(preprocessing)

    def finish(self) -> str:
        """Flush the preprocessing and the lookahead; returns the final transcript."""
        if self.finished:
            return self.text()
        self._run(self.input.finish(), final=True)
        self.hypothesis = self.decoder.finish()
        self.finished = True
        return self.text()

    @torch.no_grad()
    def _run(self, steps: torch.Tensor, final: bool) -> None:
        log_probs = self.model.stream(steps[None].to(self.device), self.state, final)[0].cpu()
        drop = min(self.to_drop, log_probs.shape[0])
        self.to_drop -= drop
        self.decoder.accept(log_probs[drop:])

    def tokens(self) -> list[int]:
        return list(self.hypothesis.tokens) if self.hypothesis is not None else []

    def text(self) -> str:
        return labels_to_text(self.tokens(), self.labels, self.input_spec)

    def segments(self) -> list[StreamSegment]:
        """Each label of the current best transcript with the time of its spike."""
        if self.hypothesis is None:
            return []
        spf, hyp = self.seconds_per_frame, self.hypothesis
        ends = hyp.ends if hyp.ends is not None else [start + 1 for start in hyp.starts]  # beam: the spike frame
        seconds = (lambda frame: None) if spf is None else (lambda frame: frame * spf)
        return [StreamSegment(self.labels[token], seconds(start), seconds(end))
                for token, start, end in zip(hyp.tokens, hyp.starts, ends)]
