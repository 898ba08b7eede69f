"""Hostile input to the command line, round two (issue 16): the decoding, evaluation and file-location half.

One parametrized test per class of bad input: out-of-range numbers, bad input files, unwritable output
locations, unreadable or non-finite media, device names. Every case runs ``ctcrnn`` in-process and
asserts the exit status (2: refused while parsing, 1: refused by the command), that no traceback was
printed, and that the message names the option or file. The output-location cases also assert that the
check comes before the work: the function that would do it fails the test if it is called. Then the
reports themselves: TSV cells escaped, CTM ids unique, references too long for their clip counted.

Fixtures are real files: WAV calls written with soundfile, a tiny character model trained for one epoch
on them, ARPA files made by ``ctcrnn lm build`` and cut short as a failed copy would.
"""
import gzip
import json
import logging
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from ctcrnn.audio.dtmf import DTMFConfig, dtmf_dataset_item
from ctcrnn.cli import main
from ctcrnn.config import load_config
from ctcrnn.training.trainer import train

RATE = 8000
DTMF = DTMFConfig(max_groups=2, max_keys_per_group=2)
KEYS = "0123456789*#ABCD "
# A location no one can create files in, root included (the tests run as root in some containers, where
# permission bits do not stop a write).
READ_ONLY = "/proc"


def run_cli(argv: list[str], capsys) -> tuple[int, str]:
    """(exit status, message) of ``ctcrnn ARGV`` that must fail: argparse prints its message and exits 2,
    the commands exit with the message as the status (1). An uncaught exception fails the test."""
    with pytest.raises(SystemExit) as info:
        main([str(a) for a in argv])
    err = capsys.readouterr().err
    code = info.value.code
    message = code if isinstance(code, str) else err
    assert "Traceback" not in err + message
    return (1 if isinstance(code, str) else code), message


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny trained character model ("1 2 ..." keys, the space between words) and the files the cases
    use: good and hostile WAVs, ARPA files whole and cut short, lexicons, texts."""
    root = tmp_path_factory.mktemp("hostile")
    data = root / "data"
    data.mkdir()
    entries = []
    for i in range(4):
        item = dtmf_dataset_item(7, "train", i, DTMF)
        sf.write(data / f"call{i}.wav", item.wave, RATE)
        entries.append({"path": str(data / f"call{i}.wav"), "text": item.text})
    manifest = data / "train.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    overrides = {
        "data.name": "audio_manifest", "data.args.train": manifest, "data.args.val": manifest,
        "data.args.test": manifest, "data.args.features.sample_rate": RATE, "data.args.features.n_mels": 20,
        "data.args.tokens": "[" + ", ".join(repr(k) for k in KEYS) + "]",
        "data.batch_size": 4, "data.eval_batch_size": 4, "data.num_workers": 0,
        "model.name": "deepspeech2_small", "model.args.conv_channels": 2, "model.args.freq_kernels": "[5, 5]",
        "model.encoder.hidden_size": 8, "model.encoder.num_layers": 1, "trainer.max_epochs": 1,
        "trainer.warmup_steps": 1, "trainer.progress": "false", "trainer.threads": 1, "trainer.device": "cpu",
        "trainer.out_dir": root, "trainer.run_name": "tiny"}
    rngs = random.getstate(), np.random.get_state(), torch.get_rng_state()  # training seeds them all
    run = train(load_config(None, [f"{k}={v}" for k, v in overrides.items()]))
    random.setstate(rngs[0])
    np.random.set_state(rngs[1])
    torch.set_rng_state(rngs[2])
    # Float samples of amplitude 1e30: finite, but the features overflow to inf and NaN (refused, naming the
    # file, by the audio reader or by the check of the model's log-probabilities).
    sf.write(data / "huge.wav", dtmf_dataset_item(7, "train", 0, DTMF).wave.astype(np.float32) * 1e30, RATE,
             subtype="FLOAT")
    (data / "folder").mkdir()
    (data / "text.txt").write_text("".join(e["text"] + "\n" for e in entries))
    assert main(["lm", "build", str(data / "text.txt"), "--order", "2", "--out", str(data / "lm.arpa")]) is None
    arpa = (data / "lm.arpa").read_bytes()
    (data / "cut.arpa").write_bytes(arpa[: len(arpa) // 2])  # ends mid-section, mid-line
    (data / "cut.arpa.gz").write_bytes(gzip.compress(arpa)[:40])
    lines = (data / "lm.arpa").read_text().splitlines()
    first = lines.index("\\1-grams:") + 1
    lines[first] = "nan\t" + lines[first].split("\t", 1)[1]  # a NaN log10 probability
    (data / "nan.arpa").write_text("\n".join(lines) + "\n")
    (data / "latin1.txt").write_bytes("12\n3\xe9\n".encode("latin-1"))
    (data / "letters.txt").write_text("ab\ncd\n12\n")  # 2 of 3 words use letters the model cannot write
    (data / "mostly_ok.txt").write_text("12\n34\n56\nx7\n")  # 1 of 4: left out with a warning
    return {"checkpoint": run / "best.pt", "data": data, "run": run, "manifest": manifest,
            "call": data / "call0.wav", "call_text": entries[0]["text"]}


# ---------------------------------------------------------------------------------------------------------
# Numbers: refused as they are parsed, naming the option


NUMERIC_CASES = {  # id: (argv, the option whose value is refused); CKPT, LM, TEXT: files of the fixture
    "lm_weight_nan": (["transcribe", "CKPT", "a.wav", "--beam", "4", "--lm-weight", "nan"], "--lm-weight"),
    "lm_weight_minus_nan": (["transcribe", "CKPT", "a.wav", "--beam", "4", "--lm-weight", "-nan"], "--lm-weight"),
    "lm_weight_inf": (["evaluate", "--checkpoint", "CKPT", "--beam", "4", "--lm-weight", "inf"], "--lm-weight"),
    "word_bonus_nan": (["evaluate", "--checkpoint", "CKPT", "--beam", "4", "--word-bonus", "nan"], "--word-bonus"),
    "word_bonus_minus_inf": (["transcribe", "CKPT", "a.wav", "--beam", "4", "--word-bonus", "-inf"], "--word-bonus"),
    "word_bonus_text": (["transcribe", "CKPT", "a.wav", "--beam", "4", "--word-bonus", "one"], "--word-bonus"),
    "unk_score_nan": (["evaluate", "--checkpoint", "CKPT", "--beam", "4", "--unk-score", "nan"], "--unk-score"),
    "unk_score_positive": (["transcribe", "CKPT", "a.wav", "--beam", "4", "--unk-score", "2"], "--unk-score"),
    "beam_zero": (["transcribe", "CKPT", "a.wav", "--beam", "0"], "--beam"),
    "beam_negative": (["evaluate", "--checkpoint", "CKPT", "--beam", "-3"], "--beam"),
    "beam_fraction": (["evaluate", "--checkpoint", "CKPT", "--beam", "2.5"], "--beam"),
    "batch_size_zero": (["evaluate", "--checkpoint", "CKPT", "--batch-size", "0"], "--batch-size"),
    "tune_lm_weights_nan": (["tune-lm", "--checkpoint", "CKPT", "--lm", "LM", "--lm-weights", "0,nan"],
                            "--lm-weights"),
    "tune_word_bonuses_inf": (["tune-lm", "--checkpoint", "CKPT", "--lm", "LM", "--word-bonuses", "0,inf"],
                              "--word-bonuses"),
    "tune_word_bonuses_empty": (["tune-lm", "--checkpoint", "CKPT", "--lm", "LM", "--word-bonuses", ","],
                                "--word-bonuses"),
    "tune_beam_zero": (["tune-lm", "--checkpoint", "CKPT", "--lm", "LM", "--beam", "0"], "--beam"),
    "tune_unk_score_nan": (["tune-lm", "--checkpoint", "CKPT", "--lm", "LM", "--unk-score", "nan"], "--unk-score"),
    "bundle_beam_zero": (["bundle", "CKPT", "--out", "b", "--beam", "0"], "--beam"),
    "bundle_lm_weight_nan": (["bundle", "CKPT", "--out", "b", "--lm-weight", "nan"], "--lm-weight"),
    "bundle_word_bonus_inf": (["bundle", "CKPT", "--out", "b", "--word-bonus", "inf"], "--word-bonus"),
    "bundle_reference_clips_negative": (["bundle", "CKPT", "--out", "b", "--reference-clips", "-1"],
                                        "--reference-clips"),
    "lm_build_order_zero": (["lm", "build", "TEXT", "--out", "x.arpa", "--order", "0"], "--order"),
    "lm_build_order_text": (["lm", "build", "TEXT", "--out", "x.arpa", "--order", "three"], "--order"),
}


@pytest.mark.parametrize("case", list(NUMERIC_CASES))
def test_out_of_range_number_is_refused_when_parsed_naming_the_option(case, files, tmp_path, capsys, monkeypatch):
    argv, option = NUMERIC_CASES[case]
    monkeypatch.chdir(tmp_path)  # nothing may be written, and if something were, not into the checkout
    names = {"CKPT": files["checkpoint"], "LM": files["data"] / "lm.arpa", "TEXT": files["data"] / "text.txt"}
    code, message = run_cli([names.get(a, a) for a in argv], capsys)
    assert code == 2 and f"argument {option}:" in message, message
    assert list(tmp_path.iterdir()) == []


def test_beam_message_says_what_beam_1_means(capsys):
    _, message = run_cli(["transcribe", "x.pt", "a.wav", "--beam", "0"], capsys)
    assert "--beam 1 is greedy decoding" in message


# ---------------------------------------------------------------------------------------------------------
# Input files: a clear error naming the file, whatever is wrong with it


INPUT_CASES = {  # id: (argv, exit status, phrases of the message; FILE is replaced by the data folder)
    "lm_missing": (["transcribe", "CKPT", "CALL", "--beam", "2", "--lm", "DATA/none.arpa"], 2,
                   ["--lm", "DATA/none.arpa does not exist"]),
    "lm_is_directory": (["transcribe", "CKPT", "CALL", "--beam", "2", "--lm", "DATA/folder"], 2,
                        ["--lm", "DATA/folder is a directory"]),
    "lm_arpa_cut_mid_section": (["transcribe", "CKPT", "CALL", "--beam", "2", "--lm", "DATA/cut.arpa"], 1,
                                ["DATA/cut.arpa", "without the closing \\end\\ line", "truncated"]),
    "lm_gzip_cut_short": (["evaluate", "--checkpoint", "CKPT", "--beam", "2", "--lm", "DATA/cut.arpa.gz"], 1,
                          ["DATA/cut.arpa.gz", "gzip data is cut short", "truncated"]),
    "lm_nan_probability": (["transcribe", "CKPT", "CALL", "--beam", "2", "--lm", "DATA/nan.arpa"], 1,
                           ["DATA/nan.arpa:", "must be numbers or -inf"]),
    "tune_lm_cut_short": (["tune-lm", "--checkpoint", "CKPT", "--lm", "DATA/cut.arpa.gz", "--lm-weights", "1",
                           "--word-bonuses", "0"], 1, ["DATA/cut.arpa.gz", "truncated"]),
    "lexicon_is_directory": (["transcribe", "CKPT", "CALL", "--beam", "2", "--lexicon", "DATA/folder"], 2,
                             ["--lexicon", "DATA/folder is a directory"]),
    "lexicon_not_utf8": (["transcribe", "CKPT", "CALL", "--beam", "2", "--lexicon", "DATA/latin1.txt"], 1,
                         ["lexicon DATA/latin1.txt:2: not UTF-8"]),
    "lexicon_other_alphabet": (["evaluate", "--checkpoint", "CKPT", "--beam", "2", "--lexicon", "DATA/letters.txt"],
                               1, ["2 of 3 words in lexicon DATA/letters.txt", "line 1 'ab'", "line 2 'cd'"]),
    "lm_build_text_missing": (["lm", "build", "DATA/none.txt", "--out", "OUT/x.arpa"], 2,
                              ["argument text: DATA/none.txt does not exist"]),
    "lm_build_text_is_directory": (["lm", "build", "DATA/folder", "--out", "OUT/x.arpa"], 2,
                                   ["argument text: DATA/folder is a directory"]),
    "lm_build_text_not_utf8": (["lm", "build", "DATA/latin1.txt", "--out", "OUT/x.arpa"], 1,
                               ["DATA/latin1.txt:2: not UTF-8"]),
    "align_transcript_is_directory": (["align", "CKPT", "CALL", "DATA/folder"], 1,
                                      ["transcript DATA/folder is a directory"]),
    "align_transcript_not_utf8": (["align", "CKPT", "CALL", "DATA/latin1.txt"], 1,
                                  ["transcript file DATA/latin1.txt is not UTF-8"]),
    "align_transcript_longer_than_a_file_name": (["align", "CKPT", "CALL", "12" * 200], 1,
                                                 ["CALL", "needs at least 400 output frames"]),
    "split_is_directory": (["evaluate", "--checkpoint", "CKPT", "--split", "DATA/folder"], 2,
                           ["--split", "DATA/folder is a directory"]),
    "manifest_is_directory": (["evaluate", "--checkpoint", "CKPT", "--split", "DATA/folder.jsonl"], 2,
                              ["--split", "DATA/folder.jsonl is a directory"]),
    "bundle_lexicon_is_directory": (["bundle", "CKPT", "--out", "OUT/b", "--lexicon", "DATA/folder"], 2,
                                    ["--lexicon", "DATA/folder is a directory"]),
}


@pytest.mark.parametrize("case", list(INPUT_CASES))
def test_bad_input_file_is_an_error_naming_it(case, files, tmp_path, capsys):
    argv, status, phrases = INPUT_CASES[case]
    (files["data"] / "folder.jsonl").mkdir(exist_ok=True)
    names = {"CKPT": str(files["checkpoint"]), "CALL": str(files["call"])}
    expand = lambda a: names.get(a, a.replace("DATA", str(files["data"])).replace("OUT", str(tmp_path)))
    code, message = run_cli([expand(a) for a in argv], capsys)
    assert code == status, message
    for phrase in phrases:
        assert expand(phrase) in message, message
    assert list(tmp_path.iterdir()) == []  # refused before writing anything


def test_lexicon_with_a_few_unspellable_words_decodes_and_counts_them(files, capsys, caplog):
    """Most words fine: the others are left out with a warning that counts them and names their lines."""
    with caplog.at_level(logging.WARNING):
        main(["transcribe", str(files["checkpoint"]), str(files["call"]), "--beam", "2", "--lexicon",
              str(files["data"] / "mostly_ok.txt")])
    assert f"1 of 4 words in lexicon {files['data'] / 'mostly_ok.txt'}" in caplog.text
    assert "line 4 'x7' ('x' not in the labels)" in caplog.text
    assert capsys.readouterr().out.startswith(str(files["call"]) + "\t")


# ---------------------------------------------------------------------------------------------------------
# Output locations: checked before the work starts


def _fail(*_, **__):
    raise AssertionError("the work started although the output location cannot be written")


OUTPUT_CASES = {  # id: (argv, function that does the work, phrases of the message)
    "evaluate_out_read_only": (["evaluate", "--checkpoint", "CKPT", "--out", "RO/eval"],
                               "ctcrnn.evaluation.scoring.run_model", ["--out", "RO/eval", "cannot write in"]),
    "evaluate_out_is_a_file": (["evaluate", "--checkpoint", "CKPT", "--out", "OUT/file"],
                               "ctcrnn.evaluation.scoring.run_model", ["--out", "OUT/file is a file, not a folder"]),
    "evaluate_report_is_a_folder": (["evaluate", "--checkpoint", "CKPT", "--out", "OUT/reports"],
                                    "ctcrnn.evaluation.scoring.run_model",
                                    ["--out", "OUT/reports/hypotheses.tsv is a directory"]),
    "evaluate_out_under_a_file": (["evaluate", "--checkpoint", "CKPT", "--out", "OUT/file/eval"],
                                  "ctcrnn.evaluation.scoring.run_model", ["--out", "OUT/file is a file, not a folder"]),
    "transcribe_ctm_is_a_folder": (["transcribe", "CKPT", "CALL", "--ctm", "OUT/folder"],
                                   "ctcrnn.evaluation.transcribe.Recogniser.transcribe",
                                   ["--ctm", "OUT/folder is a directory"]),
    "transcribe_ctm_read_only": (["transcribe", "CKPT", "CALL", "--ctm", "RO/x.ctm"],
                                 "ctcrnn.evaluation.transcribe.Recogniser.transcribe", ["--ctm", "RO/x.ctm"]),
    "transcribe_ctm_named_json": (["transcribe", "CKPT", "CALL", "--ctm", "OUT/x.json"],
                                  "ctcrnn.evaluation.transcribe.Recogniser.transcribe",
                                  ["--ctm", "OUT/x.json ends in .json"]),
    "transcribe_ctm_json_twin_is_a_folder": (["transcribe", "CKPT", "CALL", "--ctm", "OUT/twin.ctm"],
                                             "ctcrnn.evaluation.transcribe.Recogniser.transcribe",
                                             ["--ctm", "OUT/twin.json is a directory"]),
    "align_out_read_only": (["align", "CKPT", "CALL", "1", "--out", "RO/a.ctm"],
                            "ctcrnn.evaluation.transcribe.Recogniser.align", ["--out", "RO/a.ctm"]),
    "align_out_is_a_folder": (["align", "CKPT", "CALL", "1", "--out", "OUT/folder"],
                              "ctcrnn.evaluation.transcribe.Recogniser.align", ["--out", "OUT/folder is a directory"]),
    "lm_build_out_read_only": (["lm", "build", "TEXT", "--out", "RO/lm.arpa"], "ctcrnn.decoding.lm.build_ngram_lm",
                               ["--out", "RO/lm.arpa"]),
    "lm_build_out_is_a_folder": (["lm", "build", "TEXT", "--out", "OUT/folder"], "ctcrnn.decoding.lm.build_ngram_lm",
                                 ["--out", "OUT/folder is a directory"]),
    "tune_lm_out_is_a_folder": (["tune-lm", "--checkpoint", "CKPT", "--lm", "LM", "--out", "OUT/folder"],
                                "ctcrnn.evaluation.lm_tuning.run_model", ["--out", "OUT/folder is a directory"]),
    "export_out_is_a_file": (["export", "CKPT", "--out", "OUT/file"], "ctcrnn.export.load_checkpoint",
                             ["--out", "OUT/file is a file, not a folder"]),
    "export_out_read_only": (["export", "CKPT", "--format", "torchscript", "--out", "RO/x"],
                             "ctcrnn.export.load_checkpoint", ["--out", "RO/x"]),
    "bundle_out_read_only": (["bundle", "CKPT", "--out", "RO/bundle"], "ctcrnn.checkpoint.load_checkpoint",
                             ["--out", "RO/bundle"]),
    "average_out_is_a_folder": (["average", "CKPT", "CKPT", "--out", "OUT/folder"],
                                "ctcrnn.training.averaging.average_checkpoints", ["--out", "OUT/folder is a directory"]),
    "plot_out_read_only": (["plot", "RUN", "--out", "RO/curves.png"], "matplotlib.pyplot.subplots",
                           ["--out", "RO/curves.png"]),
}


@pytest.mark.parametrize("case", list(OUTPUT_CASES))
def test_output_location_is_checked_before_any_work(case, files, tmp_path, capsys, monkeypatch):
    argv, work, phrases = OUTPUT_CASES[case]
    if "RO/" in " ".join(argv) and not os.path.isdir("/proc/self"):
        pytest.skip("needs Linux's /proc")
    (tmp_path / "file").write_text("not a folder")
    for folder in ("folder", "reports/hypotheses.tsv", "twin.json"):
        (tmp_path / folder).mkdir(parents=True)
    monkeypatch.setattr(work, _fail)
    names = {"CKPT": str(files["checkpoint"]), "CALL": str(files["call"]), "LM": str(files["data"] / "lm.arpa"),
             "TEXT": str(files["data"] / "text.txt"), "RUN": str(files["run"])}
    expand = lambda a: names.get(a, a.replace("OUT", str(tmp_path)).replace("RO", READ_ONLY))
    code, message = run_cli([expand(a) for a in argv], capsys)
    assert code == 1, message
    for phrase in phrases:
        assert expand(phrase) in message, message


# ---------------------------------------------------------------------------------------------------------
# Media that cannot be read, or whose log-probabilities are not finite


class NaNOutput(torch.nn.Module):
    """The checkpoint's model with its log-probabilities replaced by NaN: what an input that overflows the
    network gives, whatever the modality's reader lets through."""

    def __init__(self, model):
        super().__init__()
        self.model, self.frontend = model, model.frontend

    def forward(self, x, lengths):
        log_probs, out_lengths = self.model(x, lengths)
        return torch.full_like(log_probs, float("nan")), out_lengths


MEDIA_CASES = {  # id: (argv, whether the model outputs NaN, phrases of the message)
    "transcribe_huge_samples": (["transcribe", "CKPT", "DATA/huge.wav"], False,
                                ["1 of 1 files could not be read", "ERROR: reason"]),
    "transcribe_non_finite_log_probs": (["transcribe", "CKPT", "DATA/call0.wav", "DATA/call1.wav"], True,
                                        ["2 of 2 files could not be read"]),
    "transcribe_every_file_unreadable": (["transcribe", "CKPT", "DATA/none.wav", "DATA/folder"], False,
                                         ["2 of 2 files could not be read", "listed above"]),
    "align_huge_samples": (["align", "CKPT", "DATA/huge.wav", "1"], False, ["DATA/huge.wav", "re-encode"]),
    "align_non_finite_log_probs": (["align", "CKPT", "DATA/call0.wav", "1"], True,
                                   ["DATA/call0.wav: the model's log-probabilities are not finite", "re-encode"]),
    "align_unreadable": (["align", "CKPT", "DATA/none.wav", "1"], False, ["DATA/none.wav does not exist"]),
    "evaluate_every_clip_unreadable": (["evaluate", "--checkpoint", "CKPT", "--split", "DATA/bad.jsonl", "--out",
                                        "OUT/ev"], False, ["all 2 clips were unreadable", "OUT/ev/skipped.tsv"]),
}


@pytest.mark.parametrize("case", list(MEDIA_CASES))
def test_unreadable_or_non_finite_media_fails_naming_the_files(case, files, tmp_path, capsys, monkeypatch):
    data = files["data"]
    (data / "bad.jsonl").write_text(json.dumps({"path": str(data / "none.wav"), "text": "1"}) + "\n"
                                    + json.dumps({"path": str(data / "huge.wav"), "text": "2"}) + "\n")
    argv, nan_output, phrases = MEDIA_CASES[case]
    if nan_output:
        from ctcrnn.evaluation import transcribe

        build = transcribe.model_from_checkpoint
        monkeypatch.setattr(transcribe, "model_from_checkpoint", lambda state: NaNOutput(build(state)))
    expand = lambda a: {"CKPT": str(files["checkpoint"])}.get(
        a, a.replace("DATA", str(data)).replace("OUT", str(tmp_path)))
    with pytest.raises(SystemExit) as info:
        main([expand(a) for a in argv])
    captured = capsys.readouterr()
    assert isinstance(info.value.code, str) and "Traceback" not in captured.err  # a message: exit status 1
    for phrase in phrases:
        assert expand(phrase) in info.value.code, info.value.code
    if case.startswith("transcribe"):  # "listed above": each file with its reason, on stdout
        lines = captured.out.splitlines()
        assert [line.split("\t")[0] for line in lines] == [expand(a) for a in argv[2:]]
        assert all(path in line.split("\tERROR: ")[1] for path, line in zip(map(expand, argv[2:]), lines)), lines
    if nan_output and case.startswith("transcribe"):
        assert captured.out.count("the model's log-probabilities are not finite (NaN or inf)") == 2


# ---------------------------------------------------------------------------------------------------------
# Devices


@pytest.mark.parametrize("name, phrase", [
    ("foo", "'foo' is not a device"),
    ("cuda:99", "cuda:99"),
    pytest.param("cuda", "no CUDA device", marks=pytest.mark.skipif(
        torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_device_that_is_not_there_is_refused_naming_the_option(name, phrase, capsys):
    for argv in (["transcribe", "x.pt", "a.wav"], ["evaluate", "--checkpoint", "x.pt"], ["train", "--no-eval"]):
        code, message = run_cli([*argv, "--device", name], capsys)
        assert code == 2 and "argument --device:" in message and phrase in message, message


# ---------------------------------------------------------------------------------------------------------
# Reports: TSV cells escaped, CTM ids unique, absurd references counted


def unescape(cell: str) -> str:
    """Inverse of ctcrnn.runlog.tsv_cell."""
    return cell.encode("latin-1", "backslashreplace").decode("unicode_escape") if "\\" in cell else cell


def test_ids_with_tabs_and_newlines_keep_hypotheses_tsv_one_row_per_clip(files, tmp_path):
    call = str(files["call"])
    ids = ["tab\there", "line\nbreak", "back\\slash", "plain"]
    manifest = tmp_path / "ids.jsonl"
    manifest.write_text("".join(json.dumps({"path": call, "text": files["call_text"], "id": i}) + "\n" for i in ids))
    main(["evaluate", "--checkpoint", str(files["checkpoint"]), "--split", str(manifest), "--out", str(tmp_path / "ev")])
    header, *rows = (tmp_path / "ev" / "hypotheses.tsv").read_text().split("\n")[:-1]
    cells = [row.split("\t") for row in rows]
    assert all(len(c) == len(header.split("\t")) for c in cells)
    assert sorted(unescape(c[0]) for c in cells) == sorted(ids)
    assert sorted(c[0] for c in cells) == sorted(["tab\\there", "line\\nbreak", "back\\\\slash", "plain"])


def test_files_with_the_same_stem_get_distinct_ctm_ids(files, tmp_path, capsys):
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "call.wav").write_bytes(files["call"].read_bytes())
    main(["transcribe", str(files["checkpoint"]), str(tmp_path / "day1" / "call.wav"),
          str(tmp_path / "day2" / "call.wav"), "--ctm", str(tmp_path / "out" / "calls.ctm")])
    records = json.loads((tmp_path / "out" / "calls.json").read_text())
    assert [r["ctm_id"] for r in records] == ["day1/call.wav", "day2/call.wav"]
    ctm_ids = {line.split()[0] for line in (tmp_path / "out" / "calls.ctm").read_text().splitlines()}
    assert ctm_ids <= {"day1/call.wav", "day2/call.wav"}
    assert capsys.readouterr().out.count("\n") == 2


def test_reference_longer_than_the_model_can_emit_is_counted_listed_and_logged(files, tmp_path, caplog):
    """A manifest line whose transcript holds far more labels than the clip's output frames (a corrupt
    line): scored all the same (each missing label an error), but counted, listed and logged."""
    call = str(files["call"])
    manifest = tmp_path / "long.jsonl"
    long_text = "12 " * 40_000  # 80,000 labels plus spaces, for a clip of about a hundred output frames
    manifest.write_text(json.dumps({"path": call, "text": long_text, "id": "long"}) + "\n"
                        + json.dumps({"path": call, "text": files["call_text"], "id": "fine"}) + "\n")
    with caplog.at_level(logging.WARNING):
        main(["evaluate", "--checkpoint", str(files["checkpoint"]), "--split", str(manifest), "--out",
              str(tmp_path / "ev")])
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["clips"] == 2 and summary["too_long_references"] == 1
    header, row = (tmp_path / "ev" / "too_long_references.tsv").read_text().splitlines()
    assert header == "id\treference_labels\toutput_frames"
    labels, frames = row.split("\t")[1:]
    assert row.startswith("long\t") and len(long_text.strip()) <= int(labels) <= len(long_text)
    assert int(labels) > int(frames) > 0
    assert "1 references have more labels than their clip's output frames" in caplog.text
    assert "too_long_references.tsv" in (tmp_path / "ev" / "summary.md").read_text()


def test_entry_point_prints_one_line_and_no_traceback(tmp_path):
    """The installed command itself (not main() in-process): argparse's exit 2 and a command's exit 1."""
    for argv, status, phrase in [
        (["transcribe", "x.pt", "a.wav", "--beam", "2", "--lm-weight", "nan"], 2, "argument --lm-weight"),
        (["lm", "build", str(tmp_path / "none.txt"), "--out", str(tmp_path / "x.arpa")], 2, "none.txt does not exist"),
        (["evaluate", "--checkpoint", str(tmp_path / "none.pt")], 1, "none.pt"),
    ]:
        done = subprocess.run([sys.executable, "-m", "ctcrnn.cli", *argv], capture_output=True, text=True,
                              timeout=600, cwd=Path(__file__).parent.parent, check=False)
        assert done.returncode == status and "Traceback" not in done.stderr, done.stderr
        assert phrase in done.stderr.splitlines()[-1] and "error:" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize("option, value", [("--seeds", "0"), ("--seeds", "-2"), ("--budget-minutes", "nan"),
                                           ("--budget-minutes", "0"), ("--budget-minutes", "inf")])
def test_compare_numeric_options_are_range_checked(option, value, capsys):
    from ctcrnn.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["compare", "--out", "unused", f"{option}={value}"])
    assert exit_info.value.code == 2 and option in capsys.readouterr().err
