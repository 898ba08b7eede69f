"""torchrun data parallelism: process group set-up, rank-0 duties, and sums reduced across ranks.

``torchrun --nproc_per_node=N train.py ...`` sets RANK/WORLD_SIZE/LOCAL_RANK; :func:`init_distributed`
then joins the process group (NCCL on GPU, Gloo on CPU). Every rank plans the same global batches and
takes its share of each (``batch[rank::world]``), so length bucketing survives and a run on N ranks sees
the same samples per step as a single process with the same global batch.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files and logs; the others compute."""
        return self.rank == 0


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the torchrun process group if there is one; returns the context and this rank's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext(), device
    context = DistContext(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        # NCCL reduces CUDA tensors only; the per-step sums (losses, sample counts) are small CPU tensors,
        # so GPU runs get Gloo beside NCCL for those.
        dist.init_process_group("cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo")
    return context, device


def all_reduce_sum(values: list[float], context: DistContext, op: str = "sum") -> list[float]:
    """Element-wise sum (or max) of ``values`` over all ranks, in float64; unchanged on a single process."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return tensor.tolist()


def gather_lists(items: list, context: DistContext) -> list:
    """Every rank's ``items`` joined in rank order, on every rank (all ranks must call it); one numeric
    all-reduce when every list is empty, as it nearly always is (e.g. the clips a batch skipped)."""
    if not context.enabled:
        return list(items)
    if not all_reduce_sum([len(items)], context)[0]:
        return []
    gathered = [None] * context.world
    dist.all_gather_object(gathered, list(items))
    return [item for part in gathered for item in part]


def broadcast_object(obj, context: DistContext):
    """Rank 0's ``obj`` on every rank (e.g. the run folder that rank 0 chose)."""
    if not context.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def shutdown(context: DistContext) -> None:
    """Leave the process group together: a rank that tore its Gloo group down while rank 0 was still
    writing the last checkpoint occasionally aborted at exit ("terminate called without an active
    exception", 2 of ~20 test runs), so every rank waits for the others first."""
    if context.enabled and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
