"""End to end: a tiny SyntheticActions run trains, checkpoints, resumes exactly, and evaluates."""
import csv
import json
import logging
import math

import pytest
import torch

from conftest import tiny_config_overrides
from ctcrnn.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from ctcrnn.cli import attach_signed_values, build_parser, main
from ctcrnn.config import config_to_dict, load_config
from ctcrnn.data import build_dataset, collate, make_loader
from ctcrnn.decoding.decoders import greedy_decode
from ctcrnn.decoding.lm import build_ngram_lm, read_arpa
from ctcrnn.metrics import characters, edit_distance, error_rate, words
from ctcrnn.registry import create_model
from ctcrnn.evaluation import scoring as evaluate_module
from ctcrnn.training import trainer as trainer_module
from ctcrnn.training.trainer import train


def assert_reports_add_up(out_dir, references: dict) -> tuple[dict, list[dict]]:
    """An evaluation's summary.json and hypotheses.tsv agree with the split and with each other: one row per
    clip with the ids and reference texts of ``references`` ({id: text}; in any order, a length-bucketing
    loader reorders clips), each row's edits recounted from its reference and hypothesis, and the summary's
    clip count, rates (TER of label names; WER and CER for character data) and exact-transcript share
    recomputed from the rows, for the greedy and the beam columns. Returns (summary, rows).
    The other end-to-end tests use it too (test_audio_train, test_video_datasets, test_features, ...)."""
    summary = json.loads((out_dir / "summary.json").read_text())
    header, *lines = (out_dir / "hypotheses.tsv").read_text().splitlines()
    header = header.split("\t")
    rows = [dict(zip(header, line.split("\t"), strict=True)) for line in lines]
    assert sorted((r["id"], r["reference"]) for r in rows) == sorted(references.items())  # each id once
    assert summary["clips"] == len(rows)
    units = [("edits", "ter", str.split)] if "edits" in header else [("char_edits", "cer", characters),
                                                                       ("word_edits", "wer", words)]
    for prefix, block in [("", summary), *([("beam_", summary["beam"])] if "beam" in summary else [])]:
        for column, rate, split in units:
            edits = [int(r[prefix + column]) for r in rows]
            assert edits == [edit_distance(split(r["reference"]), split(r[prefix + "hypothesis"])) for r in rows]
            total = sum(len(split(r["reference"])) for r in rows)
            assert block[rate] == pytest.approx(100 * sum(edits) / total, abs=1e-9), (prefix, rate)
        exact = [units[0][2](r["reference"]) == units[0][2](r[prefix + "hypothesis"]) for r in rows]
        assert block["transcript_exact"] == pytest.approx(100 * sum(exact) / len(rows), abs=1e-9), prefix
    return summary, rows


def split_references(run_dir, split: str) -> dict:
    """{id: reference} of a tiny SyntheticActions run's split, read from the dataset itself."""
    state = load_checkpoint(run_dir / "best.pt")
    ds = build_dataset("synthetic_actions", split, state["config"]["data"]["args"])
    return {item["id"]: " ".join(ds.labels[t] for t in item["target"]) for item in (ds[i] for i in range(len(ds)))}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("runs")
    run_dir = train(load_config(None, tiny_config_overrides(tmp)))
    return run_dir


def test_run_folder_contents(tiny_run):
    rows = [json.loads(line) for line in (tiny_run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    # metrics.csv holds the same rows (csv writes None as "").
    with open(tiny_run / "metrics.csv", newline="") as f:
        assert list(csv.DictReader(f)) == [{k: "" if v is None else str(v) for k, v in r.items()} for r in rows]
    state = load_checkpoint(tiny_run / "last.pt")
    assert state["labels"][0] == "<blank>" and state["input_spec"]["modality"] == "video"
    assert state["config"]["model"]["encoder"]["cell"] == "gru"  # resolved encoder saved, not just overrides
    assert state["arch"]["name"] == "frame_cnn_rnn"
    # config.yaml is the run's config: the one in the checkpoint, with the test's overrides in it.
    config = load_config(tiny_run / "config.yaml")
    assert config_to_dict(config) == state["config"]
    assert (config.trainer.max_epochs, config.data.args["train_size"], config.model.args["widths"]) == (2, 48, [8, 16])
    # last.pt is the end of epoch 2; best.pt the first epoch of the lowest validation TER, with its row's score.
    assert state["epoch"] == 1 and state["metrics"] == rows[-1]
    best = load_checkpoint(tiny_run / "best.pt")
    best_row = min(rows, key=lambda r: (r["val_ter"], r["epoch"]))
    assert best["epoch"] + 1 == best_row["epoch"] and best["metrics"] == best_row


def test_checkpoint_rebuilds_identical_outputs(tiny_run, tmp_path):
    state = load_checkpoint(tiny_run / "best.pt")
    model = model_from_checkpoint(state)
    ds = build_dataset("synthetic_actions", "val", state["config"]["data"]["args"])
    # The rebuilt model reproduces the validation score recorded while training.
    val = trainer_module.validate(model, make_loader(ds, 8, 0, torch.device("cpu")), "cpu")
    assert round(val["ter"], 3) == state["metrics"]["val_ter"]
    batch = collate([ds[i] for i in range(4)])
    expected = model(batch["inputs"], batch["lengths"])[0]
    save_checkpoint(state, tmp_path / "copy.pt")
    again = model_from_checkpoint(load_checkpoint(tmp_path / "copy.pt"))
    assert torch.equal(again(batch["inputs"], batch["lengths"])[0], expected)


def test_checkpoint_from_before_a_builder_argument_existed_still_loads(tiny_run):
    """A checkpoint whose arch predates aux_ctc_weight (default 1 now) rebuilds the head-less network it holds."""
    state = load_checkpoint(tiny_run / "best.pt")
    state["arch"]["kwargs"]["aux_ctc_weight"] = 0.0
    plain = create_model(state["arch"]["name"], **state["arch"]["kwargs"])
    plain.load_state_dict({k: v for k, v in state["model"].items() if not k.startswith("aux_head.")})
    state["model"] = plain.state_dict()
    del state["arch"]["kwargs"]["aux_ctc_weight"]
    assert model_from_checkpoint(state).aux_head is None


def test_resume_continues_the_same_run(tmp_path, monkeypatch):
    """A run killed during epoch 2 and resumed from last.pt ends bitwise equal to an uninterrupted run."""
    full = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.run_name": "full"})))
    calls = []
    real_validate = trainer_module.validate

    def crash_in_second_epoch(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_validate(*args)

    monkeypatch.setattr(trainer_module, "validate", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.run_name": "killed"})))
    monkeypatch.undo()
    killed = tmp_path / "killed"
    assert load_checkpoint(killed / "last.pt")["epoch"] == 0
    resumed = train(None, resume=killed / "last.pt")
    assert resumed == killed
    a, b = load_checkpoint(full / "last.pt"), load_checkpoint(resumed / "last.pt")
    assert b["epoch"] == 1 and a["step"] == b["step"]
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    strip = lambda rows: [{k: v for k, v in r.items() if not k.endswith("_s") and k != "clips_per_s"}  # noqa: E731
                          for r in rows]
    rows = lambda run: [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]  # noqa: E731
    assert strip(rows(full)) == strip(rows(resumed))


def test_a_second_run_never_mixes_into_the_first(tmp_path):
    overrides = tiny_config_overrides(tmp_path, **{"trainer.max_epochs": 1, "data.args.train_size": 8})
    first, second = train(load_config(None, overrides)), train(load_config(None, overrides))
    assert first.name == "tiny" and second.name == "tiny-2"
    assert len((first / "metrics.jsonl").read_text().splitlines()) == 1


def test_checkpoint_refuses_code_and_garbage(tmp_path):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    evil = tmp_path / "evil.pt"
    torch.save({"format": "ctcrnn-checkpoint-1", "x": Payload()}, evil)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(evil)
    truncated = tmp_path / "truncated.pt"
    save_checkpoint({"model": {"w": torch.ones(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(CheckpointError, match="truncated or corrupted"):
        load_checkpoint(truncated)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.ones(1)}, plain)
    with pytest.raises(CheckpointError, match="not a ctcrnn checkpoint"):
        load_checkpoint(plain)


def test_atomic_save_keeps_old_file_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint({"step": 1}, path)

    def broken_save(obj, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError):
        save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]  # no temp file left behind


def test_tiny_model_learns(tmp_path):
    """Fit 8 clips: the loss must fall far and greedy decoding must recover most of the transcripts."""
    overrides = tiny_config_overrides(tmp_path, **{
        "data.args.train_size": 8, "data.args.val_size": 8, "data.val_split": "train", "trainer.max_epochs": 80,
        "trainer.lr": 0.01, "trainer.warmup_steps": 5, "model.args.temporal_stride": 1, "model.args.temporal_kernel": 5,
        # The plain frame CNN: with the recipe's motion cues and input BatchNorm, 8 clips of 16x16 do not
        # memorise in 80 steps (TER 55-67 %); those options are covered by the smoke and recipe tests.
        "model.args.motion_cues": "false", "model.args.input_norm": "false", "model.args.aux_ctc_weight": 0,
        "model.encoder.hidden_size": 48})
    run_dir = train(load_config(None, overrides))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["train_loss"] < 0.1 * rows[0]["train_loss"]
    assert rows[0]["val_ter"] >= 80 and min(r["val_ter"] for r in rows) <= 40
    state = load_checkpoint(run_dir / "best.pt")
    model = model_from_checkpoint(state)
    ds = build_dataset("synthetic_actions", "train", state["config"]["data"]["args"])
    batch = collate([ds[i] for i in range(8)])
    with torch.no_grad():
        log_probs, out_lengths = model(batch["inputs"], batch["lengths"])
    hyps = greedy_decode(log_probs, out_lengths)
    assert round(error_rate(batch["targets"], hyps), 3) == state["metrics"]["val_ter"]


def test_cli_train_then_evaluate_writes_reports(tmp_path, capsys):
    main(["train", *tiny_config_overrides(tmp_path, **{"trainer.max_epochs": 1})])
    out = capsys.readouterr().out
    run = tmp_path / "tiny"
    # train then scores best.pt on the test split (into <run>/eval-test) and prints that summary's numbers.
    test_summary, _ = assert_reports_add_up(run / "eval-test", split_references(run, "test"))
    assert f"test: 8 clips, transcript error rate {test_summary['ter']:.2f}%" in out
    assert f"segmentation frame acc {test_summary['segmentation']['acc']:.1f}" in out
    main(["evaluate", "--checkpoint", str(run / "best.pt"), "--split", "val", "--out", str(tmp_path / "ev")])
    summary, rows = assert_reports_add_up(tmp_path / "ev", split_references(run, "val"))
    assert (summary["clips"], summary["split"], summary["epoch"], summary["unreadable"]) == (8, "val", 1, 0)
    assert summary["checkpoint"] == str(run / "best.pt")
    for setting in ("segmentation", "alignment"):
        scores = summary[setting]
        assert all(0 <= scores[k] <= 100 for k in ("acc", "edit", "f1@10", "f1@25", "f1@50")), scores
        assert scores["f1@10"] >= scores["f1@25"] >= scores["f1@50"]  # a match at a higher IoU is one at a lower
        assert 0 <= scores["unaligned_clips"] <= 8
    # A greedy transcript always fits its own frames: only an empty one leaves a clip unaligned.
    assert summary["segmentation"]["unaligned_clips"] == sum(r["hypothesis"] == "" for r in rows)
    assert f"| transcript error rate (%) | {summary['ter']:.2f} |" in (tmp_path / "ev" / "summary.md").read_text()
    assert (tmp_path / "ev" / "segments.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_beam_search_lm_build_and_tuning(tmp_path, capsys, monkeypatch, caplog):
    """lm build writes an ARPA file from transcripts, evaluate --beam reports beam search beside greedy,
    tune-lm scores the whole grid on the validation split and picks its best pair."""
    main(["train", "--no-eval", *tiny_config_overrides(tmp_path, **{"trainer.max_epochs": 1})])
    run = tmp_path / "tiny"
    ds = build_dataset("synthetic_actions", "train", {"train_size": 48, "frame_size": 16, "min_frames": 20,
                                                      "max_frames": 32})
    names = ds.labels
    (tmp_path / "text.txt").write_text("\n".join(" ".join(names[t] for t in ds[i]["target"]) for i in range(48)))
    main(["lm", "build", str(tmp_path / "text.txt"), "--order", "2", "--out", str(tmp_path / "lm.arpa")])
    # The file holds the bigram model of those transcripts (words = label names), to the 9 digits written.
    built = build_ngram_lm([line.split() for line in (tmp_path / "text.txt").read_text().splitlines()], order=2)
    read = read_arpa(tmp_path / "lm.arpa")
    assert sorted(read.vocab) == sorted(built.vocab)
    assert [len(ids) for ids, _, _ in read.ngrams] == [len(ids) for ids, _, _ in built.ngrams]
    pairs = [(w, c) for w in built.vocab if w != "<s>" for c in built.vocab if c != "</s>"]
    assert [read.log_prob(w, [c]) for w, c in pairs] == pytest.approx([built.log_prob(w, [c]) for w, c in pairs],
                                                                       abs=1e-6)
    main(["evaluate", "--checkpoint", str(run / "best.pt"), "--split", "val", "--out", str(tmp_path / "ev"),
          "--beam", "8", "--lm", str(tmp_path / "lm.arpa"), "--lm-weight", "0.5", "--unk-score", "-5",
          "--batch-size", "2"])
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert set(summary["beam"]) == {"ter", "transcript_exact", "decoder"}
    assert "beam 8, LM lm.arpa" in summary["beam"]["decoder"] and "unk score -5.0" in summary["beam"]["decoder"]
    header = (tmp_path / "ev" / "hypotheses.tsv").read_text().splitlines()[0].split("\t")
    assert header == ["id", "reference", "hypothesis", "edits", "beam_hypothesis", "beam_edits"]
    references = split_references(run, "val")
    assert_reports_add_up(tmp_path / "ev", references)  # the beam's TER too, from the beam_edits column
    # Evaluation decodes several model batches at once; any grouping of the same log-probs (the same model
    # batches: another batch size changes them in their last bits, which may flip a near tie) gives the same
    # hypotheses.
    monkeypatch.setattr(evaluate_module, "DECODE_BATCH", 3)
    main(["evaluate", "--checkpoint", str(run / "best.pt"), "--split", "val", "--out", str(tmp_path / "ev3"),
          "--beam", "8", "--lm", str(tmp_path / "lm.arpa"), "--lm-weight", "0.5", "--unk-score", "-5",
          "--batch-size", "2"])
    assert (tmp_path / "ev3" / "hypotheses.tsv").read_text() == (tmp_path / "ev" / "hypotheses.tsv").read_text()
    capsys.readouterr()
    # Values starting with "-" as users write them (argparse alone reads "-0.5,0.5" and "-inf" as options).
    main(["tune-lm", "--checkpoint", str(run / "best.pt"), "--lm", str(tmp_path / "lm.arpa"), "--beam", "4",
          "--lm-weights", "0,1", "--word-bonuses", "-0.5,0.5", "--unk-score", "-2", "--out", str(tmp_path / "grid.json")])
    result = json.loads((tmp_path / "grid.json").read_text())
    assert result["split"] == "val"
    grid = sorted((g["lm_weight"], g["word_bonus"]) for g in result["grid"])
    assert grid == [(0, -0.5), (0, 0.5), (1, -0.5), (1, 0.5)]
    assert all(0 <= g["ter"] for g in result["grid"]) and result["best"] in result["grid"]
    assert result["best"]["ter"] == min(g["ter"] for g in result["grid"])
    best = result["best"]
    assert (f"best: --lm-weight {best['lm_weight']} --word-bonus {best['word_bonus']} ({best['ter']:.2f}%)"
            in capsys.readouterr().out)
    with caplog.at_level(logging.WARNING):
        main(["tune-lm", "--checkpoint", str(run / "best.pt"), "--lm", str(tmp_path / "lm.arpa"), "--beam", "2",
              "--lm-weights", "1", "--word-bonuses", "0", "--unk-score", "-inf", "--split", "test"])
    assert "tuning on the test split" in caplog.text
    for option in (["--lm", str(tmp_path / "lm.arpa")], ["--unk-score", "-1"]):
        with pytest.raises(SystemExit, match="add --beam"):
            main(["evaluate", "--checkpoint", str(run / "best.pt"), *option])
    # The same evaluation through another engine; pyctcdecode refuses a lexicon (it has no such constraint).
    (tmp_path / "words.txt").write_text("\n".join(names[1:]))
    with pytest.raises(SystemExit, match="no lexicon constraint"):
        main(["evaluate", "--checkpoint", str(run / "best.pt"), "--beam", "4", "--decoder", "pyctcdecode",
              "--lexicon", str(tmp_path / "words.txt")])
    # flashlight-text is a test dependency (pyproject's test extra): this always runs.
    main(["evaluate", "--checkpoint", str(run / "best.pt"), "--split", "val", "--out", str(tmp_path / "fl"),
          "--beam", "8", "--lm", str(tmp_path / "lm.arpa"), "--lm-weight", "0.5", "--decoder", "flashlight"])
    flashlight, _ = assert_reports_add_up(tmp_path / "fl", references)
    assert flashlight["beam"]["decoder"] == "flashlight beam 8, LM lm.arpa weight 0.5"


def test_signed_option_values_parse_as_users_write_them():
    parser = build_parser()
    argv = ["tune-lm", "--checkpoint", "c.pt", "--lm", "lm.arpa", "--word-bonuses", "-1,0,1", "--unk-score", "-inf",
            "--lm-weights", "0,1", "--split", "val"]
    assert attach_signed_values(argv)[5:8] == ["--word-bonuses=-1,0,1", "--unk-score=-inf", "--lm-weights"]
    args = parser.parse_args(attach_signed_values(argv))
    assert args.word_bonuses == [-1.0, 0.0, 1.0] and args.unk_score == -math.inf and args.split == "val"
    args = parser.parse_args(attach_signed_values(["evaluate", "--checkpoint", "c.pt", "--lm-weight", "-.5",
                                                   "--word-bonus", "-2", "--beam", "4"]))
    assert (args.lm_weight, args.word_bonus, args.beam) == (-0.5, -2.0, 4)
    assert attach_signed_values(["evaluate", "--lm", "-x.arpa"]) == ["evaluate", "--lm", "-x.arpa"]  # not a number


@pytest.mark.parametrize("args, message", [
    (["train", "trainer.max_epoch=1"], "did you mean 'max_epochs'"),
    (["train", "model.name=frame_cnn_rn"], "did you mean 'frame_cnn_rnn'"),
    (["train", "model.args.feature_dims=3"], "did you mean 'feature_dim'"),
    (["train", "--resume", "x.pt", "--config", "y.yaml"], "drop --config"),
    (["evaluate", "--checkpoint", "missing.pt"], "does not exist"),
])
def test_cli_reports_errors_without_traceback(args, message, tmp_path):
    with pytest.raises(SystemExit, match=message):
        main(args[:1] + [f"trainer.out_dir={tmp_path}"] + args[1:] if args[0] == "train" and "--resume" not in args
             else args)
