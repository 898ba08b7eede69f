"""Optimizer steps: gradient accumulation, mixed precision, data-parallel gradients and the non-finite guard.

Every micro-batch is backpropagated as the *sum* of its per-sample CTC losses; at the step, the gradients
are summed over ranks and divided by the number of samples that went into them (over all micro-batches
and all ranks). So a step is the gradient of the mean loss over the whole effective batch, whatever the
micro-batch sizes (length buckets vary) or the number of ranks: N ranks sharing a batch of B items equal
one process with B items. The gradients are reduced here, once per step, rather than by DDP during
backward: a rank whose share of a batch is empty (unreadable files, nothing feasible) still takes part,
with zero gradients, so no rank ever waits on a collective the others skipped.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from ..config import PRECISIONS  # precision name -> autocast dtype: the one list, which the config checks too
from ..nn.ctc import CTCResult, ctc_loss
from .distributed import DistContext, all_reduce_sum


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"trainer.precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("trainer.precision=fp16 needs a CUDA device (its loss scaling is a GPU affair); "
                         "use trainer.precision=bf16 on the CPU")


@dataclass
class StepReport:
    applied: bool          # the weights were updated
    loss: float            # mean per-sample loss over the effective batch (all ranks); nan if none
    samples: int           # feasible samples in the step (all ranks)
    grad_norm: float       # before clipping; nan when nothing was computed
    non_finite: bool       # a non-finite loss or gradient made the step skip


class Stepper:
    """Accumulates micro-batches (:meth:`accumulate`) into optimizer steps (:meth:`step`).

    model: the module to run; params: what the optimizer updates. precision: fp32 | bf16 (autocast) |
    fp16 (autocast + GradScaler, CUDA only). Under torchrun (``context``) gradients are summed over ranks
    at each step and BatchNorm statistics taken from rank 0, so every rank holds the same model.
    """

    def __init__(self, model, optimizer, scheduler, device: torch.device, grad_clip: float = 0.0,
                 precision: str = "fp32", context: DistContext | None = None):
        check_precision(precision, device)
        self.model, self.optimizer, self.scheduler, self.device = model, optimizer, scheduler, device
        self.grad_clip, self.dtype, self.context = grad_clip, PRECISIONS[precision], context or DistContext()
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self._reset()

    def _reset(self) -> None:
        self.loss_sum, self.samples, self.finite = 0.0, 0, True
        self.optimizer.zero_grad(set_to_none=True)

    def autocast(self):
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def accumulate(self, batch: dict) -> CTCResult:
        """Forward and backward one collated micro-batch (its summed loss: see the module docstring)."""
        with self.autocast():
            log_probs, out_lengths = self.model(batch["inputs"].to(self.device, non_blocking=True),
                                                batch["lengths"].to(self.device))
        result = ctc_loss(log_probs, out_lengths, batch["targets"], batch["ids"])
        aux = self.auxiliary_loss(batch)
        if result.loss is None:
            return result  # nothing feasible: no gradient from this micro-batch
        total = result.loss * result.kept
        self.finite &= bool(torch.isfinite(result.loss))
        self.loss_sum += float(total.detach()) if self.finite else math.nan
        self.samples += result.kept
        total = total + aux
        (self.scaler.scale(total) if self.scaler is not None else total).backward()
        return result

    def auxiliary_loss(self, batch: dict) -> torch.Tensor | float:
        """weight x summed CTC loss of the model's auxiliary head (see CTCModel), or 0 without one."""
        module = self.model
        aux, module.aux_output = getattr(module, "aux_output", None), None
        if aux is None:
            return 0.0
        result = ctc_loss(*aux, batch["targets"], batch["ids"])
        if result.loss is None:
            return 0.0
        self.finite &= bool(torch.isfinite(result.loss))
        return module.aux_ctc_weight * result.loss * result.kept

    def step(self) -> StepReport:
        """Divide the accumulated gradients by the samples behind them, clip, and update the weights unless
        the loss or the gradients are not finite (then the weights are left untouched)."""
        loss_sum, samples, bad = all_reduce_sum([self.loss_sum if self.finite else 0.0, self.samples,
                                                 0.0 if self.finite else 1.0], self.context)
        samples = int(samples)
        if samples == 0:
            self._reset()
            return StepReport(False, math.nan, 0, math.nan, False)
        self._reduce_gradients()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        for p in self.params:  # summed over samples and ranks -> the mean over samples
            if p.grad is not None:
                p.grad.div_(samples)
        grad_norm = float(torch.nn.utils.clip_grad_norm_(self.params, self.grad_clip or math.inf))
        non_finite = bool(bad) or not math.isfinite(grad_norm)
        applied = False
        if self.scaler is not None:
            # fp16: the scaler skips an overflowing step and lowers its scale; update() must follow every
            # unscale_(). A skipped step still counts as non-finite, so a run whose gradients never come
            # back finite stops after trainer.max_bad_steps instead of shrinking the scale forever.
            scale_before = self.scaler.get_scale()
            if not bad:
                self.scaler.step(self.optimizer)
            self.scaler.update()
            applied = not bad and self.scaler.get_scale() >= scale_before
            non_finite = not applied
        elif not non_finite:
            self.optimizer.step()
            applied = True
        if applied:
            self.scheduler.step()
        self._sync_buffers()
        self._reset()
        return StepReport(applied, loss_sum / samples if not bad else math.nan, samples, grad_norm, non_finite)

    def _reduce_gradients(self) -> None:
        """Sum every gradient over ranks (a missing gradient counts as zero), in one flat buffer."""
        if not self.context.enabled:
            return
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch.distributed.all_reduce(flat)
        offset = 0
        for p, g in zip(self.params, grads):
            p.grad = flat[offset : offset + g.numel()].view_as(g).clone()
            offset += g.numel()

    def _sync_buffers(self) -> None:
        """BatchNorm running statistics from rank 0 (each rank saw only its share of the batch)."""
        if self.context.enabled:
            for buffer in self.model.buffers():
                torch.distributed.broadcast(buffer, src=0)

    def broadcast_parameters(self) -> None:
        """Start every rank from rank 0's weights."""
        if self.context.enabled:
            for tensor in [*self.model.parameters(), *self.model.buffers()]:
                torch.distributed.broadcast(tensor.data, src=0)

    def state_dict(self) -> dict:
        return {"scaler": self.scaler.state_dict()} if self.scaler is not None else {}

    def load_state_dict(self, state: dict) -> None:
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
