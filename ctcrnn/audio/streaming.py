"""Audio as a live stream: samples chunk by chunk -> the feature frames the offline pipeline gives the whole
waveform, and raw audio sources (a file read block by block, 16-bit PCM on standard input).

Offline, frame ``t`` is centred on sample ``t · hop`` over a waveform zero-padded by ``n_fft // 2`` on both sides
(:class:`~ctcrnn.audio.features.FeatureExtractor`). Streaming keeps that padded signal's samples from the next
frame's first one on: a frame is computed as soon as its last sample (``n_fft // 2`` past its centre) has
arrived, with the same window and filterbank (the extractor's own transform, uncentred), and ``finish`` adds
the right-hand padding. Per-utterance normalisation needs the whole utterance, so a streaming model is
trained with ``features.normalize=global`` (statistics fitted on the training set) or ``none``.
"""
from __future__ import annotations

import copy
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from ..nn.streaming import NotStreamableError
from ..streaming import STREAM_INPUTS, StreamInput
from .datasets import AudioPipeline
from .features import normalize_features
from .io import AudioError, read_audio


@STREAM_INPUTS.register(name="audio")
class AudioStream(StreamInput):
    """1-D float samples at the model's sample rate, in chunks of any length -> (n, F) normalised features."""

    def __init__(self, input_spec: dict, windows: bool = False):
        super().__init__(input_spec, windows)
        self.pipeline = AudioPipeline.from_spec(input_spec)
        config = self.pipeline.features
        if config.normalize == "utterance" and not windows:
            raise NotStreamableError(
                "this model's features are normalised per utterance (features.normalize=utterance), which needs "
                "the whole recording: train the streaming model with features.normalize=global (or none)")
        self.sample_rate, self.hop, self.n_fft = config.sample_rate, config.hop_length, config.fft_size
        self.raw_per_step, self.raw_shape = self.hop, ()
        self.dtype_hint = " (16-bit PCM: divide by 32768)"
        self.lookahead_s = (self.n_fft // 2) / self.sample_rate
        self.extractor = copy.deepcopy(self.pipeline.extractor)
        spectrogram = getattr(self.extractor.transform, "spectrogram", self.extractor.transform)
        spectrogram.center = False   # the buffer below carries the centring padding itself
        self.reset()

    def describe(self) -> str:
        return f"mono float samples (N,) at {self.sample_rate} Hz, in [-1, 1] (average the channels first)"

    def reset(self) -> None:
        self.buffer = torch.zeros(self.n_fft // 2)   # the left half of the centring padding
        self.samples = 0

    def accept(self, chunk: torch.Tensor) -> torch.Tensor:
        chunk = self.check(chunk)
        self.buffer = torch.cat([self.buffer, chunk])
        self.samples += chunk.numel()
        return self._frames()

    def finish(self) -> torch.Tensor:
        if not self.samples:   # offline, an empty waveform has no frames at all
            return torch.zeros(0, self.pipeline.extractor.feature_dim)
        self.buffer = torch.cat([self.buffer, torch.zeros(self.n_fft // 2)])
        return self._frames()

    def _frames(self) -> torch.Tensor:
        """Every frame whose samples have all arrived; the buffer keeps the samples from the next frame on."""
        count = (self.buffer.numel() - self.n_fft) // self.hop + 1 if self.buffer.numel() >= self.n_fft else 0
        if not count:
            return torch.zeros(0, self.pipeline.extractor.feature_dim)
        feats = normalize_features(self.extractor(self.buffer[: (count - 1) * self.hop + self.n_fft]),
                                   self.pipeline.features.normalize, self.pipeline.stats)
        if not torch.isfinite(feats).all():   # finite samples whose power overflows float32 (|x| ~ 1e19 and up)
            raise ValueError(f"the chunk's samples are too large (up to {self.buffer.abs().max():.3g}; audio is "
                             f"expected in [-1, 1]): their features overflow, so the chunk is refused")
        self.buffer = self.buffer[count * self.hop:]
        return feats

    def window_input(self, raw: torch.Tensor) -> torch.Tensor:
        return self.pipeline(raw.float())

    def open_file(self, path: str | Path, chunk_seconds: float) -> Iterator[torch.Tensor]:
        return file_chunks(path, self.sample_rate, chunk_seconds)

    def open_stdin(self, stream, chunk_seconds: float) -> Iterator[torch.Tensor]:
        return pcm_chunks(stream, max(1, round(chunk_seconds * self.sample_rate)))


def file_chunks(path: str | Path, sample_rate: int, chunk_seconds: float) -> Iterator[torch.Tensor]:
    """A file's mono samples at ``sample_rate`` in chunks of ``chunk_seconds``, read block by block when the
    file already has that rate (memory stays bounded), otherwise read whole and resampled. A file cut short
    of the samples its header declares, or holding none, is an :class:`AudioError` (as offline)."""
    import soundfile as sf

    size = max(1, round(chunk_seconds * sample_rate))
    try:
        info = sf.info(str(path))
    except (RuntimeError, sf.LibsndfileError) as error:
        raise AudioError(f"{path}: cannot read audio ({error})") from None
    if info.samplerate != sample_rate:
        wave = read_audio(path, sample_rate)
        yield from wave.split(size)
        return
    samples = 0
    for block in sf.blocks(str(path), blocksize=size, dtype="float32", always_2d=True):
        samples += block.shape[0]
        yield torch.from_numpy(block.mean(axis=1))
    if samples < max(1, info.frames):   # refused as the offline reader refuses them
        raise AudioError(f"{path}: " + (f"truncated: {samples} of the {info.frames} samples its header declares "
                                        f"could be read" if samples else "no audio samples"))


def pcm_chunks(stream, chunk_samples: int) -> Iterator[torch.Tensor]:
    """Raw signed 16-bit little-endian mono PCM (``arecord -f S16_LE``) from a binary stream -> float chunks."""
    pending = b""
    while True:
        data = stream.read(2 * chunk_samples)
        if not data:
            break
        data, pending = pending + data, b""
        if len(data) % 2:            # half a sample: keep it for the next read
            data, pending = data[:-1], data[-1:]
        yield torch.from_numpy(np.frombuffer(data, dtype="<i2").astype(np.float32) / 32768.0)
    if pending:
        print("warning: the PCM stream ended in the middle of a sample; the odd byte was dropped", file=sys.stderr)
