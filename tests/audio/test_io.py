"""read_audio / audio_info on fixture files written in the real formats (WAV 16-bit, FLAC, OGG, stereo,
8 kHz and 16 kHz), and an AudioError naming the file for every kind of bad file."""
import math

import numpy as np
import pytest
import soundfile
import torch

from ctcrnn.audio.io import AudioError, audio_info, read_audio


def sine(freq: float, sample_rate: int, n: int, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(n) / sample_rate)).astype(np.float32)


def write(path, data, sample_rate, subtype=None):
    soundfile.write(str(path), data, sample_rate, subtype=subtype)
    return path


@pytest.mark.parametrize("ext,subtype", [("wav", "PCM_16"), ("flac", "PCM_16"), ("ogg", "VORBIS")])
def test_formats_read_as_mono_float32(tmp_path, ext, subtype):
    data = sine(440, 16000, 4000)
    path = write(tmp_path / f"tone.{ext}", data, 16000, subtype)
    wave = read_audio(path)
    assert wave.dtype == torch.float32 and wave.shape == (4000,)
    assert audio_info(path) == (4000, 16000)
    tol = 1e-4 if subtype == "PCM_16" else 0.05  # Vorbis is lossy
    assert torch.allclose(wave, torch.from_numpy(data), atol=tol)


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_stereo_mixes_down_to_channel_mean(tmp_path, ext):
    stereo = np.stack([sine(300, 16000, 1600), sine(1000, 16000, 1600, amp=0.25)], axis=1)
    path = write(tmp_path / f"stereo.{ext}", stereo, 16000, "PCM_16")
    stored, _ = soundfile.read(str(path), dtype="float32", always_2d=True)
    assert torch.equal(read_audio(path), torch.from_numpy(stored).mean(dim=1))


def test_resample_8k_to_16k_keeps_frequency_and_length(tmp_path):
    n = 8001  # odd on purpose: the length is ceil(n * 16000 / 8000)
    path = write(tmp_path / "tone8k.wav", sine(1000, 8000, n), 8000, "PCM_16")
    assert audio_info(path) == (n, 8000)
    wave = read_audio(path, sample_rate=16000)
    assert wave.shape == (math.ceil(n * 16000 / 8000),)
    spectrum = torch.fft.rfft(wave).abs()
    peak_hz = spectrum.argmax().item() * 16000 / len(wave)
    assert abs(peak_hz - 1000) < 16000 / len(wave)  # within one FFT bin
    assert read_audio(path, sample_rate=8000).shape == (n,)
    assert read_audio(path).shape == (n,)


def test_resample_16k_to_8k_length(tmp_path):
    path = write(tmp_path / "tone16k.flac", sine(500, 16000, 16001), 16000, "PCM_16")
    assert read_audio(path, sample_rate=8000).shape == (8001,)


def test_missing_file(tmp_path):
    with pytest.raises(AudioError, match="nothere.wav.*does not exist"):
        read_audio(tmp_path / "nothere.wav")
    with pytest.raises(AudioError, match="nothere.wav"):
        audio_info(tmp_path / "nothere.wav")


def test_empty_file(tmp_path):
    path = tmp_path / "empty.wav"
    path.write_bytes(b"")
    for fn in (read_audio, audio_info):
        with pytest.raises(AudioError, match=r"empty.wav is empty \(0 bytes\)"):
            fn(path)


def test_text_file_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("this is not audio\n")
    for fn in (read_audio, audio_info):
        with pytest.raises(AudioError, match="notes.wav is not a readable audio file"):
            fn(path)


def test_directory_is_refused(tmp_path):
    with pytest.raises(AudioError, match="is a directory"):
        read_audio(tmp_path)


def cut(path, fraction: float):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * fraction)])
    return path


def test_truncated_wav(tmp_path):
    path = cut(write(tmp_path / "cut.wav", sine(440, 16000, 8000), 16000, "PCM_16"), 0.5)
    # libsndfile alone would quietly return the first half; the RIFF header still declares 8000 frames.
    with pytest.raises(AudioError, match="cut.wav is truncated: its header declares 8000 frames"):
        read_audio(path)
    with pytest.raises(AudioError, match="cut.wav is truncated"):
        audio_info(path)


@pytest.mark.parametrize("fraction", [0.9, 0.5])
def test_truncated_flac(tmp_path, fraction):
    path = cut(write(tmp_path / "cut.flac", sine(440, 16000, 16000), 16000, "PCM_16"), fraction)
    with pytest.raises(AudioError, match="cut.flac is truncated"):
        read_audio(path)


def test_truncated_ogg(tmp_path):
    path = cut(write(tmp_path / "cut.ogg", sine(440, 16000, 16000), 16000, "VORBIS"), 0.5)
    with pytest.raises(AudioError, match="cut.ogg"):
        read_audio(path)


def test_header_only_wav_is_refused(tmp_path):
    path = cut(write(tmp_path / "stub.wav", sine(440, 16000, 100), 16000, "PCM_16"), 0.1)
    with pytest.raises(AudioError, match="stub.wav is not a readable audio file"):
        read_audio(path)


def test_zero_length_wav(tmp_path):
    path = write(tmp_path / "silent0.wav", np.zeros(0, np.float32), 16000, "PCM_16")
    assert audio_info(path) == (0, 16000)
    with pytest.raises(AudioError, match=r"silent0.wav holds no audio samples \(0 frames\)"):
        read_audio(path)


def test_non_finite_samples(tmp_path):
    data = sine(440, 16000, 100)
    data[[3, 50]] = [np.nan, np.inf]
    path = write(tmp_path / "nan.wav", data, 16000, "FLOAT")
    with pytest.raises(AudioError, match="nan.wav has 2 non-finite samples"):
        read_audio(path)


def test_audio_error_is_a_value_error_and_bad_rate_refused(tmp_path):
    assert issubclass(AudioError, ValueError)
    path = write(tmp_path / "ok.wav", sine(440, 16000, 100), 16000, "PCM_16")
    with pytest.raises(ValueError, match="sample_rate must be a positive int"):
        read_audio(path, sample_rate=0)


def test_wav_with_extra_chunks_is_not_called_truncated(tmp_path):
    path = tmp_path / "tagged.wav"
    with soundfile.SoundFile(str(path), "w", 16000, 2, "PCM_24") as f:
        f.title = "odd-length title"  # written as a LIST chunk before or after the data chunk
        f.write(np.stack([sine(440, 16000, 333)] * 2, axis=1))
    assert b"LIST" in path.read_bytes()
    assert audio_info(path) == (333, 16000)
    assert read_audio(path).shape == (333,)
