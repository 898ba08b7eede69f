import itertools
import re

import numpy as np
import pytest

from ctcrnn.audio.dtmf import (
    ALPHABET,
    COLUMN_HZ,
    KEY_FREQUENCIES,
    KEYS,
    ROW_HZ,
    DTMFConfig,
    coloured_noise,
    dtmf_components,
    dtmf_dataset_item,
    dtmf_dataset_plan,
    dtmf_utterance,
)


def rng(i: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([1234, i]))


def tone_amplitudes(x: np.ndarray, nominal: tuple, cfg: DTMFConfig) -> np.ndarray:
    """Per nominal frequency, the amplitude of the strongest sinusoid within its allowed deviation:
    the peak of a Hann-windowed, finely zero-padded FFT (0.5 Hz bins), scaled so a pure tone reads its amplitude."""
    window = np.hanning(len(x))
    n = 16384
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * window, n=n)) / (window.sum() / 2)
    freqs = np.fft.rfftfreq(n, 1 / cfg.sample_rate)
    deviation = cfg.max_freq_deviation
    return np.array([spectrum[(freqs >= f * (1 - deviation)) & (freqs <= f * (1 + deviation))].max()
                     for f in nominal])


def gaps(segments, length):
    """(start, end) of every region between, before and after the key tones."""
    bounds = [0, *[p for _, start, end in segments for p in (start, end)], length]
    return list(zip(bounds[::2], bounds[1::2]))


def test_keypad_is_itu_q23():
    assert KEYS == "0123456789*#ABCD" and ALPHABET == KEYS + " "
    assert KEY_FREQUENCIES["1"] == (697, 1209) and KEY_FREQUENCIES["5"] == (770, 1336)
    assert KEY_FREQUENCIES["0"] == (941, 1336) and KEY_FREQUENCIES["#"] == (941, 1477)
    assert KEY_FREQUENCIES["*"] == (941, 1209) and KEY_FREQUENCIES["D"] == (941, 1633)
    assert KEY_FREQUENCIES["A"] == (697, 1633) and KEY_FREQUENCIES["9"] == (852, 1477)
    assert sorted(KEY_FREQUENCIES) == sorted(KEYS)
    assert len(set(KEY_FREQUENCIES.values())) == 16


def test_items_are_a_function_of_seed_split_and_index():
    cfg = DTMFConfig()
    a, b = dtmf_dataset_item(3, "train", 7, cfg), dtmf_dataset_item(3, "train", 7, cfg)
    assert np.array_equal(a.wave, b.wave) and a.text == b.text and a.segments == b.segments
    # Order and interleaving do not matter: item 7 made after others is the same item.
    for i in (5, 0, 9):
        dtmf_dataset_item(3, "train", i, cfg)
    assert np.array_equal(dtmf_dataset_item(3, "train", 7, cfg).wave, a.wave)
    for other in (dtmf_dataset_item(3, "val", 7, cfg), dtmf_dataset_item(3, "test", 7, cfg),
                  dtmf_dataset_item(3, "train", 8, cfg), dtmf_dataset_item(4, "train", 7, cfg)):
        assert other.wave.shape != a.wave.shape or not np.array_equal(other.wave, a.wave)
    with pytest.raises(ValueError, match="splits"):
        dtmf_dataset_item(3, "dev", 7, cfg)


def test_the_plan_is_the_items_text_segments_and_length():
    cfg = DTMFConfig()
    for split, index in (("train", 0), ("val", 11), ("test", 5)):
        item = dtmf_dataset_item(0, split, index, cfg)
        assert dtmf_dataset_plan(0, split, index, cfg) == (item.text, item.segments, len(item.wave))


def test_text_groups_lengths_and_wave_bounds():
    cfg = DTMFConfig()
    pattern = re.compile(r"[0-9*#A-D]{1,5}( [0-9*#A-D]{1,5}){0,2}")
    min_samples = cfg.samples(cfg.min_key_ms) + 2 * cfg.samples(cfg.min_edge_silence_ms)
    assert cfg.max_samples == 4.2 * cfg.sample_rate
    seen, repeats = set(), 0
    for i in range(300):
        utt = dtmf_utterance(rng(i), cfg)
        assert pattern.fullmatch(utt.text), utt.text
        assert set(utt.text) <= set(ALPHABET) and utt.sample_rate == cfg.sample_rate
        assert utt.wave.dtype == np.float32 and utt.wave.ndim == 1
        assert min_samples - 2 <= len(utt.wave) <= cfg.max_samples
        assert np.isfinite(utt.wave).all() and np.abs(utt.wave).max() <= 1.0
        # Segments are ordered, inside the wave, apart by at least the shortest pause, and spell the text.
        assert "".join(key for key, _, _ in utt.segments) == utt.text.replace(" ", "")
        starts_ends = [(start, end) for _, start, end in utt.segments]
        assert starts_ends[0][0] >= cfg.samples(cfg.min_edge_silence_ms) - 1
        assert starts_ends[-1][1] <= len(utt.wave) - cfg.samples(cfg.min_edge_silence_ms) + 1
        for (_, end), (start, _) in itertools.pairwise(starts_ends):
            assert start - end >= cfg.samples(cfg.min_key_gap_ms) - 1
        for start, end in starts_ends:
            assert cfg.samples(cfg.min_key_ms) - 1 <= end - start <= cfg.samples(cfg.max_key_ms) + 1
        seen |= set(utt.text)
        repeats += any(a == b for g in utt.text.split() for a, b in itertools.pairwise(g))
    assert seen == set(ALPHABET) and repeats > 10


def test_group_gaps_are_longer_than_every_key_gap():
    cfg = DTMFConfig()
    multi_group = 0
    for i in range(300):
        utt = dtmf_utterance(rng(i), cfg)
        group_of = [g for g, group in enumerate(utt.text.split(" ")) for _ in group]
        key_gaps, group_gaps = [], []
        for a, ((_, _, end), (_, start, _)) in enumerate(itertools.pairwise(utt.segments)):
            (group_gaps if group_of[a] != group_of[a + 1] else key_gaps).append(start - end)
        assert len(group_gaps) == utt.text.count(" ")
        if group_gaps and key_gaps:
            assert min(group_gaps) > max(key_gaps)
            multi_group += 1
    assert multi_group > 50
    with pytest.raises(ValueError, match="min_group_gap_ms"):
        DTMFConfig(min_group_gap_ms=100.0, max_key_gap_ms=120.0)


@pytest.mark.parametrize("overrides", [
    {},                                                                      # the defaults
    {"min_snr_db": 10.0, "max_snr_db": 10.0, "coloured_noise_prob": 0.0},    # worst SNR, white
    {"min_snr_db": 10.0, "max_snr_db": 10.0, "coloured_noise_prob": 1.0, "band_pass_prob": 1.0},
], ids=["defaults", "white_10db", "coloured_band_10db"])
def test_an_independent_detector_hears_every_key_and_no_tone_in_the_gaps(overrides):
    cfg = DTMFConfig(**overrides)
    for i in range(80):
        utt, clean, _ = dtmf_components(rng(i), cfg)
        weakest_tone = np.inf
        for key, start, end in utt.segments:
            rows = tone_amplitudes(utt.wave[start:end], ROW_HZ, cfg)
            columns = tone_amplitudes(utt.wave[start:end], COLUMN_HZ, cfg)
            row, column = KEY_FREQUENCIES[key]
            for amps, expected in ((rows, ROW_HZ.index(row)), (columns, COLUMN_HZ.index(column))):
                assert amps.argmax() == expected, (i, utt.text, key)
                # Clearly detected: the right tone stands 6 dB or more above every other one of its group.
                assert amps[expected] >= 2 * np.delete(amps, expected).max(), (i, utt.text, key)
                weakest_tone = min(weakest_tone, amps[expected])
        tone_energy = sum(np.sum(clean[s:e] ** 2) for _, s, e in utt.segments)
        for start, end in gaps(utt.segments, len(utt.wave)):
            # The tones stay inside their segments (only the band-pass smears a trace out) ...
            assert np.sum(clean[start:end] ** 2) <= 1e-4 * tone_energy
            # ... so at every DTMF frequency a gap holds noise only, far below the weakest key tone.
            strongest = max(tone_amplitudes(utt.wave[start:end], ROW_HZ + COLUMN_HZ, cfg))
            assert strongest < 0.35 * weakest_tone, (i, utt.text, start, end)


def test_snr_and_level_over_the_tones_are_in_range():
    cfg = DTMFConfig()
    snrs, levels = [], []
    for i in range(200):
        utt, clean, noise = dtmf_components(rng(i), cfg)
        assert np.array_equal(utt.wave, (clean + noise).astype(np.float32))
        tones = np.concatenate([np.arange(s, e) for _, s, e in utt.segments])
        snrs.append(10 * np.log10(np.mean(clean[tones] ** 2) / np.mean(noise[tones] ** 2)))
        # dB re a full-scale sine; the on/off ramps take up to ~0.5 dB off the short tones.
        levels.append(10 * np.log10(np.mean(clean[tones] ** 2) / 0.5))
    snrs, levels = np.array(snrs), np.array(levels)
    assert cfg.min_snr_db - 0.01 <= snrs.min() and snrs.max() <= cfg.max_snr_db + 0.01
    assert snrs.min() < cfg.min_snr_db + 2 and snrs.max() > cfg.max_snr_db - 2  # the whole range is used
    assert cfg.min_level_dbfs - 0.6 <= levels.min() and levels.max() <= cfg.max_level_dbfs + 0.01


def low_frequency_share(noise: np.ndarray, sample_rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(noise)) ** 2
    return spectrum[np.fft.rfftfreq(len(noise), 1 / sample_rate) < 300].sum() / spectrum.sum()


def test_noise_is_white_or_coloured_as_configured():
    # White noise has 280/3980 of its power below 300 Hz; a pink or brown share of any size raises that.
    for prob, low, high in ((0.0, 0, 0), (1.0, 95, 100), (0.5, 25, 75)):
        cfg = DTMFConfig(coloured_noise_prob=prob)
        shares = [low_frequency_share(coloured_noise(rng(i), 8000, cfg), cfg.sample_rate) for i in range(100)]
        assert all(np.isclose(np.var(coloured_noise(rng(i), 8000, cfg)), 1.0) for i in range(5))
        assert low <= sum(s > 0.1 for s in shares) <= high


def test_keys_and_config_checks():
    cfg = DTMFConfig(keys="0123456789", max_groups=1, max_keys_per_group=2)
    for i in range(50):
        text = dtmf_utterance(rng(i), cfg).text
        assert text.isdigit() and 1 <= len(text) <= 2
    with pytest.raises(ValueError, match="keys"):
        DTMFConfig(keys="0123E")
    with pytest.raises(ValueError, match="min_snr_db"):
        DTMFConfig(min_snr_db=30.0, max_snr_db=10.0)
    with pytest.raises(ValueError, match="sample_rate"):
        DTMFConfig(sample_rate=3000)
