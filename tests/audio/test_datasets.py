"""Audio datasets on fixtures in the real on-disk formats: a LibriSpeech tree of FLAC files with
``.trans.txt`` transcripts and a JSON Lines manifest of WAV files; vocabulary, resampling, bucketing,
augmentation on/off, global statistics, bad files skipped and counted."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf
import torch

import ctcrnn  # noqa: F401  (registers the audio datasets)
from ctcrnn.audio.datasets import AudioPipeline
from ctcrnn.audio.features import FeatureConfig
from ctcrnn.data import LengthBucketSampler, build_dataset, collate

FEATURES = {"sample_rate": 16000, "n_mels": 20, "win_ms": 25.0, "hop_ms": 10.0}


def tone(seconds: float, rate: int, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.fixture
def librispeech_root(tmp_path):
    """Two subsets in LibriSpeech's layout; one file at 8 kHz to exercise resampling."""
    root = tmp_path / "LibriSpeech"
    layout = {"train-clean-100": {("19", "198"): ["HELLO WORLD", "IT'S A TEST"], ("26", "495"): ["AB BA"]},
              "test-other": {("1688", "142285"): ["ZEBRA", "HELLO"]}}
    for subset, chapters in layout.items():
        for (speaker, chapter), texts in chapters.items():
            folder = root / subset / speaker / chapter
            folder.mkdir(parents=True)
            lines = []
            for n, text in enumerate(texts):
                utt = f"{speaker}-{chapter}-{n:04d}"
                rate = 8000 if utt == "26-495-0000" else 16000
                sf.write(folder / f"{utt}.flac", tone(0.3 + 0.1 * n, rate), rate)
                lines.append(f"{utt} {text}")
            (folder / f"{speaker}-{chapter}.trans.txt").write_text("\n".join(lines) + "\n")
    return root


def test_librispeech_layout_vocabulary_and_resampling(librispeech_root):
    args = {"root": str(librispeech_root), "train": ["train-clean-100"], "test": ["test-other"], "features": FEATURES}
    train = build_dataset("librispeech", "train", args)
    assert [u.id for u in train.utterances] == ["19-198-0000", "19-198-0001", "26-495-0000"]
    assert train.labels == ["<blank>", " ", "'", "A", "B", "D", "E", "H", "I", "L", "O", "R", "S", "T", "W"]
    item = train[0]
    assert item["text"] == "HELLO WORLD" and "".join(train.labels[i] for i in item["target"]) == "HELLO WORLD"
    assert item["input"].shape == (1 + 4800 // 160, 20)
    resampled = train[2]  # 0.3 s at 8 kHz, read at 16 kHz: 4800 samples
    assert resampled["input"].shape[0] == 1 + 4800 // 160 == train.lengths[2]
    assert train.input_spec["fps"] == 100.0 and train.input_spec["word_delimiter"] == " "
    # A subset named directly, read with the training vocabulary: Z is unknown to it, counted not hidden.
    test = build_dataset("librispeech", "test-other", args, fitted={"labels": train.labels,
                                                                    "input_spec": train.input_spec})
    assert test.labels == train.labels and test.unknown_chars == {"Z": 1}
    assert "".join(test.labels[i] for i in test[0]["target"]) == "EBRA" and test[0]["text"] == "ZEBRA"
    both = build_dataset("librispeech", "train-clean-100+test-other", {**args, "tokens": list("HELOWRDZBAITS' ")})
    assert len(both) == 5
    with pytest.raises(ValueError, match="unknown split or subset"):
        build_dataset("librispeech", "test-cleen", args)
    with pytest.raises(ValueError, match="openslr"):
        build_dataset("librispeech", "dev-clean", args)


@pytest.fixture
def manifest(tmp_path):
    """A JSONL manifest with relative paths: good WAVs (one stereo, one at 8 kHz) and three bad files."""
    clips = tmp_path / "clips"
    clips.mkdir()
    sf.write(clips / "a.wav", tone(0.5, 16000), 16000, subtype="PCM_16")
    sf.write(clips / "b.wav", np.stack([tone(0.4, 16000), tone(0.4, 16000, 880)], axis=1), 16000)
    sf.write(clips / "c.wav", tone(0.6, 8000), 8000)
    (clips / "text.wav").write_text("not audio at all")
    (clips / "empty.wav").write_bytes(b"")
    lines = [{"path": "clips/a.wav", "text": "ab ba"}, {"path": "clips/b.wav", "text": "abba"},
             {"path": "clips/c.wav", "text": "b a"}, {"path": "clips/text.wav", "text": "a"},
             {"path": "clips/empty.wav", "text": "b"}, {"path": "clips/missing.wav", "text": "ab"}]
    path = tmp_path / "train.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    return path


def test_manifest_reads_relative_paths_and_skips_bad_files(manifest, caplog):
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("audio_manifest", "train", {"train": str(manifest), "features": FEATURES})
    assert "3 of 6 audio files cannot be read" in caplog.text
    assert ds.labels == ["<blank>", " ", "a", "b"] and len(ds) == 6
    batch = collate([ds[i] for i in range(len(ds))])
    assert batch["ids"] == ["clips/a", "clips/b", "clips/c"] and batch["texts"] == ["ab ba", "abba", "b a"]
    assert [sample_id for sample_id, _ in batch["skipped"]] == ["clips/text", "clips/empty", "clips/missing"]
    assert all(name in reason for name, (_, reason) in zip(["text.wav", "empty.wav", "missing.wav"], batch["skipped"]))
    assert batch["lengths"].tolist() == [51, 41, 61]  # c: 0.6 s at 8 kHz -> 9600 samples at 16 kHz
    only_bad = collate([ds[3], ds[5]])
    assert only_bad["inputs"] is None and len(only_bad["skipped"]) == 2


@pytest.mark.parametrize("line, message", [
    ("{not json", r"train.jsonl:2: not a JSON object"),
    ('{"path": "clips/a.wav"}', r"train.jsonl:2: missing key\(s\) \['text'\]"),
    ('{"path": "other.wav", "id": "a", "text": "a"}', r"train.jsonl:2: id 'a' was already used on line 1"),
])
def test_manifest_format_errors_name_the_line(tmp_path, line, message):
    sf.write(tmp_path / "a.wav", tone(0.2, 16000), 16000)
    (tmp_path / "clips").mkdir()
    sf.write(tmp_path / "clips" / "a.wav", tone(0.2, 16000), 16000)
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"path": "a.wav", "text": "a"}) + "\n" + line + "\n")
    with pytest.raises(ValueError, match=message):
        build_dataset("audio_manifest", "train", {"train": str(path)})


def test_token_file_and_unknown_characters_are_reported(manifest, tmp_path, caplog):
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("a\n<space>\n")
    with caplog.at_level(logging.WARNING):
        ds = build_dataset("audio_manifest", "train", {"train": str(manifest), "tokens": str(tokens)})
    assert ds.labels == ["<blank>", "a", " "]
    assert ds.unknown_chars == {"b": 7}
    assert "not in the vocabulary ('b'x" in caplog.text


def test_val_split_gets_train_vocabulary_and_no_augmentation(manifest):
    args = {"train": str(manifest), "val": str(manifest), "features": FEATURES,
            "augment": {"speed": [1.25], "time_masks": 2, "time_mask_width": 5}}
    train = build_dataset("audio_manifest", "train", args)
    val = build_dataset("audio_manifest", "val", args, fitted={"labels": train.labels, "input_spec": train.input_spec})
    assert train.augment is not None and val.augment is None
    assert val[0]["input"].shape[0] == 51
    assert train[0]["input"].shape[0] == 1 + 6400 // 160  # 8000 samples at speed 1.25 -> 6400
    assert train.lengths[0] == 1 + 6400 // 160  # buckets plan for the slowest speed in the list
    # Evaluating a checkpoint on its own training data reads it as evaluation data: no augmentation.
    again = build_dataset("audio_manifest", "train", args, fitted={"labels": train.labels,
                                                                   "input_spec": train.input_spec})
    assert again.augment is None and again[0]["input"].shape[0] == 51


def test_global_statistics_are_fitted_on_train_and_reused(manifest):
    args = {"train": str(manifest), "val": str(manifest), "features": {**FEATURES, "normalize": "global"}}
    train = build_dataset("audio_manifest", "train", args)
    stats = train.input_spec["stats"]
    raw = AudioPipeline(FeatureConfig.from_dict({**FEATURES, "normalize": "none"}))
    frames = torch.cat([raw(train.load(train.utterances[i], 16000)) for i in range(3)])
    assert stats["frames"] == frames.shape[0] == 51 + 41 + 61
    assert torch.allclose(torch.tensor(stats["mean"]), frames.double().mean(0).float(), atol=1e-4)
    val = build_dataset("audio_manifest", "val", args, fitted={"labels": train.labels, "input_spec": train.input_spec})
    assert val.input_spec["stats"] == stats
    assert torch.allclose(val[0]["input"], (raw(train.load(train.utterances[0], 16000)) - torch.tensor(stats["mean"]))
                          / torch.tensor(stats["std"]), atol=1e-5)


def test_length_buckets_respect_the_frame_budget():
    lengths = [5, 50, 7, 31, 12, 48, 3, 30, 200, 9, 11, 29]
    sampler = LengthBucketSampler(lengths, max_steps=100, max_batch=3, seed=1, epoch=0)
    batches = list(sampler)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) <= 3
        assert len(batch) == 1 or max(lengths[i] for i in batch) * len(batch) <= 100
    assert [8] in batches  # longer than the budget: alone
    assert batches == list(LengthBucketSampler(lengths, 100, 3, seed=1, epoch=0))
    assert batches != list(LengthBucketSampler(lengths, 100, 3, seed=1, epoch=1))
    first = list(LengthBucketSampler(lengths, 100, 3, seed=1, epoch=0, sortagrad=True))
    longest = [max(lengths[i] for i in b) for b in first]
    assert longest == sorted(longest)
    later = [max(lengths[i] for i in b) for b in LengthBucketSampler(lengths, 100, 3, seed=1, epoch=1, sortagrad=True)]
    assert later != sorted(later)


def test_ids_default_to_relative_paths(tmp_path):
    for speaker in ("spk1", "spk2"):
        (tmp_path / speaker).mkdir()
        sf.write(tmp_path / speaker / "001.wav", tone(0.2, 16000), 16000)
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "spk1/001.wav", "text": "a"}\n{"path": "spk2/001.wav", "text": "b"}\n')
    assert [u.id for u in build_dataset("audio_manifest", "train", {"train": str(path)}).utterances] == \
        ["spk1/001", "spk2/001"]


@pytest.mark.parametrize("count, expected", [(2, None), (0, 51 + 41 + 61)])
def test_global_statistics_subset_size(manifest, count, expected):
    args = {"train": str(manifest), "features": {**FEATURES, "normalize": "global"}, "stats_utterances": count}
    ds = build_dataset("audio_manifest", "train", args)
    frames = ds.input_spec["stats"]["frames"]
    if expected is None:  # two of the three readable utterances, drawn with a fixed seed
        assert frames in {51 + 41, 51 + 61, 41 + 61}
        assert frames == build_dataset("audio_manifest", "train", args).input_spec["stats"]["frames"]
    else:
        assert frames == expected


def test_a_subset_named_training_split_fits_its_own_vocabulary(librispeech_root):
    args = {"root": str(librispeech_root), "features": FEATURES}
    train = build_dataset("librispeech", "test-other", {**args, "augment": {"gain_db": [-3, 3]}})
    assert train.labels == ["<blank>", "A", "B", "E", "H", "L", "O", "R", "Z"] and train.augment is not None


def test_unreadable_noise_files_and_rate_mismatch_fail_at_build_time(manifest, tmp_path):
    with pytest.raises(ValueError, match="noise_files: 1 of 1 cannot be read.*nope.wav"):
        build_dataset("audio_manifest", "train", {"train": str(manifest), "augment": {
            "noise_snr_db": [5, 10], "noise_files": [str(tmp_path / "nope.wav")]}})
    with pytest.raises(ValueError, match="generated at 8000 Hz but data.args.features.sample_rate is 16000"):
        build_dataset("synthetic_dtmf", "train", {"train_size": 2, "features": {"sample_rate": 16000}})
