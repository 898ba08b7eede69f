"""Bundles (ctcrnn/bundle.py): safetensors weights + config.json, read back as a checkpoint by every command,
``ctcrnn.load_bundle`` with preprocessing and decoder, clear errors for bundles that do not fit, and the
shipped bundles still reaching the score recorded in them."""
import json

import numpy as np
import pytest
import soundfile
import torch
from safetensors.torch import load_file, save_file

import ctcrnn
from ctcrnn import create_model, load_bundle
from ctcrnn.audio import read_audio
from ctcrnn.bundle import BundleError, file_sha256, save_bundle, shipped_bundles
from ctcrnn.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint, save_checkpoint
from ctcrnn.cli import main
from ctcrnn.config import config_to_dict, load_config
from ctcrnn.data import build_dataset
from ctcrnn.decoding.decoders import BeamSearchDecoder
from ctcrnn.decoding.lm import build_ngram_lm, write_arpa
from ctcrnn.evaluation.spot_check import spot_check
from ctcrnn.evaluation.transcribe import Recogniser

TINY_DTMF = ["data.args.train_size=4", "data.args.val_size=2", "data.args.test_size=6", "data.num_workers=0",
             "data.max_frames=0", "data.eval_batch_size=8", "model.args.conv_channels=2",
             "model.encoder.hidden_size=8"]


@pytest.fixture
def run_dir(tmp_path):
    """A run folder holding an (untrained) DTMF checkpoint whose config points at a tiny synthetic_dtmf,
    and the summary.json an evaluation of it left, as a real run's folder does."""
    cfg = load_config("configs/dtmf_ds2.yaml", TINY_DTMF)
    data = build_dataset(cfg.data.name, "train", cfg.data.args)
    torch.manual_seed(0)
    model = create_model(cfg.model.name, num_classes=len(data.labels), in_shape=tuple(data.input_spec["step_shape"]),
                         encoder=cfg.model.encoder, **cfg.model.args)
    run = tmp_path / "runs" / "dtmf"
    state = {"arch": model.arch, "model": model.state_dict(), "labels": list(data.labels),
             "input_spec": dict(data.input_spec), "config": config_to_dict(cfg), "epoch": 3, "step": 40}
    save_checkpoint(state, run / "best.pt")
    (run / "eval-test").mkdir()
    summary = {"checkpoint": str(run / "best.pt"), "split": "test", "epoch": 4, "clips": 6, "wer": 100.0,
               "cer": 100.0, "ter": 100.0, "transcript_exact": 0.0, "unreadable": 0, "out_dir": "x"}
    (run / "eval-test" / "summary.json").write_text(json.dumps(summary))
    return run


@pytest.fixture
def wav(tmp_path):
    """A two-key DTMF-like clip at 8 kHz (float samples, so the file holds exactly these values)."""
    t = np.arange(4000) / 8000
    wave = 0.3 * (np.sin(2 * np.pi * 697 * t) + np.sin(2 * np.pi * 1209 * t))
    wave[1500:2500] = 0.0
    path = tmp_path / "key.wav"
    soundfile.write(path, wave.astype(np.float32), 8000, subtype="FLOAT")
    return path


def test_bundle_files_and_config(run_dir, tmp_path):
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle",
                         recipe="python train.py --config configs/dtmf_ds2.yaml")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors"]
    assert (folder / "model.safetensors").read_bytes()[:2] != b"PK"  # not a torch (zip + pickle) archive
    config = json.loads((folder / "config.json").read_text())
    state = load_checkpoint(run_dir / "best.pt")
    assert config["format"] == "ctcrnn-bundle" and config["format_version"] == 1
    assert config["arch"] == json.loads(json.dumps(state["arch"])) and config["arch"]["name"] == "deepspeech2_small"
    assert config["labels"] == state["labels"] and config["labels"][config["blank"]] == "<blank>"
    assert config["input_spec"]["features"]["sample_rate"] == 8000 and config["preprocessing"]["modality"] == "audio"
    assert config["decoder"] == {"type": "greedy", "blank": 0, "word_delimiter": " "}
    assert config["metrics"]["test"]["wer"] == 100.0 and "out_dir" not in config["metrics"]["test"]
    assert config["metrics"]["command"] == f"ctcrnn evaluate --checkpoint {run_dir / 'best.pt'} --split test"
    assert config["recipe"].startswith("python train.py") and config["epoch"] == 3
    assert config["weights"]["sha256"] == file_sha256(folder / "model.safetensors")
    tensors = load_file(str(folder / "model.safetensors"))
    assert tensors.keys() == state["model"].keys()
    assert all(torch.equal(tensors[k], state["model"][k]) for k in tensors)


def test_a_bundle_loads_as_the_same_checkpoint_dict(run_dir, tmp_path):
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle")
    original, bundled = load_checkpoint(run_dir / "best.pt"), load_checkpoint(folder)
    for key in ("labels", "input_spec", "config", "epoch"):
        assert json.loads(json.dumps(bundled[key])) == json.loads(json.dumps(original[key])), key
    x, lengths = torch.randn(2, 30, 40), torch.tensor([30, 17])
    with torch.no_grad():
        expected, out_lengths = model_from_checkpoint(original)(x, lengths)
        got, got_lengths = model_from_checkpoint(bundled)(x, lengths)
    assert torch.equal(got, expected) and torch.equal(got_lengths, out_lengths)


def test_load_bundle_transcribes_files_and_waveforms(run_dir, tmp_path, wav):
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle")
    bundle = load_bundle(folder)
    assert not bundle.model.training and bundle.decoder is None and bundle.labels[bundle.blank] == "<blank>"
    expected = Recogniser(run_dir / "best.pt").transcribe([wav])[0].text
    assert bundle.transcribe(wav) == expected
    assert bundle.transcribe(str(wav)) == expected
    assert bundle.transcribe(read_audio(wav, 8000)) == expected          # a waveform tensor
    features = bundle.preprocess(wav)
    assert bundle.transcribe(features) == expected                       # model input (T, 40)
    with pytest.raises(ValueError, match="mono waveform"):
        bundle.transcribe(torch.zeros(2, 3, 4))


def test_bundled_lm_and_lexicon_make_the_suggested_decoder(run_dir, tmp_path, wav):
    lm, lexicon = tmp_path / "keys.arpa", tmp_path / "words.txt"
    write_arpa(build_ngram_lm([["14"], ["1"], ["4", "1"]], order=2), lm)   # a word LM: words are key groups
    lexicon.write_text("1\n14\n4\n")
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle", lm=lm, lexicon=lexicon,
                         decoder={"beam_size": 4, "lm_weight": 0.25, "word_bonus": 1.0})
    assert (folder / "lm.arpa").read_text() == lm.read_text() and (folder / "lexicon.txt").is_file()
    config = json.loads((folder / "config.json").read_text())
    assert config["decoder"] == {"type": "beam", "blank": 0, "beam_size": 4, "lm_weight": 0.25, "word_bonus": 1.0,
                                 "lm": "lm.arpa", "lexicon": "lexicon.txt", "word_delimiter": " "}
    bundle = load_bundle(folder)
    assert isinstance(bundle.decoder, BeamSearchDecoder)
    assert isinstance(bundle.transcribe(wav), str)


def test_every_command_takes_a_bundle_folder(run_dir, tmp_path, wav, capsys):
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle")
    main(["evaluate", "--checkpoint", str(folder), "--out", str(tmp_path / "eval")])
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    main(["evaluate", "--checkpoint", str(run_dir / "best.pt"), "--out", str(tmp_path / "eval-ckpt")])
    assert summary["wer"] == json.loads((tmp_path / "eval-ckpt" / "summary.json").read_text())["wer"]
    main(["transcribe", str(folder), str(wav)])
    assert str(wav) in capsys.readouterr().out
    main(["align", str(folder), str(wav), "1"])
    main(["export", str(folder), "--format", "torchscript", "--out", str(tmp_path / "ts")])
    assert (tmp_path / "ts" / "model.pt").is_file()
    lm = tmp_path / "keys.arpa"
    write_arpa(build_ngram_lm([["14"], ["1", "4"]], order=2), lm)
    main(["tune-lm", "--checkpoint", str(folder), "--lm", str(lm), "--lm-weights", "0,1", "--word-bonuses", "0",
          "--beam", "2"])
    assert "best:" in capsys.readouterr().out


def rewrite_weights(folder, tensors):
    save_file(tensors, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    config["weights"]["sha256"] = file_sha256(folder / "model.safetensors")
    (folder / "config.json").write_text(json.dumps(config))


def test_weights_that_do_not_fit_the_config_are_named(run_dir, tmp_path):
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle")
    tensors = load_file(str(folder / "model.safetensors"))
    bias = tensors.pop("head.bias")
    rewrite_weights(folder, {**tensors, "head.extra": bias})
    with pytest.raises(CheckpointError, match=r"missing tensors: head\.bias; unexpected tensors: head\.extra"):
        load_bundle(folder)
    rewrite_weights(folder, {**tensors, "head.bias": bias[:3]})
    with pytest.raises(CheckpointError, match=r"mis-shaped tensors: head\.bias \(3,\) where the model has \(18,\)"):
        load_bundle(folder)
    rewrite_weights(folder, {**tensors, "head.bias": bias})
    config = json.loads((folder / "config.json").read_text())
    config["arch"]["kwargs"]["encoder"]["hidden_size"] = 12        # config and weights disagree
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=r"mis-shaped tensors: encoder\.layers\.0\.0\.weight_ih_l0"):
        load_bundle(folder)


def test_damaged_newer_or_foreign_bundles_are_refused(run_dir, tmp_path):
    folder = save_bundle(run_dir / "best.pt", tmp_path / "bundle")
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "format_version": 2}))
    with pytest.raises(BundleError, match="format version 2, newer than this ctcrnn reads .up to 1.: upgrade"):
        load_checkpoint(folder)
    (folder / "config.json").write_text(json.dumps(config))
    data = bytearray((folder / "model.safetensors").read_bytes())
    data[-1] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256 differs"):
        load_bundle(folder)
    with pytest.raises(BundleError, match="not a bundle .no config.json."):
        load_bundle(tmp_path)


def test_unknown_names_list_the_shipped_bundles():
    shipped = ", ".join(shipped_bundles())
    with pytest.raises(BundleError, match=f"no shipped bundle of that name; shipped bundles: {shipped}"):
        load_bundle("no_such_bundle")


def test_the_embedded_tasks_are_shipped():
    assert ctcrnn.shipped_bundles() == ["dtmf", "synthetic_actions"]
    assert load_bundle("synthetic_actions").labels[1:] == ["stay", "move_left", "move_right", "move_up", "move_down",
                                                           "grow", "shrink", "rotate", "blink"]


@pytest.mark.parametrize("name", shipped_bundles())
def test_shipped_bundle_still_reaches_its_recorded_score(name):
    """Greedy scores on the first clips of the test split, recorded when the bundle was made, are reached
    again (float32 sums may differ across CPUs, so one error more than recorded would show as a failure
    only beyond half a point)."""
    bundle = load_bundle(name)
    recorded = bundle.config["reference"]
    again = spot_check(name, clips=recorded["clips"], split=recorded["split"])
    assert (again["first_id"], again["last_id"], again["clips"]) == \
        (recorded["first_id"], recorded["last_id"], recorded["clips"])
    for metric in ("ter", "wer", "cer"):
        if metric in recorded:
            assert again[metric] <= recorded[metric] + 0.5, metric
    assert bundle.config["metrics"]["test"]["clips"] >= recorded["clips"]   # the full test run is recorded too
