"""Video datasets on fixtures in their real on-disk formats (tests/video_fixtures.py): manifests, GRID and
PHOENIX-2014/-T parsing, splits, vocabularies and gloss normalisation, frame decoding, the frame cache,
skipped broken files, training-only augmentation, and a tiny train + evaluate run per dataset type."""
import json
import math

import pytest
import torch
import yaml
from tests.fixtures import assert_reports_add_up
from tests.fixtures.video import (
    MANIFEST_CLIPS,
    PHOENIX_2014,
    PHOENIX_2014T,
    align_text,
    write_grid,
    write_phoenix2014,
    write_phoenix2014t,
    write_video_manifest,
)

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.checkpoint import load_checkpoint
from ctcrnn.config import load_config
from ctcrnn.data import BLANK_LABEL, build_dataset, collate
from ctcrnn.evaluation.scoring import evaluate
from ctcrnn.registry import READERS
from ctcrnn.training.trainer import train
from ctcrnn.video.datasets import UNKNOWN_TOKEN
from ctcrnn.video.grid_corpus import GRID_LABELS, read_align
from ctcrnn.video.phoenix import normalise_glosses


def fitted_of(dataset) -> dict:
    return {"labels": list(dataset.labels), "input_spec": dict(dataset.input_spec)}


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    return write_video_manifest(tmp_path_factory.mktemp("manifest"))


@pytest.fixture(scope="module")
def grid_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("GRID")
    return root, write_grid(root)


@pytest.fixture(scope="module")
def phoenix_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("phoenix")
    return root, write_phoenix2014(root), write_phoenix2014t(root)


# ------------------------------------------------------------------------------------------- manifests

def test_manifest_labels_vocabulary_spec_decoding_and_broken_file(manifest, tmp_path):
    args = {"train": str(manifest["train"]), "val": str(manifest["val"])}
    train_set = build_dataset("video_manifest", "train", args)
    assert train_set.labels == [BLANK_LABEL, *manifest["labels"], UNKNOWN_TOKEN]
    spec = train_set.input_spec
    assert spec["modality"] == "video" and spec["step_shape"] == [3, 32, 48] and "word_delimiter" not in spec
    assert spec["fps"] == 25 and spec["source_fps"] == 25 and spec["video"]["size"] == []
    items = {train_set.clips[i].id: train_set[i] for i in range(len(train_set))}
    assert set(items) == {"clips/pour", "clips/stir", "clips/open", "clips/wipe", "wave", "clips/broken"}
    assert items["clips/pour"]["input"].shape == (manifest["frames"], 3, 32, 48)
    assert [train_set.labels[i] for i in items["clips/stir"]["target"]] == ["pour", "stir", "close"]
    # A frame folder (frame1 ... frame24, unpadded) is read in natural order, losslessly.
    wave = torch.from_numpy(manifest["wave"]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(items["wave"]["input"], wave)
    assert "error" in items["clips/broken"] and "broken.mp4" in items["clips/broken"]["error"]
    batch = collate(list(items.values()), tuple(spec["step_shape"]))
    assert len(batch["ids"]) == 5 and [s[0] for s in batch["skipped"]] == ["clips/broken"]
    assert train_set.lengths[:4] == [manifest["frames"]] * 4 and train_set.lengths[5] == 1
    val_set = build_dataset("video_manifest", "val", args, fitted=fitted_of(train_set))
    assert val_set.labels == train_set.labels and val_set.augment is None and len(val_set) == 3
    # The registered reader (ctcrnn transcribe/align) reads a file exactly as the dataset does.
    assert torch.equal(READERS.get("video")(train_set.clips[0].path, spec), train_set[0]["input"])


def test_manifest_text_targets_are_characters_with_a_word_delimiter(manifest):
    dataset = build_dataset("video_manifest", "train", {"train": str(manifest["text"]), "target": "text",
                                                       "video": {"size": [16, 24], "grayscale": True}})
    assert dataset.input_spec["word_delimiter"] == " " and dataset.input_spec["step_shape"] == [1, 16, 24]
    texts = ["open pour", "pour stir", "open close", "stir open", "wave close", "open"]
    assert dataset.labels == [BLANK_LABEL, *sorted(set().union(*texts))]
    item = dataset[0]
    assert item["text"] == "open pour" and "".join(dataset.labels[i] for i in item["target"]) == "open pour"
    assert item["input"].shape == (24, 1, 16, 24)


@pytest.mark.parametrize("line, message", [
    ('{"path": "a.mp4"}', "needs 'path' and one of 'labels', 'frame_labels_path'"),
    ('{"path": "a.mp4", "labels": "open pour"}', "must be a list of label names"),
    ('not json', "not a JSON object"),
])
def test_manifest_errors_name_file_and_line(tmp_path, line, message):
    path = tmp_path / "m.jsonl"
    path.write_text('{"path": "ok.mp4", "labels": ["a"]}\n\n' + line + "\n")
    with pytest.raises(ValueError, match=f"m.jsonl:3: .*{message}"):
        build_dataset("video_manifest", "train", {"train": str(path)})


def test_manifest_frame_labels_follow_the_frames_read(manifest, tmp_path, caplog):
    names = manifest["frame_names"]
    train_set = build_dataset("video_manifest", "train", {"train": str(manifest["framed_train"])})
    # Frame-label names join the vocabulary ("SIL" is in no transcript); a line without "labels" takes its
    # frame labels with runs collapsed as its transcript.
    assert train_set.labels == [BLANK_LABEL, "SIL", *manifest["labels"], UNKNOWN_TOKEN]
    items = {train_set.clips[i].id: train_set[i] for i in range(len(train_set))}
    assert [train_set.labels[t] for t in items["wave"]["target"]] == ["SIL", "wave", "close"]
    assert [train_set.labels[t] for t in items["clips/stir"]["target"]] == ["pour", "stir", "close"]
    for clip_id, item in items.items():
        if clip_id == "clips/broken":  # unreadable: a counted skip, as without frame labels
            assert "error" in item and "broken.mp4" in item["error"]
            continue
        assert [train_set.labels[t] for t in item["frame_labels"]] == names[clip_id]
        assert item["input"].shape[0] == len(names[clip_id]) == manifest["frames"]
    batch = collate(list(items.values()), tuple(train_set.input_spec["step_shape"]))
    assert [len(f) for f in batch["frame_labels"]] == batch["lengths"].tolist()
    # Read at half the rate: every other frame, and the label of each frame kept (a file and a frame folder).
    half = build_dataset("video_manifest", "train", {"train": str(manifest["framed_val"]), "video": {"fps": 12.5}})
    for i, clip in enumerate(half.clips):
        item = half[i]
        assert item["input"].shape[0] == len(item["frame_labels"]) == manifest["frames"] // 2
        assert [half.labels[t] for t in item["frame_labels"]] == names[clip.id][::2]
    # Temporal rescaling (training augmentation) takes each kept frame's label along.
    stretched = build_dataset("video_manifest", "train", {"train": str(manifest["framed_val"]),
                                                          "augment": {"temporal_rescale": 0.5}})
    for epoch in range(3):
        stretched.set_epoch(epoch, 0)
        item = stretched[0]
        labels = [stretched.labels[t] for t in item["frame_labels"]]
        assert item["input"].shape[0] == len(labels) and labels == sorted(labels, key=names["clips/pour"].index)
    # A label file 3 lines short of its clip: frames and labels are cut to the shorter, and that is logged.
    (tmp_path / "short.txt").write_text("".join(f"{n}\n" for n in names["clips/pour"][:-3]))
    short = tmp_path / "short.jsonl"
    clip = manifest["framed_train"].parent / "clips" / "pour.mp4"
    short.write_text(json.dumps({"path": str(clip), "labels": ["open", "pour"], "frame_labels_path": "short.txt"}) + "\n")
    with caplog.at_level("WARNING"):
        cut = build_dataset("video_manifest", "val", {"val": str(short)}, fitted=fitted_of(train_set))
    assert "1 of 1 clips have frame and label counts that differ (by up to 3 frames)" in caplog.text
    assert cut[0]["input"].shape[0] == len(cut[0]["frame_labels"]) == manifest["frames"] - 3
    # Frame labels name tokens: with character targets they are refused, naming the line.
    short.write_text(json.dumps({"path": str(clip), "text": "open pour", "frame_labels_path": "short.txt"}) + "\n")
    with pytest.raises(ValueError, match="short.jsonl:1: 'frame_labels_path' needs token targets"):
        build_dataset("video_manifest", "train", {"train": str(short), "target": "text"})


def test_frame_cache_second_read_does_not_decode(manifest, tmp_path):
    dataset = build_dataset("video_manifest", "train", {"train": str(manifest["train"]), "cache": str(tmp_path / "c"),
                                                       "video": {"size": [16, 24]}})
    first = [dataset[i] for i in range(len(dataset))]
    decodes = dataset.cache.decodes
    assert decodes == 5  # the broken clip fails before anything is cached
    second = [dataset[i] for i in range(len(dataset))]
    assert dataset.cache.decodes == decodes and dataset.cache.hits == 5
    assert all(torch.equal(a["input"], b["input"]) for a, b in zip(first, second) if "input" in a)


def test_augmentation_is_seeded_per_epoch_and_for_the_training_split_only(manifest):
    args = {"train": str(manifest["train"]), "val": str(manifest["val"]), "video": {"size": [20, 28], "crop": [16, 24]},
            "augment": {"random_crop": [16, 24], "flip": True, "temporal_rescale": 0.2, "colour_jitter": 0.2}}
    train_set = build_dataset("video_manifest", "train", args)
    train_set.set_epoch(0, 7)
    a, b = train_set[0]["input"], train_set[0]["input"]
    assert torch.equal(a, b) and a.shape[1:] == (3, 16, 24)
    train_set.set_epoch(1, 7)
    assert not torch.equal(a, train_set[0]["input"]) or a.shape != train_set[0]["input"].shape
    assert max(train_set.lengths[:4]) == round(manifest["frames"] * 1.2)
    val_set = build_dataset("video_manifest", "val", args, fitted=fitted_of(train_set))
    assert val_set.augment is None and val_set[0]["input"].shape == (manifest["frames"], 3, 16, 24)
    with pytest.raises(ValueError, match="needs video.crop set to the same"):
        build_dataset("video_manifest", "train", {**args, "video": {"size": [20, 28]}})


# ------------------------------------------------------------------------------------------- GRID

def test_grid_align_files_parse_in_frames_without_silences(tmp_path):
    path = tmp_path / "x.align"
    path.write_text(align_text(["bin", "blue", "at", "f", "two", "now"], 75))
    words = read_align(path)
    assert [w for w, _, _ in words] == ["bin", "blue", "at", "f", "two", "now"]
    assert words[0][1] == 1.0 and words[-1][2] == 74.0
    path.write_text("0 1000 sil\n1000 bin\n")
    with pytest.raises(ValueError, match="x.align:2: expected 'start end word'"):
        read_align(path)


def test_grid_overlapped_split_is_seeded_per_speaker_and_reads_both_layouts(grid_root):
    root, expected = grid_root
    args = {"root": str(root), "test_per_speaker": 1, "val_per_speaker": 1, "video": {"size": [24, 32]}}
    splits = {s: build_dataset("grid", s, args) for s in ("train", "val", "test")}
    ids = {s: [c.id for c in d.clips] for s, d in splits.items()}
    assert [i.split("/")[0] for i in ids["test"]] == ["s1", "s2", "s3"] and len(ids["val"]) == 3
    assert not set(ids["train"]) & set(ids["test"]) and not set(ids["train"]) & set(ids["val"])
    assert sorted(i for group in ids.values() for i in group) == sorted([*expected["sentences"], expected["broken"]])  # lost.align: no video
    assert ids == {s: [c.id for c in build_dataset("grid", s, args).clips] for s in ids}  # deterministic
    dataset = splits["train"]
    assert dataset.labels == GRID_LABELS and len(dataset.labels) == 28 and dataset.input_spec["word_delimiter"] == " "
    for i, clip in enumerate(dataset.clips):
        item = dataset[i]
        if clip.id == expected["broken"]:
            assert "error" in item and "bbbz9x.mpg" in item["error"]
            continue
        assert item["text"] == expected["sentences"][clip.id]
        assert item["input"].shape == (48, 3, 24, 32)  # .mpg (speakers 1, 2) and frame folders (speaker 3)
        assert "".join(dataset.labels[t] for t in item["target"]) == item["text"]


def test_grid_unseen_split_holds_out_whole_speakers(grid_root):
    root, _ = grid_root
    default_test = build_dataset("grid", "test", {"root": str(root), "setting": "unseen"})
    assert {c.speaker for c in default_test.clips} == {"s1", "s2"}  # LipNet's 1, 2, 20, 22 (20, 22 absent here)
    args = {"root": str(root), "setting": "unseen", "speakers": {"test": ["s3"], "val": [2]}}
    assert {c.speaker for c in build_dataset("grid", "train", args).clips} == {"s1"}
    assert {c.speaker for c in build_dataset("grid", "val", args).clips} == {"s2"}
    with pytest.raises(ValueError, match="the val split is empty"):
        build_dataset("grid", "val", {"root": str(root), "setting": "unseen"})
    with pytest.raises(ValueError, match="in two splits"):
        build_dataset("grid", "train", {**args, "speakers": {"train": [1, 3], "test": [3]}})


# ------------------------------------------------------------------------------------------- PHOENIX

def test_gloss_normalisation_follows_the_official_evaluation():
    for variant, table in (("2014", PHOENIX_2014), ("2014T", PHOENIX_2014T)):
        for raw, normalised in (row for rows in table.values() for row in rows):
            assert normalise_glosses(raw, variant) == normalised.split(), (variant, raw)
    assert normalise_glosses("__ON__ IX A B __PU__", "2014") == ["__ON__", "IX", "A+B"]
    assert normalise_glosses("__ON__ IX __OFF__", "2014T") == ["IX"]


@pytest.mark.parametrize("variant", ["2014", "2014T"])
def test_phoenix_corpus_vocabulary_frames_and_missing_folders(phoenix_root, variant):
    root, expected_2014, expected_2014t = phoenix_root
    expected = expected_2014 if variant == "2014" else expected_2014t
    train_set = build_dataset("phoenix2014", "train", {"root": str(root), "variant": variant})
    glosses = sorted({g for e in expected.values() if e["split"] == "train" for g in e["glosses"]})
    assert train_set.labels == [BLANK_LABEL, *glosses, UNKNOWN_TOKEN]
    assert train_set.input_spec["step_shape"] == [3, 32, 26] and train_set.input_spec["fps"] == 25
    for i, clip in enumerate(train_set.clips):
        item = train_set[i]
        assert [train_set.labels[t] for t in item["target"]] == expected[clip.id]["glosses"]
        assert item["input"].shape[0] == expected[clip.id]["frames"] == train_set.lengths[i]
    dev = build_dataset("phoenix2014", "val", {"root": str(root), "variant": variant}, fitted=fitted_of(train_set))
    nebel = next(i for i, c in enumerate(dev.clips) if "NEBEL" in c.units)
    assert train_set.labels[dev[nebel]["target"][-1]] == UNKNOWN_TOKEN and dev.unknown["NEBEL"] == 1
    train_glosses = set(train_set.labels)
    assert dev.unknown == {g: 1 for e in expected.values() if e["split"] == "dev" for g in e["glosses"]
                           if g not in train_glosses}
    test = build_dataset("phoenix2014", "test", {"root": str(root), "variant": variant}, fitted=fitted_of(train_set))
    missing = [c.id for i, c in enumerate(test.clips) if "error" in test[i]]
    assert missing == [k for k, e in expected.items() if e.get("missing")]


def test_phoenix_csv_errors_name_file_and_line(tmp_path):
    write_phoenix2014(tmp_path, frames=2)
    csv = tmp_path / "phoenix-2014-multisigner" / "annotations" / "manual" / "train.corpus.csv"
    csv.write_text(csv.read_text() + "broken|line\n")
    with pytest.raises(ValueError, match="train.corpus.csv:6: expected 4 '\\|'-separated fields"):
        build_dataset("phoenix2014", "train", {"root": str(tmp_path)})


# ------------------------------------------------------------------------------------------- tiny runs

TINY = {
    "model.name": "frame_cnn_rnn", "model.args.widths": "[4, 8]", "model.args.feature_dim": 16,
    "model.args.temporal_stride": 1, "model.args.temporal_kernel": 3, "model.encoder.hidden_size": 16,
    "model.encoder.num_layers": 1, "data.batch_size": 4, "data.eval_batch_size": 4, "data.num_workers": 0,
    "trainer.max_epochs": 1, "trainer.warmup_steps": 1, "trainer.progress": "false", "trainer.threads": 1,
}


def tiny_run(tmp_path, name: str, data_args: str, references: dict, **extra) -> dict:
    """Train one epoch and evaluate on the test split, whose clips are ``references`` ({id: reference}):
    the reports must add up (test_train.assert_reports_add_up)."""
    overrides = {**TINY, "data.name": name, "data.args": data_args, "trainer.out_dir": str(tmp_path),
                 "trainer.run_name": name, **extra}
    run_dir = train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and math.isfinite(rows[0]["train_loss"]) and math.isfinite(rows[0]["val_loss"])
    summary = evaluate(run_dir / "last.pt", out_dir=tmp_path / "eval")
    saved, tsv = assert_reports_add_up(tmp_path / "eval", references)
    assert saved == {k: v for k, v in summary.items() if k != "out_dir"} and saved["split"] == "test"
    return {"rows": rows, "summary": summary, "run_dir": run_dir, "tsv": tsv}


def test_tiny_manifest_run_trains_evaluates_and_counts_the_broken_clip(manifest, tmp_path):
    args = f"{{train: {manifest['train']}, val: {manifest['val']}, test: {manifest['val']}, video: {{size: [16, 16]}}}}"
    # The test split (val.jsonl): two clips and the frame folder, their label names as references.
    references = {**{k: " ".join(labels) for k, (labels, _) in list(MANIFEST_CLIPS.items())[:2]}, "wave": "wave close"}
    run = tiny_run(tmp_path, "video_manifest", args, references)
    assert run["rows"][0]["skipped_samples"] == 1
    assert run["summary"]["clips"] == 3 and run["summary"]["unreadable"] == 0


def test_tiny_manifest_run_with_frame_labels_scores_segmentation_and_alignment(manifest, tmp_path):
    args = (f"{{train: {manifest['framed_train']}, val: {manifest['framed_val']}, test: {manifest['framed_val']}, "
            f"video: {{size: [16, 16]}}}}")
    references = {**{k: " ".join(labels) for k, (labels, _) in list(MANIFEST_CLIPS.items())[:2]},
                  "wave": "SIL wave close"}
    run = tiny_run(tmp_path, "video_manifest", args, references, **{"eval.background": "[SIL]"})
    summary = run["summary"]
    assert summary["clips"] == 3 and summary["unreadable"] == 0
    for setting in ("segmentation", "alignment"):
        scores = summary[setting]
        assert {"acc", "edit", "f1@10", "f1@25", "f1@50", "acc_no_bg", "unaligned_clips"} <= set(scores)
        assert all(0.0 <= scores[k] <= 100.0 for k in ("acc", "edit", "f1@10", "f1@25", "f1@50", "acc_no_bg"))
    assert (tmp_path / "eval" / "segments.png").exists()


def test_tiny_grid_run_scores_wer_and_cer(grid_root, tmp_path):
    root, expected = grid_root
    args = f"{{root: {root}, test_per_speaker: 1, video: {{size: [16, 16], grayscale: true}}}}"
    # The seeded draw of one test clip per speaker, each with its fixture sentence.
    clips = build_dataset("grid", "test", yaml.safe_load(args)).clips
    assert len({c.id.split("/")[0] for c in clips}) == len(clips) == 3
    references = {c.id: expected["sentences"][c.id] for c in clips}
    run = tiny_run(tmp_path, "grid", args, references, **{"data.val_split": "test"})
    assert run["summary"]["clips"] == 3 and run["summary"]["unreadable"] == 0


def test_tiny_phoenix_run_writes_stm_and_ctm(phoenix_root, tmp_path):
    root, expected, _ = phoenix_root
    args = f"{{root: {root}, augment: {{flip: true, temporal_rescale: 0.2}}, video: {{size: [16, 16]}}}}"
    name = next(k for k, e in expected.items() if e["split"] == "test" and not e["missing"])
    # The reference as label names: a gloss never seen in training is the unknown token.
    seen = {g for e in expected.values() if e["split"] == "train" for g in e["glosses"]}
    reference = " ".join(g if g in seen else UNKNOWN_TOKEN for g in expected[name]["glosses"])
    run = tiny_run(tmp_path, "phoenix2014", args, {name: reference})
    assert run["summary"]["clips"] == 1 and run["summary"]["unreadable"] == 1  # one test folder is missing
    stm = (tmp_path / "eval" / "reference.stm").read_text().splitlines()
    assert stm == [f"{name} 1 {expected[name]['signer']} 0.0 1.79769e+308 {' '.join(expected[name]['glosses'])}"]
    # hypothesis.ctm: the clip's hypothesis, one gloss per line, 10 ms apart (sclite scores words, not times).
    hypothesis = run["tsv"][0]["hypothesis"].split()
    ctm = [line.split() for line in (tmp_path / "eval" / "hypothesis.ctm").read_text().splitlines()]
    assert ctm == [[name, "1", f"{k * 0.01:.3f}", "0.010", gloss] for k, gloss in enumerate(hypothesis)]
    # A one-epoch model may decode no gloss at all: the same file from a known three-gloss hypothesis.
    state = load_checkpoint(run["run_dir"] / "last.pt")
    test = build_dataset("phoenix2014", "test", {"root": str(root)},
                         fitted={"labels": state["labels"], "input_spec": state["input_spec"]})
    glosses = ["NORD", "WIND", "__OFF__"]
    test.write_predictions([{"id": name, "hyp": [test.labels.index(g) for g in glosses]}], tmp_path / "known")
    ctm = (tmp_path / "known" / "hypothesis.ctm").read_text().splitlines()
    assert ctm == [f"{name} 1 0.000 0.010 NORD", f"{name} 1 0.010 0.010 WIND", f"{name} 1 0.020 0.010 __OFF__"]
