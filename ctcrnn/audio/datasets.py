"""Audio datasets: JSON Lines manifests, LibriSpeech in its published layout, and synthetic DTMF.

Every split is an :class:`AudioDataset`: a list of utterances read, resampled, featurised, normalised and
(training split only) augmented in ``__getitem__``, i.e. in the DataLoader workers, never in the training
step. An unreadable file becomes a ``{"id", "error"}`` item: the batch drops it and the trainer counts and
logs it. Validation, test and new data are read with the vocabulary and normalisation statistics fitted
on the training split (the ``fitted`` argument, from the trainer or a checkpoint). A split built without
``fitted`` *is* a training split: it fits the vocabulary and statistics itself and is augmented.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..config import checked_options
from ..data import check_unique_ids, manifest_for_split
from ..data import read_manifest as read_entries  # the shared line checks; this module's read_manifest adds headers
from ..randomness import item_generator
from .augment import AugmentConfig, augment_waveform, spec_augment
from .dtmf import DTMFConfig, dtmf_dataset_item, dtmf_dataset_plan
from .features import FeatureConfig, FeatureExtractor, compute_global_stats, normalize_features
from .io import AudioError, audio_info, read_audio
from .text import CharTokenizer, report_unknown

log = logging.getLogger(__name__)


@dataclass
class Utterance:
    id: str
    text: str
    path: str = ""                 # empty for generated audio
    index: int | None = None       # which generated utterance (synthetic data)
    num_samples: int | None = None  # at the file's own rate, from the header (for batching by length)
    sample_rate: int | None = None
    error: str | None = None        # why the header could not be read: the item is skipped when loaded


class AudioPipeline:
    """Waveform -> normalised features (T, F), the same for training data, evaluation data and new files."""

    def __init__(self, features: FeatureConfig, stats: dict | None = None):
        self.features, self.stats = features, stats
        self.extractor = FeatureExtractor(features)

    def __call__(self, wave: torch.Tensor, source: str = "the audio") -> torch.Tensor:
        """(N,) -> (T, F); AudioError naming ``source`` (the file) when the features are not finite: finite
        samples of absurd size (a float WAV holding 1e30) overflow the power spectrum to inf, then NaN."""
        feats = normalize_features(self.extractor(wave), self.features.normalize, self.stats)
        if not bool(torch.isfinite(feats).all()):
            bad = int((~torch.isfinite(feats)).sum())
            peak = float(wave.abs().max()) if wave.numel() else 0.0
            raise AudioError(f"{source}: its features hold {bad} NaN/inf values (its samples peak at {peak:.3g}, where "
                             f"audio lies in [-1, 1]): the file is corrupt or wrongly scaled; re-encode it from the "
                             f"source or drop it from the data")
        return feats

    def input_spec(self) -> dict:
        """What a checkpoint needs to read new audio the way it was trained (plain types only)."""
        # Frames per second from the hop actually used (rounded to whole samples), so CTM times do not drift.
        fps = self.features.sample_rate / self.features.hop_length
        return {"modality": "audio", "step_shape": [self.extractor.feature_dim], "fps": fps,
                "sample_rate": self.features.sample_rate, "features": dataclasses.asdict(self.features),
                "stats": self.stats, "word_delimiter": " "}

    @classmethod
    def from_spec(cls, spec: dict) -> AudioPipeline:
        return cls(FeatureConfig.from_dict(spec["features"]), spec.get("stats"))


def read_file(utterance: Utterance, sample_rate: int) -> torch.Tensor:
    """The waveform (N,) of a file-based utterance at ``sample_rate``; AudioError if it cannot be read."""
    if utterance.error:
        raise AudioError(utterance.error)
    return read_audio(utterance.path, sample_rate)


class AudioDataset(Dataset):
    """Utterances -> ``{"id", "input" (T, F), "target", "text"}`` items (see :mod:`ctcrnn.data`).

    ``load(utterance, sample_rate) -> (N,)`` gives the waveform: :func:`read_file`, or a generator for
    synthetic audio (picklable, for DataLoader workers). ``augment`` is given for the training split only.
    """

    def __init__(self, name: str, utterances: list[Utterance], tokenizer: CharTokenizer, pipeline: AudioPipeline,
                 augment: AugmentConfig | None = None, load=read_file):
        if not utterances:
            raise ValueError(f"{name}: no utterances found")
        check_unique_ids(name, (u.id for u in utterances), "utterance")
        self.name, self.utterances, self.tokenizer, self.pipeline = name, utterances, tokenizer, pipeline
        self.load = load
        self.augment = augment if augment is not None and augment.enabled else None
        self.labels = tokenizer.labels
        self.input_spec = pipeline.input_spec()
        unknown = Counter()
        self.targets = [tokenizer.encode(u.text, unknown) for u in utterances]
        self.unknown_chars = unknown
        report_unknown(name, unknown, [u.id for u in utterances if any(c not in tokenizer.index for c in u.text)])
        self._lengths = None
        self.seed, self.epoch = 0, 0

    def set_epoch(self, epoch: int, seed: int) -> None:
        """Augmentation of item i in this epoch draws from a generator seeded by (seed, epoch, i): the same
        in any DataLoader worker and in any order, so a resumed run augments exactly as an unbroken one."""
        self.seed, self.epoch = seed, epoch

    def __len__(self) -> int:
        return len(self.utterances)

    @property
    def lengths(self) -> list[int]:
        """Feature frames per utterance from the file headers, for batching by length; with speed
        perturbation, the longest an utterance can become (so ``max_frames`` stays a true bound)."""
        if self._lengths is None:
            rate, extractor = self.pipeline.features.sample_rate, self.pipeline.extractor
            slowest = min(self.augment.speed) if self.augment is not None and self.augment.speed else 1.0
            # torchaudio's resample gives ceil(N * new / old) samples.
            self._lengths = [extractor.num_frames(max(1, math.ceil(u.num_samples * rate / (u.sample_rate or rate)
                                                                   / slowest)))
                             if u.num_samples else 1 for u in self.utterances]
        return self._lengths

    def __getitem__(self, index: int) -> dict:
        utterance = self.utterances[index]
        try:
            wave = self.load(utterance, self.pipeline.features.sample_rate)
        except AudioError as e:
            return {"id": utterance.id, "error": str(e)}
        generator = None
        if self.augment is not None:
            generator = item_generator(self.seed, self.epoch, index)
            wave = augment_waveform(wave, self.pipeline.features.sample_rate, self.augment, generator)
        try:
            feats = self.pipeline(wave, utterance.path or utterance.id)
        except AudioError as e:
            return {"id": utterance.id, "error": str(e)}
        if self.augment is not None:
            feats = spec_augment(feats, self.augment, generator)
        return {"id": utterance.id, "input": feats, "target": self.targets[index], "text": utterance.text}


def fit_pipeline(features: dict | None, defaults: dict, fitted: dict | None, utterances: list[Utterance],
                 load, stats_utterances: int = 500) -> AudioPipeline:
    """The feature pipeline: the checkpoint's (``fitted``) when evaluating, else the config's; global
    normalisation statistics are computed once, over up to ``stats_utterances`` training utterances
    (a fixed random subset, no augmentation; 0 = all of them), and then travel in the input spec."""
    if fitted is not None and fitted.get("input_spec", {}).get("modality") == "audio":
        return AudioPipeline.from_spec(fitted["input_spec"])
    config = FeatureConfig.from_dict({**defaults, **(features or {})}, "data.args.features")
    pipeline = AudioPipeline(config)
    if config.normalize == "global":
        plain = AudioPipeline(dataclasses.replace(config, normalize="none"))
        readable = [i for i, u in enumerate(utterances) if u.error is None]
        count = min(stats_utterances or len(readable), len(readable))  # 0: every training utterance
        picks = random.Random(0).sample(readable, count)

        def readable():
            for i in picks:
                try:  # a file with NaN/inf features is left out: it would make every clip's features NaN
                    yield plain(load(utterances[i], config.sample_rate), utterances[i].path or utterances[i].id)
                except AudioError:
                    continue

        pipeline.stats = compute_global_stats(readable())
        log.info("global feature statistics from %d frames of up to %d training utterances",
                 pipeline.stats["frames"], len(picks))
    return pipeline


def build_audio_dataset(name: str, split: str, utterances: list[Utterance], features: dict | None,
                        augment: dict | None, tokens, fitted: dict | None, stats_utterances: int,
                        feature_defaults: dict, load=read_file, source: str = "") -> AudioDataset:
    """Tokenizer, pipeline and augmentation for one split; the shared tail of every audio builder.

    Without ``fitted`` this is a training split: the vocabulary comes from ``tokens`` or its own
    transcripts, global statistics from its own audio, and it is augmented. With ``fitted`` (validation,
    test, a checkpoint's new data) the model's vocabulary and preprocessing are used and nothing is augmented.
    ``source`` (the manifest path, say; default ``name/split``) is what an error about the transcripts names.
    """
    if fitted is not None:
        if features and dataclasses.asdict(FeatureConfig.from_dict({**feature_defaults, **features},
                                                                   "data.args.features")) != \
                fitted["input_spec"].get("features"):
            log.warning("%s/%s: data.args.features differ from the model's; the model's (its input_spec) are used",
                        name, split)
        tokenizer = CharTokenizer(list(fitted["labels"]))
    else:
        tokenizer = (CharTokenizer.from_tokens(tokens) if tokens else
                     CharTokenizer.from_texts((u.text for u in utterances), source or f"{name}/{split}"))
    pipeline = fit_pipeline(features, feature_defaults, fitted, utterances, load, stats_utterances)
    augment_config = None
    if fitted is None:
        augment_config = AugmentConfig.from_dict(augment or {}, "data.args.augment")
        check_noise_files(augment_config.noise_files)
    return AudioDataset(f"{name}/{split}", utterances, tokenizer, pipeline, augment_config, load)


def check_noise_files(paths: list) -> None:
    """Every noise recording must be readable now, not when a random draw first picks it mid-epoch."""
    bad = []
    for path in paths:
        try:
            audio_info(path)
        except AudioError as e:
            bad.append(str(e))
    if bad:
        raise ValueError(f"augment.noise_files: {len(bad)} of {len(paths)} cannot be read (paths are relative to "
                         f"the working directory): " + "; ".join(bad[:3]))


# ---------------------------------------------------------------------------------------------------------
# JSON Lines manifests


def read_manifest(path: str | Path) -> list[Utterance]:
    """``{"path": ..., "text": ...}`` per line (optional ``"id"``; paths relative to the manifest's folder),
    checked by :func:`ctcrnn.data.read_manifest` (errors name the file and line), then each file's audio
    header read: an unreadable one makes a counted skip, not an error."""
    utterances, bad_headers = [], 0
    for entry in read_entries(path, '{"path": "clips/a.wav", "text": "hello world"}', required=("text",),
                              media="the audio file"):
        utterance = Utterance(entry.id, entry.fields["text"], entry.path)
        try:
            utterance.num_samples, utterance.sample_rate = audio_info(entry.path)
        except AudioError as e:
            utterance.error, bad_headers = str(e), bad_headers + 1
        utterances.append(utterance)
    if bad_headers:
        log.warning("%s: %d of %d audio files cannot be read; they will be skipped and listed in skipped.tsv",
                    path, bad_headers, len(utterances))
    return utterances


def audio_manifest(split: str, train: str = "", val: str = "", test: str = "", features: dict | None = None,
                   augment: dict | None = None, tokens: list | str | None = None, stats_utterances: int = 500,
                   fitted: dict | None = None) -> AudioDataset:
    """One's own audio: a JSON Lines manifest per split (``train``/``val``/``test`` paths); ``split`` may
    also be a manifest path itself (to evaluate a checkpoint on any manifest). ``tokens``: a character
    list or file (one per line) instead of the characters of the training transcripts."""
    path = manifest_for_split("audio_manifest", split, {"train": train, "val": val, "test": test})
    return build_audio_dataset("audio_manifest", split, read_manifest(path), features, augment, tokens, fitted,
                               stats_utterances, {}, source=f"manifest {path}")


# ---------------------------------------------------------------------------------------------------------
# LibriSpeech: <root>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac + <speaker>-<chapter>.trans.txt

LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                       "test-clean", "test-other")


def read_librispeech(root: str | Path, subset: str) -> list[Utterance]:
    """The utterances of one subset, with their audio headers read (for batching by length)."""
    folder = Path(root) / subset
    if not folder.is_dir():
        raise ValueError(f"LibriSpeech subset {subset!r} not found at {folder} (expected "
                         f"{folder}/<speaker>/<chapter>/*.trans.txt; subsets: {', '.join(LIBRISPEECH_SUBSETS)}; "
                         f"download from https://www.openslr.org/12)")
    utterances = []
    for transcript in sorted(folder.glob("*/*/*.trans.txt")):
        for number, line in enumerate(transcript.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            utt_id, _, text = line.strip().partition(" ")
            if not text:
                raise ValueError(f"{transcript}:{number}: expected '<speaker>-<chapter>-<utt> TRANSCRIPT', got {line!r}")
            audio = transcript.parent / f"{utt_id}.flac"
            utterance = Utterance(utt_id, text, str(audio))
            try:
                utterance.num_samples, utterance.sample_rate = audio_info(audio)
            except AudioError as e:
                utterance.error = str(e)
            utterances.append(utterance)
    if not utterances:
        raise ValueError(f"LibriSpeech subset {folder} has no <speaker>/<chapter>/*.trans.txt files")
    bad = sum(u.error is not None for u in utterances)
    if bad:
        log.warning("LibriSpeech %s: %d of %d audio files cannot be read; they will be skipped", subset, bad,
                    len(utterances))
    return utterances


def librispeech(split: str, root: str = "data/LibriSpeech", train: list = ("train-clean-100",),
                val: list = ("dev-clean",), test: list = ("test-clean",), features: dict | None = None,
                augment: dict | None = None, tokens: list | str | None = None, stats_utterances: int = 500,
                fitted: dict | None = None) -> AudioDataset:
    """LibriSpeech in its published layout; ``train``/``val``/``test`` are lists of subsets (combined), and
    ``split`` may also name subsets directly: ``test-other`` or ``train-clean-100+train-clean-360``.
    Transcripts are kept as published (upper case, apostrophes); the vocabulary comes from the training
    subsets unless ``tokens`` is given."""
    groups = {"train": list(train), "val": list(val), "test": list(test)}
    subsets = groups.get(split) or split.split("+")
    unknown = [s for s in subsets if s not in LIBRISPEECH_SUBSETS and not (Path(root) / s).is_dir()]
    if unknown:
        raise ValueError(f"librispeech: unknown split or subset {unknown}; use train/val/test or subset names "
                         f"({', '.join(LIBRISPEECH_SUBSETS)}), joined with '+'")
    utterances = [u for subset in subsets for u in read_librispeech(root, subset)]
    return build_audio_dataset("librispeech", split, utterances, features, augment, tokens, fitted,
                               stats_utterances, {"sample_rate": 16000},
                               source=f"LibriSpeech {'+'.join(subsets)} under {root}")


# ---------------------------------------------------------------------------------------------------------
# Synthetic DTMF: the embedded offline default for audio


@dataclass
class DTMFSource:
    """Generates utterance ``utterance.index`` of a split: a pure function of (seed, split, index)."""
    seed: int
    split: str
    config: DTMFConfig

    def __call__(self, utterance: Utterance, sample_rate: int) -> torch.Tensor:
        return torch.from_numpy(dtmf_dataset_item(self.seed, self.split, utterance.index, self.config).wave)


def synthetic_dtmf(split: str, train_size: int = 2000, val_size: int = 200, test_size: int = 200, seed: int = 0,
                   dtmf: dict | None = None, features: dict | None = None, augment: dict | None = None,
                   stats_utterances: int = 500, fitted: dict | None = None) -> AudioDataset:
    """Telephone keypad strings ("415 555 0172") in noise, 8 kHz: 16 keys plus the space between digit
    groups. ``dtmf``: :class:`~ctcrnn.audio.dtmf.DTMFConfig` fields (durations, noise, band-pass)."""
    sizes = {"train": train_size, "val": val_size, "test": test_size}
    if split not in sizes:
        raise ValueError(f"synthetic_dtmf has splits {list(sizes)}, not {split!r}")
    if min(sizes.values()) < 1:
        raise ValueError(f"synthetic_dtmf split sizes must be positive, got {sizes}")
    config = DTMFConfig(**checked_options(DTMFConfig, dtmf or {}, "data.args.dtmf"))
    rate = (fitted["input_spec"]["features"] if fitted else features or {}).get("sample_rate", config.sample_rate)
    if rate != config.sample_rate:
        raise ValueError(f"DTMF audio is generated at {config.sample_rate} Hz but data.args.features.sample_rate is "
                         f"{rate}: set them equal (data.args.dtmf.sample_rate or data.args.features.sample_rate)")
    # Texts and lengths come from the plans alone (cheap); the audio is generated again per item in the
    # workers rather than held in memory.
    plans = [dtmf_dataset_plan(seed, split, i, config) for i in range(sizes[split])]
    utterances = [Utterance(f"dtmf-{split}-{i:05d}", text, index=i, num_samples=length, sample_rate=config.sample_rate)
                  for i, (text, _, length) in enumerate(plans)]
    tokens = sorted(set(config.keys) | {" "})
    return build_audio_dataset("synthetic_dtmf", split, utterances, features, augment, tokens, fitted,
                               stats_utterances, {"sample_rate": config.sample_rate, "n_mels": 40},
                               load=DTMFSource(seed, split, config))
