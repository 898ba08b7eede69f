"""The exported step function of every streaming zoo entry (ONNX run with onnxruntime, TorchScript with
torch.jit.load): fed a stream chunk by chunk with the state as explicit tensors, as config.json tells a runtime
to (drop the first delay frames, pad the last chunk with zeros to whole strides, then flush), its frames equal
the PyTorch model's offline log-probs over the whole input within 1e-5."""
import json
import warnings

import onnxruntime
import pytest
import torch

from ctcrnn import list_models
from ctcrnn.export import ExportError
from ctcrnn.stream_export import export_streaming
from tests.test_export import smoke_state

# The graphs run the same float32 operations as PyTorch, fused differently by the runtime: rounding-level
# differences (2.4e-7 measured), far below the 1e-5 that streaming promises.
TOLERANCE = 1e-5


class Runner:
    """Runs an exported graph with named inputs -> list of outputs, for both formats."""

    def __init__(self, path, fmt):
        self.fmt = fmt
        if fmt == "onnx":
            self.session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            self.inputs = [i.name for i in self.session.get_inputs()]
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self.module = torch.jit.load(str(path))

    def __call__(self, *tensors):
        if self.fmt == "onnx":
            return [torch.from_numpy(a) for a in self.session.run(None, {n: t.numpy() for n, t in zip(self.inputs, tensors)})]
        with torch.no_grad():
            out = self.module(*tensors)
        return list(out) if isinstance(out, (tuple, list)) else [out]


@pytest.mark.parametrize("name", list_models("*_streaming"))
@pytest.mark.parametrize("fmt", ["onnx", "torchscript"])
def test_exported_step_function_streams_the_offline_frames(name, fmt, tmp_path):
    model, state = smoke_state(name, "lstm" if fmt == "onnx" else "gru")
    export_streaming(state, tmp_path, fmt)
    config = json.loads((tmp_path / "config.json").read_text())["streaming"]
    stride, delay = config["stride"], config["delay_frames"]
    step = Runner(tmp_path / config["step_file"], fmt)
    flat = [torch.zeros(entry["shape"]) for entry in config["state"]]
    steps = 7 * stride + 1                              # the last chunk is not a whole number of strides
    in_shape = state["input_spec"]["step_shape"]
    x = torch.randn(1, steps, *in_shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        offline, _ = model(x, torch.tensor([steps]))
    padded = torch.cat([x, x.new_zeros(1, -steps % stride, *in_shape)], dim=1)
    frames = []
    for chunk in padded.split([2 * stride, stride, 3 * stride, padded.shape[1] - 6 * stride], dim=1):
        log_probs, *flat = step(chunk, *flat)
        frames.append(log_probs)
    if delay:
        flush = Runner(tmp_path / config["flush_file"], fmt)
        encoder = {entry["input"]: t for entry, t in zip(config["state"], flat)}
        frames += flush(*(encoder[n] for n in config["flush_inputs"]))
    streamed = torch.cat(frames, dim=1)[:, delay:]
    assert streamed.shape == offline.shape
    assert float((streamed - offline).abs().max()) <= TOLERANCE


def test_bidirectional_models_have_no_step_function(tmp_path):
    _, state = smoke_state("deepspeech2_small", "gru")
    with pytest.raises(ExportError, match="not causal"):
        export_streaming(state, tmp_path / "out", "onnx")
