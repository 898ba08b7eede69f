"""Feature extraction (exact frame counts, feature sizes, normalisation, global stats) and augmentation
(identity when off, exact speed ratio, gain and SNR, SpecAugment masks, reproducibility)."""
import math
import pickle

import numpy as np
import pytest
import soundfile
import torch

from ctcrnn.audio.augment import (
    AugmentConfig,
    augment_waveform,
    mask_spans,
    spec_augment,
    speed_perturb,
)
from ctcrnn.audio.features import (
    FeatureConfig,
    FeatureExtractor,
    compute_global_stats,
    normalize_features,
)


def speechlike(n: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(n) / 16000
    return 0.3 * torch.sin(2 * math.pi * 220 * t) + 0.05 * torch.randn(n, generator=g)


# ---- config ----

def test_feature_config_refuses_unknown_key_with_hint():
    with pytest.raises(ValueError, match="no field 'n_mel' \\(did you mean 'n_mels'\\?\\)"):
        FeatureConfig.from_dict({"n_mel": 40})
    assert FeatureConfig.from_dict({"kind": "stft", "win_ms": 20}).kind == "stft"


@pytest.mark.parametrize("bad", [{"kind": "mfcc"}, {"normalize": "utt"}, {"n_mels": 0}, {"hop_ms": -1},
                                 {"n_fft": 128}, {"sample_rate": 0}])
def test_feature_config_validates_values(bad):
    with pytest.raises(ValueError):
        FeatureConfig.from_dict(bad)


# ---- extraction ----

def test_feature_dims():
    fbank = FeatureExtractor(FeatureConfig())
    assert fbank.feature_dim == 80 and fbank.config.fft_size == 512  # 400-sample window -> 512
    assert fbank(speechlike(16000)).shape == (101, 80)
    stft = FeatureExtractor(FeatureConfig(kind="stft", win_ms=20))
    assert stft.feature_dim == 161  # DeepSpeech2: 20 ms at 16 kHz -> 320-point FFT -> 161 bins
    feats = stft(speechlike(16000))
    assert feats.shape == (101, 161) and feats.dtype == torch.float32
    assert (feats >= 0).all()  # log(1 + |X|)


@pytest.mark.parametrize("cfg", [FeatureConfig(), FeatureConfig(kind="stft", win_ms=20),
                                 FeatureConfig(sample_rate=8000, n_mels=23, hop_ms=12.5, n_fft=400)])
def test_num_frames_is_exact(cfg):
    extractor = FeatureExtractor(cfg)
    hop, win = cfg.hop_length, cfg.win_length
    lengths = [1, 2, hop - 1, hop, hop + 1, win - 1, win, win + 1, 2 * win + 3, 1000, 4801, 8000]
    for n in lengths:
        assert extractor(torch.randn(n)).shape == (extractor.num_frames(n), extractor.feature_dim), n
    assert extractor.num_frames(0) == 0 and extractor(torch.zeros(0)).shape == (0, extractor.feature_dim)


def test_silence_is_finite_and_batch_matches_single():
    extractor = FeatureExtractor(FeatureConfig())
    assert torch.isfinite(extractor(torch.zeros(1600))).all()
    a, b = speechlike(3200, 1), speechlike(3200, 2)
    batch = extractor(torch.stack([a, b]))
    # float32 STFT: batched and single FFTs may sum in another order, a relative error of about
    # log2(n_fft) * eps in each power; after the log and per-utterance standardisation that is < 1e-4.
    torch.testing.assert_close(batch[1], extractor(b), rtol=1e-4, atol=1e-4)


def test_features_from_a_file(tmp_path):
    from ctcrnn.audio.io import read_audio
    data = speechlike(12345).numpy()
    soundfile.write(str(tmp_path / "utt.flac"), data, 16000, subtype="PCM_16")
    extractor = FeatureExtractor(FeatureConfig())
    assert extractor(read_audio(tmp_path / "utt.flac", 16000)).shape == (extractor.num_frames(12345), 80)


# ---- normalisation and statistics ----

def test_utterance_normalisation_zero_mean_unit_std():
    feats = FeatureExtractor(FeatureConfig())(speechlike(16000))
    out = normalize_features(feats, "utterance")
    assert torch.allclose(out.mean(0), torch.zeros(80), atol=1e-4)
    assert torch.allclose(out.std(0, correction=0), torch.ones(80), atol=1e-4)


def test_utterance_normalisation_degenerate_inputs_stay_finite():
    one_frame = torch.randn(1, 80)
    assert torch.equal(normalize_features(one_frame, "utterance"), torch.zeros(1, 80))
    constant = torch.full((10, 4), 3.0)
    assert torch.equal(normalize_features(constant, "utterance"), torch.zeros(10, 4))


def test_global_stats_equal_torch_over_concatenated_frames():
    g = torch.Generator().manual_seed(1)
    utts = [torch.randn(t, 5, generator=g) * torch.arange(1, 6) + 10 for t in (1, 7, 30, 120)]
    stats = compute_global_stats(iter(utts))
    everything = torch.cat(utts).double()
    assert stats["frames"] == 158
    assert torch.allclose(torch.tensor(stats["mean"], dtype=torch.float64), everything.mean(0), atol=1e-9)
    assert torch.allclose(torch.tensor(stats["std"], dtype=torch.float64), everything.std(0, correction=0),
                          atol=1e-9)
    assert all(type(v) is float for v in stats["mean"] + stats["std"])
    pickle.dumps(stats)  # plain Python: safe in a weights_only checkpoint
    out = normalize_features(torch.cat(utts), "global", stats)
    assert torch.allclose(out.mean(0), torch.zeros(5), atol=1e-5)
    assert torch.allclose(out.std(0, correction=0), torch.ones(5), atol=1e-5)


def test_global_normalisation_errors():
    feats = torch.randn(4, 3)
    with pytest.raises(ValueError, match="needs stats"):
        normalize_features(feats, "global")
    with pytest.raises(ValueError, match="2 means .* 3 bins"):
        normalize_features(feats, "global", {"mean": [0.0, 0.0], "std": [1.0, 1.0], "frames": 1})
    with pytest.raises(ValueError, match="did you mean 'global'"):
        normalize_features(feats, "globl")
    assert normalize_features(feats, "none") is feats
    with pytest.raises(ValueError, match="no frames"):
        compute_global_stats([])


# ---- waveform augmentation ----

def test_augment_config_from_dict_and_enabled():
    assert not AugmentConfig().enabled
    assert not AugmentConfig(speed=[1.0]).enabled
    assert AugmentConfig.from_dict({"speed": [0.9, 1.1]}).enabled
    with pytest.raises(ValueError, match="did you mean 'noise_snr_db'"):
        AugmentConfig.from_dict({"noise_snr": [5, 10]})
    for bad in ({"gain_db": [3]}, {"noise_snr_db": [10, 5]}, {"speed": [0]}, {"time_mask_ratio": 0},
                {"noise_files": ["n.wav"]}, {"freq_masks": -1}):
        with pytest.raises(ValueError):
            AugmentConfig.from_dict(bad)


def test_augmentation_off_is_identity():
    wave, feats = speechlike(4000), torch.randn(50, 80)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(augment_waveform(wave, 16000, AugmentConfig(), g), wave)
    assert torch.equal(spec_augment(feats, AugmentConfig(), g), feats)
    assert torch.equal(augment_waveform(wave, 16000, AugmentConfig(speed=[1.0]), g), wave)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_length_by_the_factor(factor):
    wave = speechlike(16000)
    out = augment_waveform(wave, 16000, AugmentConfig(speed=[factor]))
    assert out.shape == (math.ceil(16000 / factor),)  # 1.1 -> 14546 samples, 0.9 -> 17778
    # A 1 kHz tone played 1.1x faster is at 1.1 kHz.
    tone = torch.sin(2 * math.pi * 1000 * torch.arange(16000) / 16000)
    fast = speed_perturb(tone, 16000, factor)
    peak_hz = torch.fft.rfft(fast).abs().argmax().item() * 16000 / len(fast)
    assert abs(peak_hz - 1000 * factor) <= 16000 / len(fast)


def test_gain_is_exact():
    wave = speechlike(2000)
    out = augment_waveform(wave, 16000, AugmentConfig(gain_db=[6.0, 6.0]))
    assert torch.allclose(out, wave * 10 ** (6 / 20))
    ratio = augment_waveform(wave, 16000, AugmentConfig(gain_db=[-6.0, 3.0])) / wave
    assert torch.allclose(ratio, ratio[0].expand_as(ratio), rtol=1e-5)
    assert 10 ** (-6 / 20) - 1e-6 <= ratio[0] <= 10 ** (3 / 20) + 1e-6


def measured_snr_db(clean: torch.Tensor, noisy: torch.Tensor) -> float:
    clean, noisy = clean.double(), noisy.double()
    return 10 * math.log10(clean.square().sum() / (noisy - clean).square().sum())


def test_white_noise_snr_is_exact_and_reproducible():
    wave = speechlike(8000)
    cfg = AugmentConfig(noise_snr_db=[5.0, 20.0])
    outs = [augment_waveform(wave, 16000, cfg, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(outs[0], outs[1])
    drawn = torch.rand((), generator=torch.Generator().manual_seed(7), dtype=torch.float64).item() * 15 + 5
    assert measured_snr_db(wave, outs[0]) == pytest.approx(drawn, abs=1e-3)
    fixed = augment_waveform(wave, 16000, AugmentConfig(noise_snr_db=[10.0, 10.0]))
    assert measured_snr_db(wave, fixed) == pytest.approx(10.0, abs=1e-3)


def test_noise_from_files_is_excerpted_looped_and_exact(tmp_path):
    short = tmp_path / "hum.wav"  # shorter than the utterance: must be looped
    soundfile.write(str(short), 0.2 * np.sin(np.arange(500) * 0.3), 8000, subtype="PCM_16")
    wave = speechlike(4000)
    cfg = AugmentConfig(noise_snr_db=[3.0, 3.0], noise_files=[str(short)])
    out = augment_waveform(wave, 16000, cfg, torch.Generator().manual_seed(3))
    assert out.shape == wave.shape
    assert measured_snr_db(wave, out) == pytest.approx(3.0, abs=1e-3)
    assert torch.equal(out, augment_waveform(wave, 16000, cfg, torch.Generator().manual_seed(3)))


def test_silent_input_gets_no_noise_and_no_nan():
    silent = torch.zeros(1000)
    out = augment_waveform(silent, 16000, AugmentConfig(noise_snr_db=[0.0, 10.0], gain_db=[-3.0, 3.0]))
    assert torch.equal(out, silent)


# ---- SpecAugment ----

def test_masks_zero_exactly_the_drawn_spans_and_are_reproducible():
    feats = torch.rand(200, 80) + 1  # no zeros before masking
    cfg = AugmentConfig(freq_masks=2, freq_mask_width=27, time_masks=3, time_mask_width=40, time_mask_ratio=0.05)
    out = spec_augment(feats, cfg, torch.Generator().manual_seed(11))
    assert torch.equal(out, spec_augment(feats, cfg, torch.Generator().manual_seed(11)))
    replay = torch.Generator().manual_seed(11)
    freq = mask_spans(80, 2, 27, replay)
    time = mask_spans(200, 3, 10, replay)  # 40 capped at 0.05 * 200 = 10 frames
    cols = {c for s, w in freq for c in range(s, s + w)}
    rows = {r for s, w in time for r in range(s, s + w)}
    assert cols and rows
    assert {c for c in range(80) if (out[:, c] == 0).all()} == cols
    assert {r for r in range(200) if (out[r] == 0).all()} == rows
    expected = feats.clone()
    expected[:, sorted(cols)] = 0
    expected[sorted(rows)] = 0
    assert torch.equal(out, expected)
    assert (feats > 0).all()  # input untouched


def test_time_mask_is_capped_by_ratio():
    cfg = AugmentConfig(time_masks=5, time_mask_width=40, time_mask_ratio=0.05)
    for seed in range(20):
        out = spec_augment(torch.ones(100, 8), cfg, torch.Generator().manual_seed(seed))
        spans = mask_spans(100, 5, 5, torch.Generator().manual_seed(seed))  # 40 capped at 0.05 * 100
        rows = {r for s, w in spans for r in range(s, s + w)}
        assert {r for r in range(100) if (out[r] == 0).all()} == rows
    short = torch.ones(10, 8)  # 0.05 * 10 frames rounds to no mask at all
    assert torch.equal(spec_augment(short, cfg, torch.Generator().manual_seed(0)), short)
