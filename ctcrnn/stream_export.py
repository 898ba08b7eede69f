"""Export a streaming model's step function (``ctcrnn export CHECKPOINT --streaming``): the state as explicit
inputs and outputs, so any ONNX or TorchScript runtime can run the model live.

``step``: inputs ``x`` (1, n, *step_shape) — n a multiple of ``stride`` input steps — and one tensor per state
entry (``state.<part>.<name>``, all zeros at the start of a stream); outputs ``log_probs`` (1, n / stride, V)
and the next state (``next.<part>.<name>``, same shapes). ``flush`` (only for models with a lookahead):
input the lookahead buffer (``state.encoder.lookahead``), output the last ``delay`` frames of the stream. A runtime drops the first
``delay`` frames a stream gives; at the end of a stream it pads the last chunk with zero steps up to a
multiple of ``stride`` (no kept output frame reads them), then calls ``flush``. The frames then equal the
offline model's on the whole input. ``config.json`` says all of this with the shapes, beside the graphs.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

from .bundle import deployment_config
from .checkpoint import load_checkpoint, model_from_checkpoint
from .export import OPSET, ExportError, export_onnx, export_torchscript, exportable_model
from .nn.streaming import NotStreamableError
from .paths import check_output

STEP_FILES = {"onnx": ("step.onnx", "flush.onnx"), "torchscript": ("step.pt", "flush.pt")}


def state_names(state: dict) -> list[tuple[str, str]]:
    """The (part, name) of every state tensor, in the graphs' input order."""
    return [(part, name) for part in sorted(state) for name in sorted(state[part])]


class StepFunction(nn.Module):
    """``(x, *state) -> (log_probs, *next_state)``: one chunk of a stream through ``model.stream``."""

    def __init__(self, model: nn.Module, names: list[tuple[str, str]]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, x: torch.Tensor, *flat: torch.Tensor):
        state: dict = {}
        for (part, name), tensor in zip(self.names, flat):
            state.setdefault(part, {})[name] = tensor
        log_probs = self.model.stream(x, state)
        return (log_probs, *(state[part][name] for part, name in self.names))


class FlushFunction(nn.Module):
    """``(lookahead buffer) -> log_probs`` (1, delay, V): the frames waiting for the lookahead at a stream's end."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, buffer: torch.Tensor) -> torch.Tensor:
        return self.model.flush({"encoder": {"lookahead": buffer}})


def export_streaming(checkpoint: str | Path | dict, out_dir: str | Path, format: str = "onnx") -> list[Path]:
    """Write the step function (and flush function) of a streaming checkpoint and ``config.json`` to ``out_dir``."""
    if format not in STEP_FILES:
        raise ValueError(f"unknown export format {format!r}: choose one of {', '.join(STEP_FILES)}")
    check_output(out_dir, "--out", folder=True, inside=(*STEP_FILES[format], "config.json"))
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    model = exportable_model(model_from_checkpoint(state))
    if not model.streamable:
        raise ExportError("--streaming: this model is not causal, so it has no step function; export it without "
                          "--streaming, or train a *_streaming zoo entry")
    initial = model.initial_state(1)
    names = state_names(initial)
    stride = model.frontend.stride
    x = torch.randn(1, 4 * stride, *state["input_spec"]["step_shape"], generator=torch.Generator().manual_seed(0))
    flat = [initial[part][name] for part, name in names]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    step_file, flush_file = (out_dir / f for f in STEP_FILES[format])
    inputs = ["x", *(f"state.{p}.{n}" for p, n in names)]
    outputs = ["log_probs", *(f"next.{p}.{n}" for p, n in names)]
    written = [step_file]
    with torch.no_grad():
        _save(StepFunction(model, names), (x, *flat), step_file, format, inputs, outputs,
              {"x": {1: "time"}, "log_probs": {1: "frames"}})
        if model.stream_delay:
            _save(FlushFunction(model), (initial["encoder"]["lookahead"],), flush_file, format,
                  ["state.encoder.lookahead"], ["log_probs"], {})
            written.append(flush_file)
    config = {"format": "ctcrnn-stream-export", "format_version": 1, "export_format": format,
              "exporter": (f"torch.onnx.export(dynamo=False, opset_version={OPSET})" if format == "onnx"
                           else "torch.jit.trace"), "torch_version": torch.__version__,
              "streaming": {
                  "step_file": step_file.name, "flush_file": flush_file.name if model.stream_delay else None,
                  "stride": stride, "delay_frames": model.stream_delay,
                  "state": [{"input": f"state.{p}.{n}", "output": f"next.{p}.{n}",
                             "shape": list(initial[p][n].shape), "initial": "zeros"} for p, n in names],
                  "flush_inputs": ["state.encoder.lookahead"] if model.stream_delay else [],
                  "how": ("feed chunks of a multiple of `stride` input steps with the state (zeros at first); "
                          "drop the first `delay_frames` log-prob frames of the stream; pad the last chunk with "
                          "zero steps to a multiple of `stride`; then run the flush graph on the last "
                          "`state.encoder.lookahead` for the last `delay_frames` frames"),
                  "latency": model.latency()},
              **deployment_config(state)}
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return written


def _save(module: nn.Module, inputs: tuple, path: Path, format: str, input_names: list[str],
          output_names: list[str], dynamic_axes: dict) -> None:
    if format == "onnx":
        export_onnx(module.eval(), inputs, path, input_names, output_names, dynamic_axes)
    else:
        export_torchscript(module.eval(), inputs, path)


__all__ = ["NotStreamableError", "StepFunction", "export_streaming"]
