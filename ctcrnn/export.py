"""Export a trained model to ONNX or TorchScript with dynamic batch and time axes (``ctcrnn export``).

The exported graph keeps the model contract: inputs ``x`` (B, T, *step_shape) float32 and ``lengths`` (B,)
int64, outputs ``log_probs`` (B, T', V) and ``out_lengths`` (B,). With ``with_features`` a modality's
in-graph preprocessing (audio: STFT / log-mel and normalisation) comes first, so the graph reads raw
samples ``x`` (B, N) and sample counts ``lengths`` (B,). Beside the model, ``config.json`` holds what a
runtime needs and the graph does not: labels with the blank index, input spec, preprocessing, decoder
defaults.

Why the TorchScript-based ONNX exporter (``torch.onnx.export(..., dynamo=False)``): in torch 2.11 the
dynamo exporter goes through ``torch.export``, which decomposes ``nn.GRU``/``nn.LSTM`` into a Python loop
over time steps and so specialises the time axis to the example's length ("solving the guards generated
for time ... resulted in a specialized value"); every zoo entry failed that way with dynamic axes. The
TorchScript-based exporter maps the RNNs to ONNX GRU/LSTM operators, whose sequence length stays dynamic.
Both formats are made by tracing, which keeps tensor shapes symbolic but freezes any number read out of
a tensor's *values* into a constant; frontends that do that register a trace-safe forward
(:func:`register_traceable_forward`), and the reference (equation-level) RNN cells, whose Python loop over
time would be unrolled, are swapped for torch's fused ones, which take the same ``state_dict``.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...); modalities
register their trace-safe forwards and in-graph preprocessing here.
"""
from __future__ import annotations

import copy
import json
import sys
import types
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .bundle import deployment_config
from .checkpoint import load_checkpoint, model_from_checkpoint
from .registry import Registry
from .paths import check_output

__all__ = ["FORMATS", "GRAPH_FEATURES", "ExportError", "export", "exportable_model", "register_traceable_forward"]

FORMATS = {"onnx": "model.onnx", "torchscript": "model.pt"}
OPSET = 17   # the first with ONNX's STFT and LayerNormalization; onnxruntime >= 1.14 runs it
FORMAT = "ctcrnn-export"
FORMAT_VERSION = 1

# frontend class -> forward(module, x, lengths) computing the same outputs with shapes taken from tensor
# sizes (which tracing keeps symbolic) instead of numbers read from tensor values (which it freezes).
TRACEABLE_FORWARDS: dict[type, Callable] = {}

# modality -> builder(input_spec) of an nn.Module (raw (B, N) input, (B,) counts) -> (model input, lengths):
# the modality's preprocessing as graph operations, for ``--with-features``.
GRAPH_FEATURES = Registry("in-graph preprocessing")


class ExportError(ValueError):
    """The model (or its preprocessing) cannot be exported as asked."""


def register_traceable_forward(frontend_class: type):
    """Decorator: ``@register_traceable_forward(MyFrontend)`` on ``forward(module, x, lengths)`` used instead
    of ``MyFrontend.forward`` while exporting."""
    def add(fn: Callable) -> Callable:
        TRACEABLE_FORWARDS[frontend_class] = fn
        return fn
    return add


def exportable_model(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode that traces with dynamic batch and time: reference RNN cells
    replaced by torch's fused ones (same weights), registered trace-safe frontend forwards bound in."""
    from .registry import create_model

    arch = getattr(model, "arch", None)
    encoder = getattr(model, "encoder", None)
    if arch is not None and getattr(getattr(encoder, "config", None), "impl", "fused") == "reference":
        kwargs = {**arch["kwargs"], "encoder": {**arch["kwargs"]["encoder"], "impl": "fused"}}
        kwargs.pop("weights_path", None)
        fused = create_model(arch["name"], **kwargs)
        fused.load_state_dict(model.state_dict())
        model = fused
    else:
        model = copy.deepcopy(model)
    for module in model.modules():
        forward = TRACEABLE_FORWARDS.get(type(module))
        if forward is not None:
            module.forward = types.MethodType(forward, module)
    return model.eval()


class WithFeatures(nn.Module):
    """Preprocessing graph, then the model: (B, N) raw input + (B,) counts -> (log_probs, out_lengths)."""

    def __init__(self, features: nn.Module, model: nn.Module):
        super().__init__()
        self.features, self.model = features, model

    def forward(self, x: torch.Tensor, lengths: torch.Tensor):
        inputs, input_lengths = self.features(x, lengths)
        return self.model(inputs, input_lengths)


def example_inputs(state: dict, features: nn.Module | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A batch of two clips of different lengths to trace with (tracing records the operations, whatever
    the values; two lengths so no padding-dependent branch is traced for one length only)."""
    generator = torch.Generator().manual_seed(0)
    if features is not None:
        steps = int(getattr(features, "example_length", 16000))
        x = 0.1 * torch.randn(2, steps, generator=generator)
    else:
        steps = 24
        x = torch.randn(2, steps, *state["input_spec"]["step_shape"], generator=generator)
    return x, torch.tensor([steps, steps * 3 // 4])


def diff_symbolic(g, self, n, dim, prepend, append):
    """ONNX for ``torch.diff`` (which torch 2.11's exporter lacks): concatenate prepend/append, then
    x[1:] - x[:-1] along ``dim``."""
    from torch.onnx import symbolic_helper as helper

    n, dim = helper._get_const(n, "i", "n"), helper._get_const(dim, "i", "dim")
    if n != 1:
        raise ExportError(f"torch.diff with n={n} has no ONNX export here (only n=1)")
    parts = [t for t in (prepend, self, append) if not helper._is_none(t)]
    x = g.op("Concat", *parts, axis_i=dim) if len(parts) > 1 else self
    const = lambda v: g.op("Constant", value_t=torch.tensor([v], dtype=torch.long))
    later = g.op("Slice", x, const(1), const(sys.maxsize), const(dim))
    earlier = g.op("Slice", x, const(0), const(-1), const(dim))
    return g.op("Sub", later, earlier)


def pooling_matrix(size: int, out: int) -> torch.Tensor:
    """(out, size): row i averages the cells [floor(i * size / out), ceil((i + 1) * size / out)) as torch's
    adaptive pooling does."""
    matrix = torch.zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -(-((i + 1) * size) // out)
        matrix[i, start:end] = 1.0 / (end - start)
    return matrix


def adaptive_avg_pool2d_symbolic(g, x, output_size):
    """ONNX for ``adaptive_avg_pool2d`` at any output size (torch's exporter takes only sizes that divide the
    input): with the spatial size known when tracing, the pooling is P_h @ x @ P_w^T with constant matrices."""
    from torch.onnx import symbolic_helper as helper

    sizes = helper._get_tensor_sizes(x)
    out_h, out_w = helper._parse_arg(output_size, "is")
    if not sizes or sizes[-2] is None or sizes[-1] is None:
        raise ExportError("adaptive_avg_pool2d over a dynamic spatial size has no ONNX export here")
    rows = g.op("Constant", value_t=pooling_matrix(sizes[-2], out_h))
    columns = g.op("Constant", value_t=pooling_matrix(sizes[-1], out_w).t().contiguous())
    return g.op("MatMul", g.op("MatMul", rows, x), columns)


# ONNX for the operations torch 2.11's TorchScript-based exporter lacks or refuses; registered only while
# ctcrnn exports, so other exports in the same process keep torch's own.
CUSTOM_SYMBOLICS = {"aten::diff": diff_symbolic, "aten::adaptive_avg_pool2d": adaptive_avg_pool2d_symbolic}


MODEL_AXES = {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "log_probs": {0: "batch", 1: "frames"},
              "out_lengths": {0: "batch"}}


def export_onnx(module: nn.Module, inputs: tuple, path: Path, input_names=("x", "lengths"),
                output_names=("log_probs", "out_lengths"), dynamic_axes: dict | None = None) -> None:
    """Trace ``module`` on ``inputs`` into an ONNX file (the model contract's names and dynamic axes unless given)."""
    for name, symbolic in CUSTOM_SYMBOLICS.items():
        torch.onnx.register_custom_op_symbolic(name, symbolic, OPSET)
    try:
        with warnings.catch_warnings():
            # The TorchScript-based exporter is deprecated in favour of dynamo (the module docstring says why it
            # is used here); tracing warns about every shape it records, which is what it should do.
            warnings.simplefilter("ignore")
            torch.onnx.export(module, inputs, str(path), input_names=list(input_names),
                              output_names=list(output_names), opset_version=OPSET, dynamo=False,
                              dynamic_axes=MODEL_AXES if dynamic_axes is None else dynamic_axes)
    finally:
        for name in CUSTOM_SYMBOLICS:
            torch.onnx.unregister_custom_op_symbolic(name, OPSET)


def export_torchscript(module: nn.Module, inputs: tuple, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch 2.11 marks TorchScript deprecated; it is still what C++/mobile load
        traced = torch.jit.trace(module, inputs, check_trace=False)
        torch.jit.save(traced, str(path))


def export(checkpoint: str | Path | dict, out_dir: str | Path, format: str = "onnx",
           with_features: bool = False) -> Path:
    """Write ``out_dir/model.onnx`` or ``out_dir/model.pt`` (TorchScript) and ``out_dir/config.json`` for a
    checkpoint or bundle folder (or a loaded checkpoint dict); returns the model file's path."""
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}: choose one of {', '.join(FORMATS)}")
    check_output(out_dir, "--out", folder=True, inside=(FORMATS[format], "config.json"))  # before tracing
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    model = exportable_model(model_from_checkpoint(state))
    features = None
    if with_features:
        modality = state["input_spec"].get("modality")
        if modality not in GRAPH_FEATURES.list():
            raise ExportError(f"--with-features: the {modality!r} preprocessing cannot be expressed in the graph "
                              f"(available for: {', '.join(GRAPH_FEATURES.list()) or 'none'}); export without it "
                              f"and read files with the model's reader")
        features = GRAPH_FEATURES.get(modality)(state["input_spec"]).eval()
    module = WithFeatures(features, model).eval() if features is not None else model
    inputs = example_inputs(state, features)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / FORMATS[format]
    with torch.no_grad():
        (export_onnx if format == "onnx" else export_torchscript)(module, inputs, path)
    config = {"format": FORMAT, "format_version": FORMAT_VERSION, "model_file": path.name, "export_format": format,
              "exporter": (f"torch.onnx.export(dynamo=False, opset_version={OPSET})" if format == "onnx"
                           else "torch.jit.trace"),
              "torch_version": torch.__version__,
              "inputs": graph_inputs(state["input_spec"], features),
              "outputs": {"log_probs": "(B, T', V) float32 log-probabilities over the labels, blank first",
                          "out_lengths": "(B,) int64 valid output frames per clip; frames past them are padding"},
              **deployment_config(state)}
    config["preprocessing"]["in_graph"] = features is not None
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return path


def graph_inputs(input_spec: dict, features: nn.Module | None) -> dict:
    if features is not None:
        return {"x": f"(B, N) float32 {features.describe_input()}, zero-padded",
                "lengths": "(B,) int64 samples per clip"}
    shape = ", ".join(str(s) for s in input_spec["step_shape"])
    return {"x": f"(B, T, {shape}) float32 model input, preprocessed as 'preprocessing' says, zero-padded",
            "lengths": "(B,) int64 valid time steps per clip"}
