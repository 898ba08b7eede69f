"""DTMF key strings: procedurally generated telephone keypad audio labelled by the keys pressed.

An utterance is 1-3 groups of 1-5 keys ("415 555 0172"): each key is an ITU-T Q.23 tone pair (one
row and one column frequency), keys are separated by short pauses and groups by clearly longer ones,
so the space between groups is a learnable token and groups can be scored as words. Nuisances that a
real receiver meets are drawn per utterance or per key: tone and pause durations, frequency
deviation, twist, level, white/pink/brown noise at a random SNR, an optional telephone band-pass and
random phases. Every item is a pure function of (seed, split, index) through NumPy's PCG64, so it is
identical on any machine, in any DataLoader worker and in any order, and never stored on disk.

NumPy only: this file must never import torch or the core (the dataset wrapper does that).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

KEYS = "0123456789*#ABCD"
ALPHABET = KEYS + " "                  # the text alphabet: keys, and the space between groups
ROW_HZ = (697, 770, 852, 941)          # ITU-T Q.23 low group
COLUMN_HZ = (1209, 1336, 1477, 1633)   # ITU-T Q.23 high group
KEYPAD = ("123A", "456B", "789C", "*0#D")
KEY_FREQUENCIES = {key: (ROW_HZ[r], COLUMN_HZ[c]) for r, row in enumerate(KEYPAD) for c, key in enumerate(row)}
SPLITS = {"train": 0, "val": 1, "test": 2}
NOISE_FLOOR_HZ = 20.0                  # pink/brown spectra are flat below this, so no DC drift dominates


@dataclass
class DTMFConfig:
    sample_rate: int = 8000            # Hz; telephone rate, and above twice the highest tone
    keys: str = KEYS                   # keys drawn uniformly; e.g. "0123456789" for digits only
    min_groups: int = 1                # groups (words) per utterance
    max_groups: int = 3
    min_keys_per_group: int = 1        # keys (characters) per group
    max_keys_per_group: int = 5
    min_key_ms: float = 40.0           # tone duration; Q.24 receivers must accept tones from 40 ms
    max_key_ms: float = 100.0
    min_key_gap_ms: float = 40.0       # pause between keys of a group; also separates repeats ("55")
    max_key_gap_ms: float = 100.0
    min_group_gap_ms: float = 300.0    # pause between groups (the space); must exceed max_key_gap_ms
    max_group_gap_ms: float = 500.0
    min_edge_silence_ms: float = 50.0  # silence (noise only) before the first and after the last key
    max_edge_silence_ms: float = 250.0
    ramp_ms: float = 3.0               # raised-cosine on/off ramp of each tone: no clicks, no splatter
    max_freq_deviation: float = 0.015  # each tone off its nominal frequency by up to +-this fraction (Q.24)
    max_twist_db: float = 4.0          # column tone level minus row tone level, uniform in +-this
    min_level_dbfs: float = -30.0      # RMS of the tone pair in dB re a full-scale sine
    max_level_dbfs: float = -6.0
    min_snr_db: float = 10.0           # tone power over noise power, both over the tone regions
    max_snr_db: float = 30.0
    coloured_noise_prob: float = 0.5   # else white: a random power mix of white, pink and brown noise
    band_pass_prob: float = 0.5        # apply a telephone band-pass to tones and noise
    band_low_hz: float = 300.0         # pass band edges; raised-cosine skirts of band_skirt_hz outside them
    band_high_hz: float = 3400.0
    band_skirt_hz: float = 100.0

    def __post_init__(self):
        pairs = [("groups", self.min_groups, self.max_groups),
                 ("keys_per_group", self.min_keys_per_group, self.max_keys_per_group),
                 ("key_ms", self.min_key_ms, self.max_key_ms),
                 ("key_gap_ms", self.min_key_gap_ms, self.max_key_gap_ms),
                 ("group_gap_ms", self.min_group_gap_ms, self.max_group_gap_ms),
                 ("edge_silence_ms", self.min_edge_silence_ms, self.max_edge_silence_ms),
                 ("level_dbfs", self.min_level_dbfs, self.max_level_dbfs),
                 ("snr_db", self.min_snr_db, self.max_snr_db)]
        for name, low, high in pairs:
            if low > high:
                raise ValueError(f"DTMFConfig: min_{name}={low} is above max_{name}={high}: swap or widen them")
        if self.min_groups < 1 or self.min_keys_per_group < 1:
            raise ValueError("DTMFConfig: min_groups and min_keys_per_group must be at least 1")
        if not self.keys or any(k not in KEYS for k in self.keys):
            raise ValueError(f"DTMFConfig.keys={self.keys!r} must be a non-empty subset of {KEYS!r}")
        if self.min_group_gap_ms <= self.max_key_gap_ms:
            raise ValueError(f"DTMFConfig: min_group_gap_ms={self.min_group_gap_ms} must exceed max_key_gap_ms="
                             f"{self.max_key_gap_ms}, or the space between groups cannot be heard")
        if self.min_key_gap_ms <= 0 or 2 * self.ramp_ms > self.min_key_ms:
            raise ValueError(f"DTMFConfig: need min_key_gap_ms > 0 (repeated keys must be separated) and "
                             f"2 * ramp_ms <= min_key_ms (got {self.min_key_gap_ms}, {self.ramp_ms}, {self.min_key_ms})")
        if 2 * max(COLUMN_HZ) * (1 + self.max_freq_deviation) >= self.sample_rate:
            raise ValueError(f"DTMFConfig.sample_rate={self.sample_rate} is too low for the {max(COLUMN_HZ)} Hz "
                             f"tone: use 8000 or more")
        for name in ("coloured_noise_prob", "band_pass_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"DTMFConfig.{name}={getattr(self, name)} must be a probability in [0, 1]")

    def samples(self, ms: float) -> int:
        return round(ms * self.sample_rate / 1000)

    @property
    def max_samples(self) -> int:
        """Length of the longest possible utterance (4.2 s = 33600 samples at the defaults)."""
        keys = self.max_groups * self.max_keys_per_group
        return (keys * self.samples(self.max_key_ms)
                + (keys - self.max_groups) * self.samples(self.max_key_gap_ms)
                + (self.max_groups - 1) * self.samples(self.max_group_gap_ms)
                + 2 * self.samples(self.max_edge_silence_ms))


@dataclass
class DTMFUtterance:
    wave: np.ndarray                   # (N,) float32, peak <= 1
    text: str                          # keys, groups separated by one space, e.g. "41 5550"
    segments: list[tuple[str, int, int]]  # (key, start_sample, end_sample) per key tone, end exclusive
    sample_rate: int


def plan_utterance(rng: np.random.Generator, cfg: DTMFConfig) -> tuple[str, list[tuple[str, int, int]], int]:
    """Text, key segments and total length in samples of one utterance (no audio yet)."""
    def draw(low_ms: float, high_ms: float) -> int:
        return cfg.samples(rng.uniform(low_ms, high_ms))

    groups = []
    for _ in range(int(rng.integers(cfg.min_groups, cfg.max_groups + 1))):
        count = int(rng.integers(cfg.min_keys_per_group, cfg.max_keys_per_group + 1))
        groups.append("".join(rng.choice(list(cfg.keys), size=count)))
    segments, position = [], draw(cfg.min_edge_silence_ms, cfg.max_edge_silence_ms)
    for g, group in enumerate(groups):
        if g > 0:
            position += draw(cfg.min_group_gap_ms, cfg.max_group_gap_ms)
        for k, key in enumerate(group):
            if k > 0:
                position += draw(cfg.min_key_gap_ms, cfg.max_key_gap_ms)
            length = draw(cfg.min_key_ms, cfg.max_key_ms)
            segments.append((key, position, position + length))
            position += length
    position += draw(cfg.min_edge_silence_ms, cfg.max_edge_silence_ms)
    return " ".join(groups), segments, position


def render_tones(rng: np.random.Generator, segments: list[tuple[str, int, int]], length: int,
                 cfg: DTMFConfig) -> np.ndarray:
    """(length,) float64 clean tone pairs at the utterance's level, zero between segments."""
    wave = np.zeros(length)
    # Level is per utterance (one line, one phone); twist, deviation and phase change per key press.
    power = 10 ** (rng.uniform(cfg.min_level_dbfs, cfg.max_level_dbfs) / 10) / 2  # mean square of the pair
    ramp = cfg.samples(cfg.ramp_ms)
    for key, start, end in segments:
        n = end - start
        t = np.arange(n) / cfg.sample_rate
        twist = 10 ** (rng.uniform(-cfg.max_twist_db, cfg.max_twist_db) / 20)  # column / row amplitude
        row_amp = np.sqrt(2 * power / (1 + twist ** 2))
        tone = np.zeros(n)
        for f, amp in zip(KEY_FREQUENCIES[key], (row_amp, row_amp * twist)):
            f = f * (1 + rng.uniform(-cfg.max_freq_deviation, cfg.max_freq_deviation))
            tone += amp * np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))
        if ramp > 0:
            edge = np.sin(0.5 * np.pi * (np.arange(ramp) + 0.5) / ramp) ** 2
            tone[:ramp] *= edge
            tone[-ramp:] *= edge[::-1]
        wave[start:end] = tone
    return wave


def fft_length(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n: NumPy's FFT is many times slower on lengths with large prime factors."""
    best = 1 << max(n - 1, 0).bit_length()
    power5 = 1
    while power5 < best:
        power35 = power5
        while power35 < best:
            candidate = power35 << max(0, (n - 1) // power35).bit_length()
            best = min(best, candidate)
            power35 *= 3
        power5 *= 5
    return best


def coloured_noise(rng: np.random.Generator, length: int, cfg: DTMFConfig) -> np.ndarray:
    """(length,) unit-variance noise: white, or a random power mix of white, pink (1/f) and brown (1/f^2)."""
    if rng.uniform() >= cfg.coloured_noise_prob:
        white = rng.standard_normal(length)
        return white / white.std()
    weights = rng.dirichlet(np.ones(3))
    n = fft_length(length)  # shaped at a fast length, then cut: the noise is stationary
    freqs = np.maximum(np.fft.rfftfreq(n, 1 / cfg.sample_rate), NOISE_FLOOR_HZ)
    noise = np.zeros(length)
    for weight, exponent in zip(weights, (0.0, 1.0, 2.0)):
        spectrum = np.fft.rfft(rng.standard_normal(n)) * (freqs / NOISE_FLOOR_HZ) ** (-exponent / 2)
        spectrum[0] = 0.0
        part = np.fft.irfft(spectrum, n=n)[:length]
        noise += np.sqrt(weight) * part / part.std()
    return noise / noise.std()


def band_pass(x: np.ndarray, cfg: DTMFConfig) -> np.ndarray:
    """Telephone channel: unit gain in [band_low_hz, band_high_hz], raised-cosine skirts outside.
    Zero-phase FFT filtering of ``x`` (..., N) zero-padded to a fast length: the wrap-around falls into
    the padding and the edge silences."""
    n = fft_length(x.shape[-1])
    freqs = np.fft.rfftfreq(n, 1 / cfg.sample_rate)
    skirt = cfg.band_skirt_hz
    rise = np.clip((freqs - cfg.band_low_hz + skirt) / skirt, 0, 1)
    fall = np.clip((cfg.band_high_hz + skirt - freqs) / skirt, 0, 1)
    gain = np.sin(0.5 * np.pi * np.minimum(rise, fall)) ** 2
    return np.fft.irfft(np.fft.rfft(x, n=n) * gain, n=n)[..., :x.shape[-1]]


def dtmf_components(rng: np.random.Generator, cfg: DTMFConfig) -> tuple[DTMFUtterance, np.ndarray, np.ndarray]:
    """One utterance and its two parts, scaled as in the wave: ``wave == float32(clean + noise)``.
    The parts let tests and analyses measure SNR and leakage exactly; training needs only the wave."""
    text, segments, length = plan_utterance(rng, cfg)
    clean = render_tones(rng, segments, length, cfg)
    noise = coloured_noise(rng, length, cfg)
    if rng.uniform() < cfg.band_pass_prob:
        clean, noise = band_pass(np.stack([clean, noise]), cfg)
    # SNR is set where it matters, over the tones, after the channel has shaped the noise.
    tones = np.concatenate([np.arange(start, end) for _, start, end in segments])
    snr = 10 ** (rng.uniform(cfg.min_snr_db, cfg.max_snr_db) / 10)
    noise *= np.sqrt(np.mean(clean[tones] ** 2) / (snr * np.mean(noise[tones] ** 2)))
    # A loud, noisy line may exceed full scale: turn the whole utterance down (an AGC) rather than
    # clip, so the SNR and the tones' spectra stay as drawn.
    peak = np.max(np.abs(clean + noise))
    if peak > 1.0:
        clean, noise = clean / (peak * 1.0001), noise / (peak * 1.0001)
    wave = (clean + noise).astype(np.float32)
    return DTMFUtterance(wave, text, segments, cfg.sample_rate), clean, noise


def dtmf_utterance(rng: np.random.Generator, cfg: DTMFConfig) -> DTMFUtterance:
    """One random utterance; see DTMFConfig for what is drawn and from which ranges."""
    return dtmf_components(rng, cfg)[0]


def item_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The generator of item ``index`` of ``split``: independent of every other item and split."""
    if split not in SPLITS:
        raise ValueError(f"DTMF has splits {list(SPLITS)}, not {split!r}")
    if seed < 0 or index < 0:
        raise ValueError(f"DTMF items need seed >= 0 and index >= 0 (got seed={seed}, index={index})")
    return np.random.default_rng(np.random.SeedSequence([seed, SPLITS[split], index]))


def dtmf_dataset_item(seed: int, split: str, index: int, cfg: DTMFConfig) -> DTMFUtterance:
    """Item ``index`` of ``split``: a pure function of (seed, split, index), different between splits."""
    return dtmf_utterance(item_rng(seed, split, index), cfg)


def dtmf_dataset_plan(seed: int, split: str, index: int,
                      cfg: DTMFConfig) -> tuple[str, list[tuple[str, int, int]], int]:
    """(text, segments, length in samples) of ``dtmf_dataset_item(seed, split, index, cfg)`` without
    rendering any audio (cheap: for texts and lengths): the plan is the first thing drawn from the item's generator."""
    return plan_utterance(item_rng(seed, split, index), cfg)
