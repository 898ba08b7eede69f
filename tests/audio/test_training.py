"""Audio end to end: a tiny DTMF model trains (loss falls), evaluates with WER/CER equal to jiwer's, and
its checkpoint transcribes and force-aligns WAV files through the command line."""
import json
import math

import jiwer
import pytest
import soundfile as sf
import torch
from tests.fixtures import assert_reports_add_up

from ctcrnn.audio.dtmf import DTMFConfig, dtmf_dataset_item, dtmf_dataset_plan
from ctcrnn.cli import main
from ctcrnn.config import load_config
from ctcrnn.evaluation.scoring import score
from ctcrnn.training.trainer import train

LABELS = ["<blank>", " ", "a", "b", "c"]
SPEC = {"word_delimiter": " "}


def ids(text: str) -> list[int]:
    return [LABELS.index(c) for c in text]


def test_wer_and_cer_equal_jiwer_and_count_unknown_characters():
    # Hand count: refs "ab ca" / "b b" / "cab"; hyps "ab c" / "b b b" / "cb".
    refs, hyps = ["ab ca", "b b", "cab"], ["ab c", "b b b", "cb"]
    results = [{"id": str(i), "ref": ids(r), "hyp": ids(h), "text": r} for i, (r, h) in enumerate(zip(refs, hyps))]
    summary = score(results, LABELS, [], SPEC)
    # words: ca->c (1 S), + "b" (1 I), cab->cb (1 S): 3 / 5 words; chars: 1 D, 2 I, 1 D: 4 / 11 chars.
    assert summary["wer"] == pytest.approx(100 * 3 / 5) == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert summary["cer"] == pytest.approx(100 * 4 / 11) == pytest.approx(100 * jiwer.cer(refs, hyps))
    # A reference character the model cannot write ("é" is not a label) still counts against it.
    results[2]["text"] = "cabé"
    assert score(results, LABELS, [], SPEC)["cer"] == pytest.approx(100 * jiwer.cer(["ab ca", "b b", "cabé"], hyps))


@pytest.mark.parametrize("hyp", [" ab  ca ", "", "  ", "abca", "a b c a"])
def test_whitespace_is_scored_as_jiwer_does_and_per_utterance_edits_add_up(hyp, tmp_path):
    from ctcrnn.evaluation.scoring import write_reports

    refs, hyps = ["ab ca", "b"], [hyp, "b"]
    results = [{"id": str(i), "ref": ids(r), "hyp": ids(h), "text": r} for i, (r, h) in enumerate(zip(refs, hyps))]
    summary = score(results, LABELS, [], SPEC)
    assert summary["wer"] == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert summary["cer"] == pytest.approx(100 * jiwer.cer(refs, hyps))
    write_reports(results, {**summary, "checkpoint": "x", "split": "test"}, LABELS, tmp_path, 0, SPEC)
    rows = [line.split("\t") for line in (tmp_path / "hypotheses.tsv").read_text().splitlines()[1:]]
    assert 100 * sum(int(r[3]) for r in rows) / 6 == pytest.approx(summary["cer"])  # 6 reference characters
    assert 100 * sum(int(r[4]) for r in rows) / 3 == pytest.approx(summary["wer"])  # 3 reference words
    assert summary["transcript_exact"] == (100.0 if hyp.strip() == "ab ca" else 50.0)


TINY = {
    "data.name": "synthetic_dtmf", "data.args.train_size": 64, "data.args.val_size": 8, "data.args.test_size": 8,
    "data.args.dtmf.max_groups": 2, "data.args.dtmf.max_keys_per_group": 3,
    "data.args.features.sample_rate": 8000, "data.args.features.n_mels": 20,
    "data.batch_size": 16, "data.eval_batch_size": 8, "data.max_frames": 4000, "data.sortagrad": "true",
    "model.name": "deepspeech2_small", "model.args.conv_channels": 4, "model.args.freq_kernels": "[5, 5]",
    "model.encoder.hidden_size": 24, "model.encoder.num_layers": 1,
    "trainer.max_epochs": 4, "trainer.lr": 0.01, "trainer.warmup_steps": 2, "trainer.progress": "false",
    "trainer.threads": 1,
}


def test_tiny_dtmf_model_trains_evaluates_transcribes_and_aligns(tmp_path, capsys):
    overrides = [f"{k}={v}" for k, v in {**TINY, "trainer.out_dir": str(tmp_path), "trainer.run_name": "dtmf"}.items()]
    run_dir = train(load_config(None, overrides))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and rows[-1]["train_loss"] < 0.8 * rows[0]["train_loss"]

    main(["evaluate", "--checkpoint", str(run_dir / "last.pt"), "--out", str(tmp_path / "eval")])
    config = DTMFConfig(max_groups=2, max_keys_per_group=3)
    # The test split is the 8 planned calls of seed 0; WER and CER add up from the rows and equal jiwer's.
    references = {f"dtmf-test-{i:05d}": dtmf_dataset_plan(0, "test", i, config)[0] for i in range(8)}
    summary, rows = assert_reports_add_up(tmp_path / "eval", references)
    header = (tmp_path / "eval" / "hypotheses.tsv").read_text().splitlines()[0]
    assert header == "id\treference\thypothesis\tchar_edits\tword_edits"
    refs, hyps = [r["reference"] for r in rows], [r["hypothesis"] for r in rows]
    assert summary["wer"] == pytest.approx(100 * jiwer.wer(refs, hyps))
    assert summary["cer"] == pytest.approx(100 * jiwer.cer(refs, hyps))
    assert f"test: 8 clips, WER {summary['wer']:.2f}%  CER {summary['cer']:.2f}%" in capsys.readouterr().out

    item = dtmf_dataset_item(0, "test", 0, config)
    wav = tmp_path / "call.wav"
    sf.write(wav, item.wave, 8000, subtype="FLOAT")  # float: the file holds exactly the evaluated audio
    (tmp_path / "broken.wav").write_text("no audio here")
    with pytest.raises(SystemExit, match="1 of 2 files could not be read"):
        main(["transcribe", str(run_dir / "last.pt"), str(wav), str(tmp_path / "broken.wav")])
    out = capsys.readouterr().out.splitlines()
    # The file reader and the dataset pipeline agree: the transcript is the evaluation's hypothesis.
    evaluated = {row.split("\t")[0]: row.split("\t")[2] for row in
                 (tmp_path / "eval" / "hypotheses.tsv").read_text().splitlines()[1:]}
    assert out[0] == f"{wav}\t{evaluated['dtmf-test-00000']}"
    assert out[1].startswith(f"{tmp_path / 'broken.wav'}\tERROR:") and "broken.wav" in out[1]

    ctm = tmp_path / "call.ctm"
    main(["align", str(run_dir / "last.pt"), str(wav), item.text, "--out", str(ctm)])
    lines = [line.split() for line in ctm.read_text().splitlines()]
    segments = json.loads(ctm.with_suffix(".json").read_text())[0]["segments"]
    assert [s["label"] for s in segments] == list(item.text) and len(lines) == len(item.text)
    # One spike per character, in order, apart, inside the call's output frames: centred 10 ms frames
    # (1 + samples // 80), halved by the conv's time stride 2, so 20 ms apart.
    shift, frames = 0.02, math.ceil((1 + len(item.wave) // 80) / 2)
    assert all(0 <= a["start"] < a["end"] <= b["start"] for a, b in zip(segments, segments[1:]))
    assert segments[-1]["start"] < segments[-1]["end"] <= frames
    for line, s, char in zip(lines, segments, item.text):
        # <file stem> 1 <start s> <duration s> <token> <score>: the frames times the frame shift.
        assert line[:2] == ["call", "1"] and line[4] == ("<space>" if char == " " else char)
        assert float(line[2]) == pytest.approx(s["start"] * shift, abs=5e-4) == s["start_s"]
        assert float(line[3]) == pytest.approx((s["end"] - s["start"]) * shift, abs=1e-3)
        assert float(line[5]) == pytest.approx(s["score"], abs=5e-5) and s["score"] <= 0
    with pytest.raises(SystemExit, match="cannot emit"):
        main(["align", str(run_dir / "last.pt"), str(wav), "12x"])


def test_unreadable_files_are_skipped_counted_and_listed_during_training(tmp_path):
    config = DTMFConfig(max_groups=1, max_keys_per_group=2)
    lines = []
    for i in range(6):
        item = dtmf_dataset_item(1, "train", i, config)
        sf.write(tmp_path / f"ok{i}.wav", item.wave, 8000)
        lines.append({"path": f"ok{i}.wav", "text": item.text})
    (tmp_path / "cut.wav").write_bytes((tmp_path / "ok0.wav").read_bytes()[:60])  # header, then nothing
    (tmp_path / "notes.wav").write_text("not audio")
    lines += [{"path": "cut.wav", "text": "1"}, {"path": "notes.wav", "text": "2"}, {"path": "gone.flac", "text": "3"}]
    manifest = tmp_path / "all.jsonl"
    manifest.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    overrides = {k: v for k, v in TINY.items() if not k.startswith("data.args.dtmf")}
    overrides.update({"data.name": "audio_manifest", "data.args": f"{{train: {manifest}, val: {manifest}}}",
                      "trainer.max_epochs": 1, "trainer.out_dir": str(tmp_path), "trainer.run_name": "bad"})
    for key in ("data.args.train_size", "data.args.val_size", "data.args.test_size"):
        overrides.pop(key)
    run_dir = train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    row = json.loads((run_dir / "metrics.jsonl").read_text())
    assert row["skipped_samples"] == 3 and row["val_skipped"] == 3
    listed = (run_dir / "skipped.tsv").read_text().splitlines()[1:]
    assert sorted(line.split("\t")[1] for line in listed) == ["cut", "gone", "notes"]
    assert all(name in line for name, line in zip(["cut.wav", "gone.flac", "notes.wav"], sorted(listed, key=lambda l: l.split("\t")[1])))
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
