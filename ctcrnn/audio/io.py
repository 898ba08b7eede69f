"""Reading audio files (WAV, FLAC, OGG) into mono float32 waveforms, with errors that name the file.

Reads with ``soundfile`` (libsndfile), not ``torchaudio.load``, which needs torchcodec. Every failure is an
:class:`AudioError` naming the path, what is wrong and the fix; soundfile's own exceptions never escape.
Must never import the core training code; the core never imports this.
"""
from __future__ import annotations

import os
import stat
import struct

import numpy as np
import soundfile
import torch
import torchaudio.functional as AF

from ..data import stat_media

_FORMATS = "WAV, FLAC or OGG"


class AudioError(ValueError):
    """An audio file that cannot be used: missing, empty, not audio, truncated, silent-by-absence or corrupt."""


def _check_exists(path: str) -> None:
    status = stat_media(path, "audio file", AudioError)
    if stat.S_ISDIR(status.st_mode):
        raise AudioError(f"audio path {path} is a directory, not a file: point it at a {_FORMATS} file")
    if status.st_size == 0:
        raise AudioError(f"audio file {path} is empty (0 bytes): re-create it or drop it from the data")
    if not os.access(path, os.R_OK):  # else libsndfile's refusal reads as "not a readable audio file"
        raise AudioError(f"audio file {path} cannot be read (permission denied): check its permissions or "
                         f"its folder's")


def _not_audio(path: str, err: Exception) -> AudioError:
    return AudioError(f"{path} is not a readable audio file ({err}): expected {_FORMATS}; "
                      f"if it is audio in another container, convert it (e.g. ffmpeg -i IN OUT.flac); "
                      f"a cut-short file also fails this way, so re-copy it")


def _wav_declared_frames(path: str) -> int | None:
    """Frames the WAV ``data`` chunk header declares, or None (not RIFF/WAVE, or size unknown).

    libsndfile silently shrinks a WAV's frame count to the bytes present, so a cut-short WAV looks
    whole through ``soundfile.info``; reading the chunk headers ourselves is the only way to see it.
    """
    block_align = None
    with open(path, "rb") as f:
        head = f.read(12)
        if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        while True:
            header = f.read(8)
            if len(header) < 8:
                return None
            chunk, size = header[:4], struct.unpack("<I", header[4:])[0]
            if chunk == b"fmt ":
                fmt = f.read(size)
                if len(fmt) >= 14:
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                f.seek(size % 2, os.SEEK_CUR)  # chunks are word-aligned
            elif chunk == b"data":
                # 0 and 0xFFFFFFFF are what streaming writers leave when the length was not known.
                if not block_align or size in (0, 0xFFFFFFFF):
                    return None
                return size // block_align
            else:
                f.seek(size + size % 2, os.SEEK_CUR)


def _declared_frames(path: str, info_frames: int) -> int:
    declared = _wav_declared_frames(path)
    return info_frames if declared is None else max(declared, info_frames)


def _truncated(path: str, declared: int, decoded: int) -> AudioError:
    return AudioError(f"{path} is truncated: its header declares {declared} frames but only {decoded} "
                      f"could be decoded: re-copy or re-encode the file, or drop it from the data")


def audio_info(path: str | os.PathLike) -> tuple[int, int]:
    """``(num_samples, sample_rate)`` read from the header only (no decoding).

    Raises :class:`AudioError` for a missing, empty or non-audio file, and for a WAV whose ``data``
    chunk declares more bytes than the file holds. A cut-short FLAC/OGG is only seen by
    :func:`read_audio`, which decodes it.
    """
    path = os.fspath(path)
    _check_exists(path)
    try:
        info = soundfile.info(path)
    except Exception as err:  # libsndfile raises several types; none may escape raw
        raise _not_audio(path, err) from err
    declared = _declared_frames(path, info.frames)
    if declared > info.frames:
        raise _truncated(path, declared, info.frames)
    return info.frames, info.samplerate


def read_audio(path: str | os.PathLike, sample_rate: int | None = None) -> torch.Tensor:
    """The file as a mono float32 waveform of shape (N,), values in [-1, 1] for integer formats.

    Channels are averaged. When ``sample_rate`` differs from the file's rate the waveform is
    resampled (``torchaudio.functional.resample``, giving ``ceil(N * sample_rate / file_rate)``
    samples); ``None`` keeps the file's rate.
    """
    path = os.fspath(path)
    if sample_rate is not None and (not isinstance(sample_rate, int) or sample_rate <= 0):
        raise ValueError(f"sample_rate must be a positive int or None, got {sample_rate!r} (reading {path})")
    _check_exists(path)
    try:
        sound = soundfile.SoundFile(path)
    except Exception as err:
        raise _not_audio(path, err) from err
    with sound:
        file_rate, declared = sound.samplerate, _declared_frames(path, sound.frames)
        try:
            data = sound.read(dtype="float32", always_2d=True)
        except Exception as err:
            raise AudioError(f"{path} is truncated or corrupt: decoding failed after a valid header ({err}): "
                             f"re-copy or re-encode the file, or drop it from the data") from err
    if len(data) < declared:
        raise _truncated(path, declared, len(data))
    if len(data) == 0:
        raise AudioError(f"{path} holds no audio samples (0 frames): drop it from the data "
                         f"(an OGG cut short also reports 0 frames; re-copy it if it should hold audio)")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise AudioError(f"{path} has {bad} non-finite samples (NaN or inf): the file is corrupt; "
                         f"re-encode it from the source or drop it from the data")
    wave = torch.from_numpy(data)
    wave = wave[:, 0].contiguous() if wave.shape[1] == 1 else wave.mean(dim=1)
    if sample_rate is not None and sample_rate != file_rate:
        wave = AF.resample(wave, file_rate, sample_rate)
        if not bool(torch.isfinite(wave).all()):  # finite samples near float32's limit can overflow the filter
            raise AudioError(f"{path}: resampling from {file_rate} to {sample_rate} Hz gives NaN/inf samples (its "
                             f"samples peak at {float(np.abs(data).max()):.3g}, where audio lies in [-1, 1]): "
                             f"re-encode it from the source at a sane level or drop it from the data")
    return wave
