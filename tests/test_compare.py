"""``ctcrnn compare``: a tiny two-encoder comparison end to end, continuing it, failures and bad names."""
import json

import pytest

from ctcrnn.compare import compare, parse_encoders

TINY = {
    "data.args.train_size": 24, "data.args.val_size": 8, "data.args.test_size": 8,
    "data.args.frame_size": 16, "data.args.min_frames": 20, "data.args.max_frames": 32,
    "data.batch_size": 8, "data.eval_batch_size": 8, "data.num_workers": 0,
    "model.args.widths": "[8, 16]", "model.args.feature_dim": 32, "model.encoder.hidden_size": 16,
    "trainer.max_epochs": 1, "trainer.warmup_steps": 2,
}


def tiny(**extra) -> list[str]:
    return [f"{k}={v}" for k, v in {**TINY, **extra}.items()]


def test_compare_two_encoders_then_continue(tmp_path):
    out = tmp_path / "cmp"
    report = compare(None, "gru,transformer", out, overrides=tiny(), lengths=[])
    for name in ("report.md", "report.json", "curves.png"):
        assert (out / name).stat().st_size > 0
    assert [row["encoder"] for row in report["table"]] == ["gru", "transformer"]
    for row in report["table"]:
        assert row["ok"] == 1 and not row["failed"] and 0 <= row["test_ter_mean"] <= 100 and row["peak_rss_mib"] > 0
    sizing = report["sizing"]
    assert abs(sizing["transformer"]["params_vs_gru"]) <= 0.15 and sizing["transformer"]["encoder"]["type"] == "transformer"
    result = next(r for r in report["results"] if r["encoder"] == "transformer")
    assert result["epochs"] == 1 and result["curve"][0][1] == result["best_val_ter"] and result["s_per_step"] > 0
    gru_ter = report["table"][0]["test_ter_mean"]
    assert report["table"][0]["test_ter_per_seed"] == [gru_ter]
    assert f"| gru | {gru_ter:.2f} ± 0.00 | {gru_ter:.2f} |" in (out / "report.md").read_text()

    # Interrupted after training the transformer but before it was marked done: the rerun continues it from
    # its last.pt and keeps the finished GRU untouched.
    gru_done = out / "runs" / "gru-seed0" / "done.json"
    before = gru_done.stat().st_mtime_ns
    (out / "runs" / "transformer-seed0" / "done.json").unlink()
    again = compare(None, "gru,transformer", out, overrides=tiny(), lengths=[])
    assert gru_done.stat().st_mtime_ns == before
    resumed = next(r for r in again["results"] if r["encoder"] == "transformer")
    assert resumed["status"] == "ok" and resumed["resumed_from_epoch"] == 1 and resumed["epochs"] == 1
    assert json.loads((out / "report.json").read_text())["table"][1]["ok"] == 1


def test_a_failing_variant_is_reported_while_the_others_complete(tmp_path):
    # nhead=4 does not divide a transformer width of 30; the LSTM ignores both fields and trains.
    report = compare(None, "lstm,transformer", tmp_path, overrides=tiny(**{"model.encoder.d_model": 30,
                                                                            "model.encoder.nhead": 4}), lengths=[])
    lstm, transformer = report["table"]
    assert lstm["ok"] == 1 and not lstm["failed"]
    assert transformer["ok"] == 0 and "nhead=4 must divide" in transformer["failed"]
    assert "failed: transformer-seed0: ValueError" in (tmp_path / "report.md").read_text()


def test_budget_too_small_for_one_epoch(tmp_path):
    report = compare(None, "gru", tmp_path, overrides=tiny(), budget_minutes=0.001, lengths=[])
    assert "too small for one epoch" in report["table"][0]["failed"]


def test_unknown_encoder_names_list_the_valid_ones():
    with pytest.raises(ValueError, match="unknown encoder.*'mamba'.*choose from gru, lstm, transformer, tcn"):
        parse_encoders("gru,mamba")
    assert parse_encoders("gru, lstm,gru") == ["gru", "lstm"]


def test_widths_are_sized_to_the_grus_parameters():
    from ctcrnn.compare import best_width, size_variants

    sized = size_variants(None, ["gru", "tcn", "transformer"], tiny())
    for name in ("tcn", "transformer"):
        assert abs(sized[name]["params_vs_gru"]) <= 0.15 and sized[name]["encoder"]["d_model"] > 0
    assert any("model.encoder.type=tcn" == o for o in sized["tcn"]["overrides"])
    assert best_width(lambda w: w * w, 1000, 4) == 32  # 32² = 1024 is the closest square of a multiple of 4


def test_cli_compare_refuses_unknown_encoders(tmp_path):
    from ctcrnn.cli import main

    with pytest.raises(SystemExit, match="unknown encoder.*'bogus'.*choose from gru, lstm, transformer, tcn"):
        main(["compare", "--encoders", "gru,bogus", "--out", str(tmp_path)])


def test_a_variant_that_failed_is_tried_again_by_the_rerun(tmp_path, monkeypatch):
    # The evaluation breaks once (as when the code changed under a running comparison and the checkpoint no
    # longer matched the parent's config classes); the rerun evaluates the finished training without
    # training again, and the variant keeps the peak memory of the child that trained it.
    import ctcrnn.compare as compare_module

    evaluate_variant = compare_module.evaluate_variant

    def broken(run_dir):
        raise RuntimeError("unknown key 'model.encoder.lookahead'")
    monkeypatch.setattr(compare_module, "evaluate_variant", broken)
    first = compare(None, "gru", tmp_path, overrides=tiny(), lengths=[])
    assert first["table"][0]["ok"] == 0 and "evaluation: RuntimeError" in first["table"][0]["failed"]
    failed = json.loads((tmp_path / "runs" / "gru-seed0" / "done.json").read_text())
    assert failed["status"] == "failed" and failed["epochs"] == 1 and failed["peak_rss_mib"] > 0
    assert "Budget per variant: 1 epochs (trainer.max_epochs)" in (tmp_path / "report.md").read_text()

    monkeypatch.setattr(compare_module, "evaluate_variant", evaluate_variant)
    again = compare(None, "gru", tmp_path, overrides=tiny(), lengths=[])
    result = again["results"][0]
    assert again["table"][0]["ok"] == 1 and not again["table"][0]["failed"] and result["status"] == "ok"
    assert result["resumed_from_epoch"] == 1 and result["epochs"] == 1  # evaluated, not trained again
    assert result["peak_rss_mib"] >= failed["peak_rss_mib"] and result["wall_s"] > failed["wall_s"]
