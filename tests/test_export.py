"""ONNX and TorchScript export (ctcrnn/export.py): every zoo entry, both cells, a batch of several lengths at a
length the graph was not traced with; the exported model's log-probs must equal PyTorch's at every valid
frame (max abs difference <= 1e-4) and its out_lengths exactly. Also the in-graph audio features
(--with-features) against the pipeline that reads files, config.json, and the CLI."""
import json
import warnings

import onnxruntime
import pytest
import torch
from torch import nn

from ctcrnn import create_model, list_models
from ctcrnn.audio.datasets import AudioPipeline
from ctcrnn.audio.deployment import GraphFeatures
from ctcrnn.audio.features import FeatureConfig, compute_global_stats
from ctcrnn.checkpoint import save_checkpoint
from ctcrnn.cli import main
from ctcrnn.data import collate
from ctcrnn.export import ExportError, export, pooling_matrix
from tests.test_registry import SMOKE_INPUTS

LABELS = ["<blank>", "a", "b", "c", "d", "e"]
TOLERANCE = 1e-4


def smoke_state(name: str, cell: str, variant: int = 0, impl: str = "fused") -> tuple[nn.Module, dict]:
    """A small model of a zoo entry (SMOKE_INPUTS shapes) and the checkpoint dict export reads. BatchNorm
    statistics are randomised, so an export that dropped them would show."""
    in_shape, _, variants = SMOKE_INPUTS[name]
    torch.manual_seed(0)
    model = create_model(name, num_classes=len(LABELS), in_shape=in_shape,
                         encoder={"cell": cell, "hidden_size": 8, "impl": impl}, **variants[variant]).eval()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    state = {"arch": model.arch, "model": model.state_dict(), "labels": LABELS, "epoch": 0,
             "input_spec": {"modality": "test", "step_shape": list(in_shape)}, "config": {}}
    return model, state


def mixed_length_batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Three clips of different lengths, the longest not the traced example's length (24 steps)."""
    in_shape, steps, _ = SMOKE_INPUTS[name]
    longest = steps + 5
    generator = torch.Generator().manual_seed(1)
    return torch.randn(3, longest, *in_shape, generator=generator), torch.tensor([longest, longest - 4, longest // 2])


def run_exported(path, fmt: str, x: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if fmt == "onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        log_probs, out_lengths = session.run(None, {"x": x.numpy(), "lengths": lengths.numpy()})
        return torch.from_numpy(log_probs), torch.from_numpy(out_lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.11 marks TorchScript deprecated
        module = torch.jit.load(str(path))
    with torch.no_grad():
        return module(x, lengths)


def valid_frame_difference(log_probs: torch.Tensor, reference: torch.Tensor, out_lengths: torch.Tensor) -> float:
    """Max |a - b| over every clip's valid frames (frames past out_lengths are padding in both)."""
    assert log_probs.shape[0] == reference.shape[0] and log_probs.shape[1] >= int(out_lengths.max())
    return max(float((log_probs[i, :n] - reference[i, :n]).abs().max()) for i, n in enumerate(out_lengths.tolist()))


def export_difference(model, state, name, fmt, out_dir) -> float:
    """Export, run the exported model on a batch of several lengths, compare with PyTorch; returns the max
    abs log-prob difference (out_lengths are asserted equal)."""
    path = export(state, out_dir, fmt)
    x, lengths = mixed_length_batch(name)
    with torch.no_grad():
        reference, reference_lengths = model(x, lengths)
    log_probs, out_lengths = run_exported(path, fmt, x, lengths)
    assert torch.equal(out_lengths.long(), reference_lengths)
    return valid_frame_difference(log_probs, reference, reference_lengths)


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
@pytest.mark.parametrize("cell", ["gru", "lstm"])
@pytest.mark.parametrize("name", list_models())
def test_every_entry_exports_equal_outputs(name, cell, fmt, tmp_path):
    model, state = smoke_state(name, cell)
    difference = export_difference(model, state, name, fmt, tmp_path)
    print(f"export {name} {cell} {fmt}: max abs log-prob difference {difference:.2e}")   # shown with pytest -s
    assert difference <= TOLERANCE


@pytest.mark.parametrize("variant", [1, 2])
def test_frame_cnn_grid_and_softargmax_pools_export(variant, tmp_path):
    """The grid pool is an adaptive average pool to a size that does not divide the map (4 cells over 2 x 2
    here): torch's ONNX exporter refuses that, ours writes it as two constant matrix products."""
    model, state = smoke_state("frame_cnn_rnn", "gru", variant)
    assert export_difference(model, state, "frame_cnn_rnn", "onnx", tmp_path) <= TOLERANCE


def test_pooling_matrix_is_adaptive_average_pooling():
    x = torch.randn(2, 3, 5, 7)
    pooled = pooling_matrix(5, 4) @ x @ pooling_matrix(7, 3).t()
    assert torch.allclose(pooled, nn.functional.adaptive_avg_pool2d(x, (4, 3)), atol=1e-6)


def test_reference_cells_export_as_fused_ones(tmp_path):
    """The equation-level cells loop over time in Python (tracing would unroll the loop for one length):
    the exported graph uses torch's RNNs with the same weights."""
    model, state = smoke_state("weak_action_bigru", "lstm", impl="reference")
    assert export_difference(model, state, "weak_action_bigru", "onnx", tmp_path) <= TOLERANCE


def test_config_json_describes_the_graph(tmp_path):
    _, state = smoke_state("weak_action_bigru", "gru")
    state["input_spec"]["word_delimiter"] = None
    export(state, tmp_path, "torchscript")
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["model_file"] == "model.pt" and config["format_version"] == 1
    assert config["labels"] == LABELS and config["blank"] == 0
    assert config["input_spec"]["step_shape"] == [16] and config["preprocessing"]["in_graph"] is False
    assert config["arch"]["name"] == "weak_action_bigru" and config["decoder"]["type"] == "greedy"
    assert set(config["inputs"]) == {"x", "lengths"} and set(config["outputs"]) == {"log_probs", "out_lengths"}


def audio_spec(**features) -> dict:
    return AudioPipeline(FeatureConfig(**features)).input_spec()


def waveforms(counts: list[int], rate: int) -> torch.Tensor:
    """A zero-padded batch (B, N) of tones in noise, each clip ``counts[i]`` samples long."""
    generator = torch.Generator().manual_seed(2)
    batch = torch.zeros(len(counts), max(counts))
    for i, n in enumerate(counts):
        t = torch.arange(n) / rate
        batch[i, :n] = 0.3 * torch.sin(2 * torch.pi * (440 + 300 * i) * t) + 0.05 * torch.randn(n, generator=generator)
    return batch


@pytest.mark.parametrize("features", [
    {"kind": "fbank", "sample_rate": 8000, "n_mels": 40, "normalize": "utterance"},
    {"kind": "stft", "sample_rate": 8000, "win_ms": 20.125, "normalize": "global"},   # odd n_fft (161)
    {"kind": "fbank", "sample_rate": 16000, "n_mels": 80, "win_ms": 25.0, "normalize": "none"},
], ids=["fbank-utterance", "stft-global-odd-window", "fbank-none"])
def test_graph_features_equal_the_file_pipeline(features):
    counts = [8000, 5003, 160, 1]
    waves = waveforms(counts, features["sample_rate"])
    spec = audio_spec(**features)
    if features["normalize"] == "global":
        plain = AudioPipeline(FeatureConfig(**{**features, "normalize": "none"}))
        spec = AudioPipeline(FeatureConfig(**features), compute_global_stats(plain(w) for w in waves)).input_spec()
    pipeline = AudioPipeline.from_spec(spec)
    feats, frames = GraphFeatures(spec)(waves, torch.tensor(counts))
    for i, n in enumerate(counts):
        alone = pipeline(waves[i, :n])
        assert int(frames[i]) == alone.shape[0]
        assert torch.allclose(feats[i, : alone.shape[0]], alone, atol=1e-4, rtol=0), i
        assert not feats[i, alone.shape[0]:].any()


@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_export_with_features_reads_raw_samples(fmt, tmp_path):
    spec = audio_spec(kind="fbank", sample_rate=8000, n_mels=40, normalize="utterance")
    torch.manual_seed(0)
    model = create_model("deepspeech2_small", num_classes=len(LABELS), in_shape=(40,), conv_channels=2,
                         encoder={"hidden_size": 8}).eval()
    state = {"arch": model.arch, "model": model.state_dict(), "labels": LABELS, "input_spec": spec, "config": {}}
    path = export(state, tmp_path, fmt, with_features=True)
    counts = [12000, 7001, 2400]                       # not the two-second example the graph was traced with
    waves = waveforms(counts, 8000)
    pipeline = AudioPipeline.from_spec(spec)
    batch = collate([{"id": str(i), "input": pipeline(waves[i, :n]), "target": [1]} for i, n in enumerate(counts)])
    with torch.no_grad():
        reference, reference_lengths = model(batch["inputs"], batch["lengths"])
    log_probs, out_lengths = run_exported(path, fmt, waves, torch.tensor(counts))
    assert torch.equal(out_lengths.long(), reference_lengths)
    assert valid_frame_difference(log_probs, reference, reference_lengths) <= TOLERANCE
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["preprocessing"]["in_graph"] is True and "8000 Hz" in config["inputs"]["x"]


def test_with_features_for_a_modality_without_graph_preprocessing_is_an_error(tmp_path):
    _, state = smoke_state("lipnet", "gru")
    with pytest.raises(ExportError, match="cannot be expressed in the graph"):
        export(state, tmp_path, "onnx", with_features=True)


def test_cli_export_of_a_checkpoint(tmp_path, capsys):
    _, state = smoke_state("deepspeech2_small", "lstm")
    save_checkpoint(state, tmp_path / "best.pt")
    main(["export", str(tmp_path / "best.pt"), "--format", "onnx", "--out", str(tmp_path / "onnx")])
    assert (tmp_path / "onnx" / "model.onnx").is_file() and (tmp_path / "onnx" / "config.json").is_file()
    assert "exported" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="cannot be expressed in the graph"):
        main(["export", str(tmp_path / "best.pt"), "--out", str(tmp_path / "x"), "--with-features"])
