"""Long input in bounded memory: live streams for causal models (``ctcrnn stream``, ``transcribe --stream``)
and overlapping windows for bidirectional ones (``transcribe --chunk-seconds``).

Windows. A bidirectional model cannot stream, but it can read a long recording window by window. Window k
*owns* the output frames of raw input ``[k·S, (k+1)·S)`` and reads ``C`` more raw units on each side, so the
frames it keeps were computed with context on both sides; S and C are whole output frames (``unit`` raw units:
audio samples per feature hop × the frontend's stride, or video frames × stride), so every output frame of
the recording is owned by exactly one window: none is duplicated or lost at a seam. The owned frames go to a
:class:`~ctcrnn.decoding.streaming.StreamingDecoder`, so the transcript is decoded once over the whole
recording (a label spanning a seam is one label) while only one window of media is held at a time.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator

import torch

from .decoding.streaming import StreamingDecoder
from .streaming import STREAM_INPUTS, StreamingRecognizer


def run_live(recognizer: StreamingRecognizer, chunks: Iterable[torch.Tensor], chunk_seconds: float | None = None,
             realtime: bool = False, on_partial: Callable[[float, str], None] | None = None) -> str:
    """Feed ``chunks`` to the recogniser, calling ``on_partial(seconds_read, text)`` whenever the best
    transcript changes; with ``realtime`` wait so chunks arrive no faster than they last. Returns the final
    transcript."""
    last, read_s, start = "", 0.0, time.perf_counter()
    rate = raw_rate(recognizer.input_spec)
    try:
        for chunk in chunks:
            text = recognizer.accept(chunk)
            read_s += chunk.shape[0] / rate
            if realtime:
                time.sleep(max(0.0, read_s - (time.perf_counter() - start)))
            if on_partial is not None and text != last:
                on_partial(read_s, text)
            last = text
    except KeyboardInterrupt:   # Ctrl-C ends a live stream: what was heard so far is still transcribed
        print(f"interrupted after {read_s:.2f} s of input: finishing the stream", file=sys.stderr, flush=True)
    return recognizer.finish()


def raw_rate(input_spec: dict) -> float:
    """Raw units per second: audio samples, or frames for modalities read frame by frame."""
    return float(input_spec.get("sample_rate") or input_spec.get("fps") or 1.0)


class WindowedTranscriber:
    """A (bidirectional) model over long input in overlapping windows; see the module docstring."""

    def __init__(self, model: torch.nn.Module, input_spec: dict, decoder=None, window_s: float = 30.0,
                 context_s: float | None = None, device: str | torch.device = "cpu"):
        modality = input_spec.get("modality")
        if modality not in STREAM_INPUTS.list():
            raise ValueError(f"--chunk-seconds reads raw {modality!r} media window by window, which this "
                             f"modality does not support (supported: {', '.join(STREAM_INPUTS.list())})")
        self.model, self.device = model.to(device).eval(), torch.device(device)
        self.input = STREAM_INPUTS.get(modality)(input_spec, windows=True)
        self.unit = self.input.raw_per_step * model.frontend.stride     # raw units per output frame
        rate = raw_rate(input_spec)
        self.step = max(1, round(window_s * rate / self.unit)) * self.unit
        context_s = window_s / 4 if context_s is None else context_s
        if not window_s > 0 or context_s < 0:
            raise ValueError(f"--chunk-seconds must be > 0 and the context >= 0, got {window_s} and {context_s}")
        self.context = round(context_s * rate / self.unit) * self.unit
        self.decoder = StreamingDecoder(decoder)

    @torch.no_grad()
    def _window_frames(self, raw: torch.Tensor) -> torch.Tensor:
        x = self.input.window_input(raw)
        log_probs, lengths = self.model(x[None].to(self.device), torch.tensor([x.shape[0]], device=self.device))
        return log_probs[0, : int(lengths[0])].cpu()

    def owned_frames(self, chunks: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Raw chunks of one recording -> each window's owned (n, V) log-probs, in order."""
        buffer, buffer_start, k, done = None, 0, 0, False
        source = iter(chunks)
        while not done:
            core_start, core_end = k * self.step, (k + 1) * self.step
            need = core_end + self.context
            # Read past `need`, not up to it: only an empty read tells that the input has ended, and the last
            # window must know it is the last (it owns the frames past the final core: audio has 1 + N // hop).
            while buffer is None or buffer_start + buffer.shape[0] <= need:
                chunk = next(source, None)
                if chunk is None:
                    done = True
                    break
                chunk = self.input.check(chunk)
                buffer = chunk if buffer is None else torch.cat([buffer, chunk])
            if buffer is None or buffer_start + buffer.shape[0] <= core_start:
                return                                        # nothing left for this window to own
            start = max(0, core_start - self.context)
            raw = buffer[start - buffer_start: need - buffer_start]
            frames = self._window_frames(raw)
            first = (core_start - start) // self.unit
            last = None if done else (core_end - start) // self.unit   # the last window owns the rest
            yield frames[first:last]
            keep_from = max(0, core_end - self.context) - buffer_start
            buffer, buffer_start = buffer[keep_from:], buffer_start + keep_from
            k += 1

    def transcribe(self, chunks: Iterable[torch.Tensor]):
        """The final hypothesis over all windows (a fresh decoder state per call)."""
        self.decoder.reset()
        for frames in self.owned_frames(chunks):
            self.decoder.accept(frames)
        return self.decoder.finish()


def print_partial(seconds: float, text: str) -> None:
    print(f"[{seconds:8.2f} s] {text}", file=sys.stderr, flush=True)


def recogniser_for(checkpoint, decoder_options: dict | None, device: str) -> StreamingRecognizer:
    options = dict(decoder_options or {})
    beam = options.pop("beam_size", 1)
    options = {k: v for k, v in options.items() if v is not None and k != "engine"}
    return StreamingRecognizer.from_checkpoint(checkpoint, beam_size=beam, device=device, **options)


def stream_files(checkpoint, files: list[str], decoder_options: dict | None = None, device: str = "cpu",
                 chunk_seconds: float = 0.08, realtime: bool = False, partials: bool = True) -> int:
    """``ctcrnn transcribe --stream``: each file read chunk by chunk as if live; partial results on stderr as
    they change, ``path<TAB>text`` on stdout. Returns the number of files that failed."""
    from .runlog import tsv_cell

    recognizer, failed = recogniser_for(checkpoint, decoder_options, device), 0
    for path in files:
        recognizer.reset()
        try:
            chunks = recognizer.input.open_file(path, chunk_seconds)
            text = run_live(recognizer, chunks, realtime=realtime, on_partial=print_partial if partials else None)
        except (OSError, ValueError) as error:
            print(f"{tsv_cell(path)}\tERROR: {error}", flush=True)
            failed += 1
            continue
        print(f"{tsv_cell(path)}\t{tsv_cell(text)}", flush=True)
    return failed


def stream_source(checkpoint, source: str, decoder_options: dict | None = None, device: str = "cpu",
                  chunk_seconds: float = 0.08, realtime: bool = False, partials: bool = True) -> str:
    """``ctcrnn stream CHECKPOINT SOURCE``: ``-`` reads raw 16-bit little-endian mono PCM at the model's sample
    rate from standard input (``arecord -f S16_LE -r 16000 | ctcrnn stream model.pt -``); anything else is a
    file read as if live. Partial results go to stderr, the final transcript to stdout."""
    recognizer = recogniser_for(checkpoint, decoder_options, device)
    if source == "-":
        chunks = recognizer.input.open_stdin(sys.stdin.buffer, chunk_seconds)
    else:
        chunks = recognizer.input.open_file(source, chunk_seconds)
    text = run_live(recognizer, chunks, realtime=realtime, on_partial=print_partial if partials else None)
    print(text, flush=True)
    return text


def transcribe_windows(checkpoint, files: list[str], decoder, device: str = "cpu", window_s: float = 30.0,
                       context_s: float | None = None) -> int:
    """``ctcrnn transcribe --chunk-seconds``: long files through a (bidirectional) model in overlapping windows,
    one window of media in memory at a time. Returns the number of files that failed."""
    from .checkpoint import load_checkpoint, model_from_checkpoint
    from .data import labels_to_text
    from .runlog import tsv_cell

    state = load_checkpoint(checkpoint)
    windows = WindowedTranscriber(model_from_checkpoint(state), state["input_spec"], decoder, window_s,
                                  context_s, device)
    failed = 0
    for path in files:
        try:
            hypothesis = windows.transcribe(windows.input.open_file(path, window_s))
        except (OSError, ValueError) as error:
            print(f"{tsv_cell(path)}\tERROR: {error}", flush=True)
            failed += 1
            continue
        print(f"{tsv_cell(path)}\t{tsv_cell(labels_to_text(hypothesis.tokens, state['labels'], state['input_spec']))}",
              flush=True)
    return failed
