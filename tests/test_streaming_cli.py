"""The live commands: ``ctcrnn transcribe --stream`` and ``ctcrnn stream CHECKPOINT -`` give the offline
transcript of a causal model; ``transcribe --chunk-seconds`` runs a bidirectional model over windows;
``export --streaming`` writes the step function; models that cannot stream are refused by name."""
import io
import json
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

import ctcrnn
from ctcrnn.checkpoint import save_checkpoint
from ctcrnn.cli import main
from tests.test_streaming import LABELS, audio_setup


def write_checkpoint(model, pipeline, path):
    save_checkpoint({"arch": model.arch, "model": model.state_dict(), "labels": LABELS, "epoch": 0,
                     "input_spec": pipeline.input_spec(), "config": {}}, path)
    return str(path)


@pytest.fixture
def clip(tmp_path):
    """1.5 s of 16-bit audio at 8 kHz: a few tone bursts in noise (so the model emits some labels)."""
    generator = np.random.default_rng(0)
    t = np.arange(12000) / 8000
    wave = 0.05 * generator.standard_normal(12000) + 0.4 * np.sin(2 * np.pi * 697 * t) * (np.sin(2 * np.pi * 3 * t) > 0)
    pcm = np.clip(wave * 32768, -32768, 32767).astype("<i2")
    path = tmp_path / "clip.wav"
    sf.write(path, pcm, 8000, subtype="PCM_16")
    return path, pcm


def transcript(capsys, argv) -> str:
    main(argv)
    out = capsys.readouterr().out.strip().splitlines()
    return out[-1].split("\t")[-1]


def test_transcribe_stream_and_stdin_equal_offline(tmp_path, clip, capsys, monkeypatch):
    path, pcm = clip
    model, pipeline = audio_setup()
    with torch.no_grad():   # a bias towards label 1 so that the transcript is not empty
        model.head.bias[1] += 2.0
    checkpoint = write_checkpoint(model, pipeline, tmp_path / "stream.pt")
    offline = transcript(capsys, ["transcribe", checkpoint, str(path)])
    assert offline.strip()
    assert transcript(capsys, ["transcribe", checkpoint, str(path), "--stream", "--quiet", "--chunk-ms", "30"]) == offline
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(pcm.tobytes())))
    main(["stream", checkpoint, "-", "--chunk-ms", "20"])
    captured = capsys.readouterr()
    assert captured.out.strip("\n") == offline
    assert "s]" in captured.err   # partial results, stamped with the seconds read
    beam = transcript(capsys, ["transcribe", checkpoint, str(path), "--beam", "4"])
    assert transcript(capsys, ["transcribe", checkpoint, str(path), "--stream", "--quiet", "--beam", "4"]) == beam


def test_chunk_seconds_runs_a_bidirectional_model_over_windows(tmp_path, clip, capsys):
    path, _ = clip
    model, pipeline = audio_setup(normalize="none", name="deepspeech2_small")
    checkpoint = write_checkpoint(model, pipeline, tmp_path / "bi.pt")
    offline = transcript(capsys, ["transcribe", checkpoint, str(path)])
    # one window wider than the clip: exactly the offline pass
    assert transcript(capsys, ["transcribe", checkpoint, str(path), "--chunk-seconds", "5"]) == offline
    # a model with a finite receptive field (TCN encoder, ~0.23 s): windows with more context than that give the
    # whole pass's transcript exactly, seams included
    model, pipeline = audio_setup(normalize="none", name="deepspeech2_small",
                                  encoder={"type": "tcn", "hidden_size": 6, "num_layers": 2})
    with torch.no_grad():
        model.head.bias[1:] += 3.0
    checkpoint = write_checkpoint(model, pipeline, tmp_path / "tcn.pt")
    offline = transcript(capsys, ["transcribe", checkpoint, str(path)])
    assert len(offline) > 3
    assert transcript(capsys, ["transcribe", checkpoint, str(path), "--chunk-seconds", "0.4",
                               "--context-seconds", "0.3"]) == offline


def test_models_that_cannot_stream_are_named(tmp_path, clip, capsys):
    path, _ = clip
    model, pipeline = audio_setup(normalize="none", name="deepspeech2_small")
    checkpoint = write_checkpoint(model, pipeline, tmp_path / "bi.pt")
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", checkpoint, str(path), "--stream"])
    assert "deepspeech2_small_streaming" in str(exit_info.value)
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", checkpoint, str(path), "--stream", "--chunk-seconds", "2"])
    assert "exclude each other" in str(exit_info.value)
    for bad in (["--chunk-seconds", "0"], ["--chunk-seconds", "nan"], ["--chunk-ms", "-5"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["transcribe", checkpoint, str(path), *bad])
        assert exit_info.value.code == 2
        assert bad[0] in capsys.readouterr().err


def test_export_streaming_command(tmp_path, capsys):
    model, pipeline = audio_setup()
    checkpoint = write_checkpoint(model, pipeline, tmp_path / "stream.pt")
    main(["export", checkpoint, "--streaming", "--out", str(tmp_path / "out")])
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["streaming"]["delay_frames"] == model.stream_delay == 4
    assert (tmp_path / "out" / "step.onnx").exists() and (tmp_path / "out" / "flush.onnx").exists()
    assert config["labels"] == LABELS and config["blank"] == 0 and config["streaming"]["stride"] == 2
