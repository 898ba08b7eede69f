"""The command line end to end on a tiny SyntheticActions run: train then evaluate, beam search with an LM
built by ``ctcrnn lm build``, LM tuning, option parsing, and errors that reach the user without a traceback."""
import json
import logging
import math

import pytest

from ctcrnn.cli import attach_signed_values, build_parser, main
from ctcrnn.data import build_dataset
from ctcrnn.decoding.lm import build_ngram_lm, read_arpa
from ctcrnn.evaluation import scoring as evaluate_module
from tests.fixtures import assert_reports_add_up, split_references, tiny_config_overrides


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


def test_signed_option_values_parse_as_users_write_them(tmp_path):
    parser = build_parser()
    (tmp_path / "lm.arpa").write_text("")  # --lm is checked to be a readable file as it is parsed
    argv = ["tune-lm", "--checkpoint", "c.pt", "--lm", str(tmp_path / "lm.arpa"), "--word-bonuses", "-1,0,1",
            "--unk-score", "-inf", "--lm-weights", "0,1", "--split", "val"]
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
