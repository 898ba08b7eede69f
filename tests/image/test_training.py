"""Text lines end to end on a tiny run: train on synthetic lines, evaluate (reports that add up, the lines
picture), score any image manifest, transcribe and align PNG files through the command line (spans in
pixels), beam search with a word LM and a lexicon (CLI) and a character LM (Python); and a training run
on a manifest whose broken, missing and too-narrow lines are counted skips listed with their reasons."""
import itertools
import json

import pytest
import torch
from PIL import Image

from ctcrnn.checkpoint import load_checkpoint, model_from_checkpoint
from ctcrnn.cli import main
from ctcrnn.config import load_config
from ctcrnn.data import build_dataset
from ctcrnn.decoding import BeamSearchDecoder
from ctcrnn.decoding.lm import build_ngram_lm
from ctcrnn.image.synthetic import render_line
from ctcrnn.training.trainer import train
from tests.fixtures import assert_reports_add_up
from tests.fixtures.image import render_text, save_png

TINY = {
    "model.name": "crnn_small", "model.args.channels": "[8, 8, 16, 16, 16, 16]", "model.args.collapse_channels": 16,
    "model.encoder.hidden_size": 24, "model.encoder.num_layers": 1,
    "data.name": "synthetic_textlines", "data.args.train_size": 48, "data.args.val_size": 6,
    "data.args.test_size": 6, "data.args.text.max_chars": 10, "data.args.text.min_chars": 3,
    "data.batch_size": 8, "data.eval_batch_size": 8, "data.max_frames": 1600, "data.num_workers": 0,
    "trainer.max_epochs": 2, "trainer.lr": 0.003, "trainer.warmup_steps": 2, "trainer.progress": "false",
    "trainer.device": "cpu", "trainer.threads": 1,
}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lines")
    overrides = {**TINY, "trainer.out_dir": str(tmp), "trainer.run_name": "tiny"}
    run_dir = train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    return tmp, run_dir


def test_training_reports_and_evaluation(run, capsys):
    tmp, run_dir = run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(torch.isfinite(torch.tensor(r["train_loss"])) for r in rows)
    main(["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--out", str(tmp / "eval")])
    state = load_checkpoint(run_dir / "best.pt")
    test = build_dataset("synthetic_textlines", "test", state["config"]["data"]["args"],
                         fitted={"labels": state["labels"], "input_spec": state["input_spec"]})
    references = {line.id: line.text for line in test.lines}
    summary, table = assert_reports_add_up(tmp / "eval", references)  # CER and WER from the rows
    # Line accuracy is the share of lines read exactly (transcript_exact: equal after stripping the ends).
    assert summary["transcript_exact"] == pytest.approx(100 * sum(r["reference"] == r["hypothesis"] for r in table)
                                                        / len(table))
    assert f"test: 6 clips, WER {summary['wer']:.2f}%  CER {summary['cer']:.2f}%" in capsys.readouterr().out
    assert (tmp / "eval" / "lines.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![lines](lines.png)" in (tmp / "eval" / "summary.md").read_text()


def test_transcribe_align_and_any_manifest_through_the_cli(run, capsys):
    tmp, run_dir = run
    checkpoint = str(run_dir / "best.pt")
    main(["evaluate", "--checkpoint", checkpoint, "--out", str(tmp / "ev")])
    hypotheses = {r.split("\t")[0]: r.split("\t")[2] for r in (tmp / "ev" / "hypotheses.tsv").read_text().splitlines()[1:]}
    state = load_checkpoint(checkpoint)
    test = build_dataset("synthetic_textlines", "test", state["config"]["data"]["args"],
                         fitted={"labels": state["labels"], "input_spec": state["input_spec"]})
    # A test line saved as a PNG file reads exactly as the dataset rendered it: the same transcript.
    line = test.lines[0]
    png = tmp / "line0.png"
    Image.fromarray(render_line(test.load.plans[line.id])).save(png)
    (tmp / "broken.png").write_text("not an image")
    capsys.readouterr()
    with pytest.raises(SystemExit, match="1 of 2 files could not be read"):
        main(["transcribe", checkpoint, str(png), str(tmp / "broken.png")])
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"{png}\t{hypotheses[line.id]}"
    assert out[1].startswith(f"{tmp / 'broken.png'}\tERROR:")

    # Alignment: one span per character, in order, in pixel columns of the 32-px line (4 per output frame).
    width = test[0]["input"].shape[0]
    main(["align", checkpoint, str(png), line.text, "--out", str(tmp / "a.ctm")])
    segments = json.loads((tmp / "a.json").read_text())[0]["segments"]
    assert [s["label"] for s in segments] == list(line.text)
    assert all(0 <= a["end"] <= b["start"] for a, b in itertools.pairwise(segments))
    for s in segments:
        assert (s["start_s"], s["end_s"]) == (4 * s["start"], 4 * s["end"]) and s["end_s"] <= width

    # Any manifest of line images, scored with the model's vocabulary; an unreadable file is counted.
    save_png(tmp / "more" / "hello.png", render_text("hello 42", height=30))
    (tmp / "more" / "lines.jsonl").write_text(json.dumps({"path": "hello.png", "text": "hello 42"}) + "\n" +
                                              json.dumps({"path": "gone.png", "text": "gone"}) + "\n")
    main(["evaluate", "--checkpoint", checkpoint, "--split", str(tmp / "more" / "lines.jsonl"),
          "--out", str(tmp / "ev_manifest")])
    summary, _ = assert_reports_add_up(tmp / "ev_manifest", {"hello": "hello 42"})
    assert summary["unreadable"] == 1 and "gone.png" in (tmp / "ev_manifest" / "skipped.tsv").read_text()


def test_beam_search_with_word_lm_lexicon_and_character_lm(run):
    tmp, run_dir = run
    checkpoint = str(run_dir / "best.pt")
    state = load_checkpoint(checkpoint)
    args = state["config"]["data"]["args"]
    texts = [line.text for line in build_dataset("synthetic_textlines", "train", args).lines]
    (tmp / "text.txt").write_text("\n".join(texts) + "\n")
    main(["lm", "build", str(tmp / "text.txt"), "--order", "2", "--out", str(tmp / "words.arpa")])
    test_texts = [line.text for line in build_dataset("synthetic_textlines", "test", args).lines]
    lexicon = sorted({w for t in texts + test_texts for w in t.split()})
    (tmp / "lexicon.txt").write_text("\n".join(lexicon) + "\n")
    main(["evaluate", "--checkpoint", checkpoint, "--out", str(tmp / "beam"), "--beam", "4",
          "--lm", str(tmp / "words.arpa"), "--lm-weight", "0.5", "--lexicon", str(tmp / "lexicon.txt")])
    summary = json.loads((tmp / "beam" / "summary.json").read_text())
    assert set(summary["beam"]) == {"wer", "cer", "transcript_exact", "ter", "decoder"}
    assert "lexicon lexicon.txt" in summary["beam"]["decoder"]
    header = (tmp / "beam" / "hypotheses.tsv").read_text().splitlines()[0].split("\t")
    assert header[-3:] == ["beam_hypothesis", "beam_char_edits", "beam_word_edits"]
    test_lines = build_dataset("synthetic_textlines", "test", args).lines
    assert_reports_add_up(tmp / "beam", {line.id: line.text for line in test_lines})  # the beam's CER/WER too
    # A character LM (every label an LM token, the space included) through the Python API.
    labels = state["labels"]
    characters = build_ngram_lm([list(t) for t in texts], order=3)
    model = model_from_checkpoint(state)
    test = build_dataset("synthetic_textlines", "test", args, fitted={"labels": labels, "input_spec": state["input_spec"]})
    x = test[0]["input"][None]
    with torch.no_grad():
        log_probs, lengths = model(x, torch.tensor([x.shape[1]]))
    plain = BeamSearchDecoder(beam_size=4, labels=labels)(log_probs, lengths)[0][0]
    fused = BeamSearchDecoder(beam_size=4, labels=labels, lm=characters, lm_weight=0.0, lm_unit="token")(
        log_probs, lengths)[0][0]
    assert fused.tokens == plain.tokens  # weight 0: the LM changes nothing
    weighted = BeamSearchDecoder(beam_size=4, labels=labels, lm=characters, lm_weight=1.0, lm_unit="token")(
        log_probs, lengths)[0][0]
    assert weighted.lm_score < 0 and all(0 < t < len(labels) for t in weighted.tokens)


def test_unreadable_and_too_narrow_training_lines_are_counted_and_listed(tmp_path):
    rows = []
    for i, text in enumerate(["hello world", "A MOVE to stop", "on 12 May", "Labour life"]):
        save_png(tmp_path / f"ok{i}.png", render_text(text, height=24))
        rows.append({"path": f"ok{i}.png", "text": text})
    data = render_text("hello world", height=24)
    save_png(tmp_path / "whole.png", data)
    (tmp_path / "cut.png").write_bytes((tmp_path / "whole.png").read_bytes()[:80])  # header, then nothing
    (tmp_path / "notes.png").write_text("not an image")
    save_png(tmp_path / "narrow.png", data[:, :10])
    rows += [{"path": "cut.png", "text": "cut"}, {"path": "notes.png", "text": "notes"},
             {"path": "gone.png", "text": "gone"}, {"path": "narrow.png", "text": "far too long a text"}]
    manifest = tmp_path / "all.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    overrides = {k: v for k, v in TINY.items() if not k.startswith("data.args")}
    overrides.update({"data.name": "image_manifest", "data.args": f"{{train: {manifest}, val: {manifest}}}",
                      "trainer.max_epochs": 1, "trainer.out_dir": str(tmp_path), "trainer.run_name": "bad"})
    run_dir = train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    row = json.loads((run_dir / "metrics.jsonl").read_text())
    # Validation reads the narrow line (it is scored); only its loss is skipped, by the model's CTC check.
    assert row["skipped_samples"] == 4 and row["val_skipped"] == 4
    listed = {line.split("\t")[1]: line for line in (run_dir / "skipped.tsv").read_text().splitlines()[1:]}
    assert sorted(listed) == ["cut", "gone", "narrow", "notes"]
    for name in ("cut.png", "gone.png", "notes.png", "narrow.png"):
        assert name in listed[name.removesuffix(".png")]
    assert "(19 characters, 1 repeats) needs 20 output frames = 80 px at the model's width stride 4" in listed["narrow"]
    state = torch.load(run_dir / "last.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
