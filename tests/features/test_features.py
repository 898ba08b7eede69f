"""The features modality: Breakfast in the MS-TCN layout (parsing, vocabulary, transcripts, splits, length
mismatches, broken files), FeatureProjection's lengths and padding, MS-TCN result files, the generic
manifest, and a tiny weakly supervised run scored in both settings."""
import json
import logging
import math

import numpy as np
import pytest
import torch
from tests.fixtures.features import ACTIONS, DIM, mstcn_read_recognition, mstcn_scores, write_breakfast
from tests.fixtures import assert_reports_add_up

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.data import build_dataset, collate
from ctcrnn.features import MSTCN_HEADER, UNALIGNED_LABEL, FeatureProjection, collapse_runs, read_features
from ctcrnn.features.breakfast_corpus import VAL_EVERY, read_mapping
from ctcrnn.nn.model import conv_output_lengths

LABELS = ["<blank>", *ACTIONS]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("breakfast")
    return root, write_breakfast(root)


def breakfast(root, split="train", fitted=None, **args):
    return build_dataset("breakfast", split, {"root": str(root), **args}, fitted=fitted)


def fitted_of(dataset):
    return {"labels": list(dataset.labels), "input_spec": dict(dataset.input_spec)}


def ids(names):
    return [LABELS.index(n) for n in names]


# ---------------------------------------------------------------------------------------------------------
# Breakfast: parsing, vocabulary, transcripts, splits


def test_items_are_transposed_features_frame_labels_and_collapsed_transcripts(tree):
    root, info = tree
    dataset = breakfast(root, "test")
    assert dataset.labels == LABELS
    assert dataset.input_spec == {"modality": "features", "step_shape": [DIM], "layout": "DT", "temporal_stride": 1,
                                  "fps": 15.0, "background": ["SIL"]}
    for index, video in enumerate(info["test"]):
        item = dataset[index]
        on_disk = np.load(root / "features" / f"{video}.npy")          # (D, T)
        assert item["id"] == video and item["input"].dtype == torch.float32
        assert torch.equal(item["input"], torch.from_numpy(on_disk.T))
        frames = info["frames"][video]
        assert item["frame_labels"] == ids(frames) and dataset.lengths[index] == len(frames)
        assert item["target"] == ids(collapse_runs(frames))
        assert LABELS[item["target"][0]] == LABELS[item["target"][-1]] == "SIL"   # SIL is an action of the transcript
        if video.endswith("_cereals"):
            assert item["target"] == ids(["SIL", "take_bowl", "pour_cereals", "SIL"])


def test_collapse_runs():
    assert collapse_runs(["a", "a", "b", "b", "a"]) == ["a", "b", "a"]
    assert collapse_runs([]) == [] and collapse_runs([3]) == [3]


def test_mapping_is_read_in_index_order_and_checked(tmp_path):
    path = tmp_path / "mapping.txt"
    path.write_text("2 pour_milk\n0 SIL\n\n1 take_bowl\n")
    assert read_mapping(path) == ["SIL", "take_bowl", "pour_milk"]
    path.write_text("0 SIL\n2 take_bowl\n")
    with pytest.raises(ValueError, match="0..N-1"):
        read_mapping(path)
    path.write_text("0 SIL\n1 SIL\n")
    with pytest.raises(ValueError, match="mapping.txt:2: .*twice"):
        read_mapping(path)
    path.write_text("0 SIL\nSIL 1\n")
    with pytest.raises(ValueError, match="mapping.txt:2: expected '<index> <name>'"):
        read_mapping(path)


def test_splits_train_val_test_and_bundle_paths(tree):
    root, info = tree
    train, val = breakfast(root, "train"), breakfast(root, "val")
    train_ids, val_ids = [v.id for v in train.videos], [v.id for v in val.videos]
    assert val_ids == sorted(info["train"])[::VAL_EVERY] and not set(train_ids) & set(val_ids)
    assert sorted(train_ids + val_ids) == sorted(info["train"])
    assert [v.id for v in breakfast(root, "train_all").videos] == info["train"]
    assert [v.id for v in breakfast(root, "test").videos] == info["test"]
    assert [v.id for v in breakfast(root, "test.split1.bundle").videos] == info["test"]
    with pytest.raises(ValueError, match=r"test.split2.bundle does not exist; available: \['test.split1.bundle'"):
        breakfast(root, "test", split_id=2)
    with pytest.raises(ValueError, match="splits train, val, train_all, test"):
        breakfast(root, "dev")
    with pytest.raises(ValueError, match="set data.args.root"):
        breakfast(root / "nowhere")


def test_temporal_stride_subsamples_features_and_frame_labels(tree):
    root, _ = tree
    full, strided = breakfast(root, "test"), breakfast(root, "test", temporal_stride=3)
    assert strided.input_spec["temporal_stride"] == 3 and strided.input_spec["fps"] == 5.0
    for i in range(len(full)):
        a, b = full[i], strided[i]
        assert torch.equal(b["input"], a["input"][::3]) and b["frame_labels"] == a["frame_labels"][::3]
        assert b["target"] == a["target"]                          # the transcript is the video's, at any rate
        assert strided.lengths[i] == math.ceil(full.lengths[i] / 3) == b["input"].shape[0]
    # A checkpoint's stride wins over the data arguments: the model reads data at its training rate.
    assert breakfast(root, "test", fitted=fitted_of(strided)).stride == 3


def test_background_is_checked_and_can_leave_the_transcript(tree):
    root, _ = tree
    dataset = breakfast(root, "test", background_in_transcript=False)
    assert all(LABELS.index("SIL") not in dataset[i]["target"] for i in range(len(dataset)))
    assert LABELS.index("SIL") in dataset[0]["frame_labels"]       # still scored
    with pytest.raises(ValueError, match=r"background \['BG'\] not in .*mapping.txt"):
        breakfast(root, "test", background=["BG"])


def test_a_checkpoint_with_another_vocabulary_is_refused(tree):
    root, _ = tree
    fitted = fitted_of(breakfast(root, "test"))
    fitted["labels"] = fitted["labels"][:-1]
    with pytest.raises(ValueError, match="use the mapping.txt it was trained with"):
        breakfast(root, "test", fitted=fitted)


def test_length_mismatch_cuts_both_to_the_shorter_and_is_logged(tmp_path, caplog):
    info = write_breakfast(tmp_path, videos=4, test_videos=2)
    longer, shorter = info["test"]
    frames = info["frames"][shorter]
    final_sil = len(frames) - max(i for i, a in enumerate(frames) if a != "SIL") - 1
    write_breakfast(tmp_path, videos=4, test_videos=2, length_change={longer: 3, shorter: -final_sil})
    with caplog.at_level(logging.WARNING, logger="ctcrnn.features"):
        dataset = breakfast(tmp_path, "test")
    assert "2 of 2 videos have feature and label lengths that differ (by up to" in caplog.text
    long_item, short_item = dataset[0], dataset[1]
    assert long_item["input"].shape[0] == len(long_item["frame_labels"]) == len(info["frames"][longer])
    assert short_item["input"].shape[0] == len(short_item["frame_labels"]) == len(frames) - final_sil
    # The transcript is taken from the cut labels: the final SIL is gone with its frames.
    assert short_item["target"] == ids(collapse_runs(frames[: len(frames) - final_sil]))
    assert LABELS[short_item["target"][-1]] != "SIL"
    assert dataset.truncated == [(longer, len(info["frames"][longer]) + 3, len(info["frames"][longer])),
                                 (shorter, len(frames) - final_sil, len(frames))]
    assert dataset.videos[1].gt_frames == len(frames)


def test_broken_feature_files_are_counted_skips_naming_the_file(tmp_path, caplog):
    info = write_breakfast(tmp_path, videos=6, test_videos=4)
    missing, corrupt, nan, good = info["test"]
    write_breakfast(tmp_path, videos=6, test_videos=4, missing=(missing,), corrupt=(corrupt,), nan=(nan,))
    (tmp_path / "features" / f"{missing}.npy").unlink()
    with caplog.at_level(logging.WARNING, logger="ctcrnn.features"):
        dataset = breakfast(tmp_path, "test")
    assert "2 of 4 videos have unusable features" in caplog.text      # NaNs are only seen when loaded
    items = [dataset[i] for i in range(4)]
    assert f"{missing}.npy: feature file missing" in items[0]["error"]
    assert f"{corrupt}.npy: not a readable .npy file" in items[1]["error"]
    assert f"{nan}.npy: 1 NaN/inf feature values" in items[2]["error"]
    assert "error" not in items[3]
    batch = collate(items, step_shape=(DIM,))
    assert batch["ids"] == [good] and [i for i, _ in batch["skipped"]] == [missing, corrupt, nan]
    # Features of another size than the others: skipped, naming both sizes.
    np.save(tmp_path / "features" / f"{missing}.npy", np.zeros((DIM + 1, 50), np.float32))
    assert "17 features per frame, but the model reads 16" in breakfast(tmp_path, "test")[0]["error"]


def test_a_label_missing_from_the_mapping_is_an_error_naming_file_and_line(tmp_path):
    info = write_breakfast(tmp_path, videos=4, test_videos=2)
    write_breakfast(tmp_path, videos=4, test_videos=2, unknown_label=(info["test"][1],))
    line = len(info["frames"][info["test"][1]]) // 2 + 1
    with pytest.raises(ValueError, match=rf"groundTruth/{info['test'][1]}.txt:{line}: label 'spill_milk' is not in "
                                         rf".*mapping.txt \(6 labels\)"):
        breakfast(tmp_path, "test")
    (tmp_path / "groundTruth" / f"{info['test'][0]}.txt").unlink()
    with pytest.raises(ValueError, match=rf"ground truth .*{info['test'][0]}.txt does not exist"):
        breakfast(tmp_path, "test")


# ---------------------------------------------------------------------------------------------------------
# FeatureProjection


@pytest.mark.parametrize("kernel, stride", [(1, 1), (3, 1), (1, 2), (3, 2), (5, 3), (7, 4)])
def test_projection_output_lengths_match_real_shapes_and_padding_never_leaks(kernel, stride):
    # float64: batched and alone are then equal up to summation order (~1e-16), on any CPU's conv kernels.
    frontend = FeatureProjection(6, 5, kernel=kernel, stride=stride).eval().double()
    assert frontend.stride == stride
    lengths = torch.arange(1, 14)
    x = torch.randn(len(lengths), 13, 6, dtype=torch.float64)
    with torch.no_grad():
        batched = frontend(x, lengths)
        out_lengths = frontend.output_lengths(lengths)
        assert batched.shape == (13, int(out_lengths.max()), 5)
        assert torch.equal(out_lengths, conv_output_lengths(lengths, kernel, stride, kernel // 2))
        for i, n in enumerate(lengths.tolist()):
            garbage = x[i : i + 1].clone()
            garbage[:, n:] = 1e3                          # what lies past a clip's end must not matter
            alone = frontend(x[i : i + 1, :n], lengths[i : i + 1])
            assert alone.shape[1] == int(out_lengths[i])
            torch.testing.assert_close(batched[i, : alone.shape[1]], alone[0], rtol=0, atol=1e-12)
            torch.testing.assert_close(frontend(garbage, lengths[i : i + 1])[0, : alone.shape[1]], alone[0],
                                       rtol=0, atol=1e-12)


def test_projection_refuses_even_kernels_and_wrong_feature_sizes():
    with pytest.raises(ValueError, match="odd"):
        FeatureProjection(6, 5, kernel=4)
    with pytest.raises(ValueError, match=r"expects \(B, T, 6\)"):
        FeatureProjection(6, 5)(torch.zeros(1, 3, 7), torch.tensor([3]))


# ---------------------------------------------------------------------------------------------------------
# MS-TCN result files


def test_write_predictions_writes_mstcn_files_at_the_ground_truth_frame_rate(tmp_path):
    info = write_breakfast(tmp_path / "d", videos=4, test_videos=2)
    first, second = info["test"]
    info = write_breakfast(tmp_path / "d", videos=4, test_videos=2, length_change={second: -5})
    dataset = breakfast(tmp_path / "d", "test", temporal_stride=2)
    a, b = dataset[0], dataset[1]
    results = [{"id": first, "segmentation_frames": a["frame_labels"], "alignment_frames": None},
               {"id": second, "segmentation_frames": b["frame_labels"], "alignment_frames": [2] * len(b["frame_labels"])}]
    dataset.write_predictions(results, tmp_path / "out")
    gt_first, gt_second = info["frames"][first], info["frames"][second]

    def upsampled(truth, used):
        # Input frame t (full rate) takes the label of the sampled frame at or before it (stride 2), up to
        # the ground truth's length; past the used frames, the last label.
        names = [truth[2 * (t // 2)] for t in range(min(len(truth), 2 * math.ceil(used / 2)))]
        return names + names[-1:] * (len(truth) - len(names))

    seg = (tmp_path / "out" / "mstcn" / "segmentation" / first).read_text()
    assert seg == MSTCN_HEADER + " ".join(upsampled(gt_first, len(gt_first))) and not seg.endswith("\n")
    assert mstcn_read_recognition(tmp_path / "out" / "mstcn" / "segmentation" / first) == upsampled(gt_first, len(gt_first))
    unaligned = mstcn_read_recognition(tmp_path / "out" / "mstcn" / "alignment" / first)
    assert unaligned == [UNALIGNED_LABEL] * len(gt_first)
    # Features 5 frames short of the ground truth: the last label fills the rest, so eval.py can read every frame.
    seg = mstcn_read_recognition(tmp_path / "out" / "mstcn" / "segmentation" / second)
    assert len(seg) == len(gt_second) and seg == upsampled(gt_second, len(gt_second) - 5)
    assert mstcn_read_recognition(tmp_path / "out" / "mstcn" / "alignment" / second) == ["take_bowl"] * len(gt_second)


# ---------------------------------------------------------------------------------------------------------
# Generic manifest and the file reader


def test_features_manifest_reads_paths_labels_and_frame_label_files(tmp_path):
    (tmp_path / "feats").mkdir()
    np.save(tmp_path / "feats" / "a.npy", np.ones((7, 4), np.float32))          # (T, D)
    np.save(tmp_path / "feats" / "b.npy", np.zeros((5, 4), np.float32))
    (tmp_path / "b.txt").write_text("stir\nstir\npour\npour\npour\npour\n")        # one frame longer: cut
    lines = [{"path": "feats/a.npy", "labels": ["pour", "stir"]}, {"path": "feats/b.npy", "frame_labels_path": "b.txt"}]
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    dataset = build_dataset("features_manifest", "train", {"train": str(manifest)})
    assert dataset.labels == ["<blank>", "pour", "stir"] and dataset.input_spec["step_shape"] == [4]
    a, b = dataset[0], dataset[1]
    assert a["id"] == "feats/a" and a["input"].shape == (7, 4) and a["target"] == [1, 2] and "frame_labels" not in a
    assert b["target"] == [2, 1] and b["frame_labels"] == [2, 2, 1, 1, 1] and b["input"].shape == (5, 4)
    manifest.write_text(json.dumps({"path": "feats/a.npy", "labels": ["pour", "shake"]}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: label 'shake' is not in the model's labels"):
        build_dataset("features_manifest", "train", {"train": str(manifest)}, fitted=fitted_of(dataset))
    manifest.write_text(json.dumps({"path": "feats/a.npy"}) + "\n")
    with pytest.raises(ValueError, match=r"train.jsonl:1: missing key\(s\) \[one of 'labels', 'frame_labels_path'\]"):
        build_dataset("features_manifest", "train", {"train": str(manifest)})


def test_reader_reads_a_file_as_the_checkpoint_was_trained(tree):
    root, info = tree
    spec = breakfast(root, "test", temporal_stride=2).input_spec
    video = info["test"][0]
    x = read_features(root / "features" / f"{video}.npy", spec)
    assert torch.equal(x, torch.from_numpy(np.load(root / "features" / f"{video}.npy").T[::2].copy()))


# ---------------------------------------------------------------------------------------------------------
# A tiny weakly supervised run, scored in both settings and written in the MS-TCN format


def test_tiny_breakfast_run_trains_evaluates_and_writes_mstcn_files(tmp_path):
    from ctcrnn.config import load_config
    from ctcrnn.evaluation.scoring import evaluate
    from ctcrnn.training.trainer import train

    info = write_breakfast(tmp_path / "breakfast", videos=16, test_videos=4)
    overrides = {
        "data.name": "breakfast", "data.args.root": str(tmp_path / "breakfast"),
        "data.batch_size": 4, "data.eval_batch_size": 4, "data.num_workers": 0,
        "model.name": "weak_action_bigru", "model.args.proj_dim": 16, "model.args.input_dropout": 0.0,
        "model.encoder.hidden_size": 16, "eval.background": "[SIL]",
        "trainer.max_epochs": 12, "trainer.lr": 0.02, "trainer.warmup_steps": 2, "trainer.progress": "false",
        "trainer.threads": 1, "trainer.out_dir": str(tmp_path), "trainer.run_name": "breakfast",
    }
    run_dir = train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < 0.7 * rows[0]["train_loss"]

    summary = evaluate(run_dir / "last.pt", split="test", out_dir=tmp_path / "eval")
    # The reports add up: one row per test video, its collapsed ground truth as the reference, TER recounted.
    references = {v: " ".join(collapse_runs(info["frames"][v])) for v in info["test"]}
    saved, tsv = assert_reports_add_up(tmp_path / "eval", references)
    assert saved == {k: v for k, v in summary.items() if k != "out_dir"} and saved["clips"] == 4
    assert (tmp_path / "eval" / "segments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # MS-TCN's eval.py, re-implemented, reads our files and gets our numbers (stride 1, no background).
    truth = [info["frames"][v] for v in info["test"]]
    for setting in ("segmentation", "alignment"):
        files = [tmp_path / "eval" / "mstcn" / setting / v for v in info["test"]]
        assert all(f.read_text().startswith(MSTCN_HEADER) for f in files)
        recognized = [mstcn_read_recognition(f) for f in files]
        theirs = mstcn_scores(recognized, truth)
        for key, value in theirs.items():
            assert summary[setting][key] == pytest.approx(value, abs=1e-6), (setting, key)
        # MoF without background: the same files, SIL frames left out; unaligned videos: all <none> frames.
        kept = [(t, r) for gt, rec in zip(truth, recognized) for t, r in zip(gt, rec) if t != "SIL"]
        assert summary[setting]["acc_no_bg"] == pytest.approx(100 * sum(t == r for t, r in kept) / len(kept))
        unaligned = sum(set(rec) == {UNALIGNED_LABEL} for rec in recognized)
        assert summary[setting]["unaligned_clips"] == unaligned
    # A greedy transcript always fits its own frames: only an empty one leaves a video unaligned.
    assert summary["segmentation"]["unaligned_clips"] == sum(r["hypothesis"] == "" for r in tsv)
