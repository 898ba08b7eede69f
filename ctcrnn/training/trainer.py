"""The training loop: AdamW + warm-up/cosine, gradient accumulation, mixed precision, clipping,
validation, atomic checkpoints (every epoch, every N steps and/or M minutes), exact resume, torchrun DDP.

A checkpoint holds everything the run depends on: weights, optimizer, scheduler, grad scaler, the position
in the epoch's batch plan (which depends only on seed and epoch), the epoch's running sums and every RNG
state. DataLoaders draw their worker seeds from their own generator, never from the global one, and
datasets seed per-item randomness from (seed, epoch, index) through ``set_epoch``; so a run killed at any
point and resumed from its last checkpoint ends with weights bitwise equal (CPU) to an uninterrupted run.
Under DDP the global RNG is reseeded per batch and rank (see the loop), so that holds for every rank.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...);
datasets and models come from the registries.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch

from ..config import Config, apply_override, config_from_dict, config_to_dict, save_config, validate_config
from ..data import build_dataset, make_loader, plan_batches
from ..inference import predict, resolve_device
from ..metrics import edit_distance
from ..nn.ctc import ctc_loss
from ..randomness import rng_state, seed_everything, set_rng_state, step_seed
from ..registry import create_model
from ..runlog import Progress, TableLog, TensorBoardLog, record_skipped, truncate_skipped
from .checkpoints import BATCH_PLAN_KEYS, Checkpointer, load_resume_state
from .distributed import DistContext, all_reduce_sum, broadcast_object, gather_lists, init_distributed
from .stepping import Stepper, check_precision

log = logging.getLogger(__name__)


def make_optimizer(model: torch.nn.Module, tc) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) or SGD with momentum, from ``trainer.optimizer``."""
    if tc.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    return torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)


def cosine_with_warmup(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


def validate(model, loader, device, context: DistContext | None = None) -> dict:
    """Mean CTC loss, greedy token error rate (%) and skipped (infeasible or unreadable) samples over a
    split; under torchrun each rank scores its share of the batches and the sums are reduced."""
    loss_sum, kept, skipped, edits, ref_tokens, unreadable = 0.0, 0, 0, 0, 0, []
    for batch, log_probs, out_lengths, hyps in predict(model, loader, device, unreadable):
        result = ctc_loss(log_probs, out_lengths, batch["targets"], batch["ids"])
        if result.loss is not None:
            loss_sum += result.loss.item() * result.kept
            kept += result.kept
        skipped += len(result.skipped)
        edits += sum(edit_distance(r, h) for r, h in zip(batch["targets"], hyps))
        ref_tokens += sum(len(r) for r in batch["targets"])
    loss_sum, kept, skipped, edits, ref_tokens = all_reduce_sum(
        [loss_sum, kept, skipped + len(unreadable), edits, ref_tokens], context or DistContext())
    if ref_tokens == 0:
        raise ValueError("validation split has no reference labels to score (empty, or every clip unreadable)")
    return {"loss": loss_sum / max(kept, 1), "ter": 100.0 * edits / ref_tokens, "skipped": int(skipped)}


def new_run_dir(out_dir: Path, name: str) -> Path:
    """out_dir/name, or name-2, name-3, ... when a run is already there (never mix two runs)."""
    run_dir, n = out_dir / name, 1
    while (run_dir / "config.yaml").exists():
        n += 1
        run_dir = out_dir / f"{name}-{n}"
    return run_dir


def train(cfg: Config | None, resume: str | Path | None = None, overrides: list[str] = ()) -> Path:
    """Train from ``cfg`` (or continue the run of ``resume``: a checkpoint or run folder); returns the run
    folder. Under torchrun every rank calls this; rank 0 alone writes files. torch's CPU thread count
    (``trainer.threads``) is set for the run only and restored afterwards."""
    threads = torch.get_num_threads()
    try:
        return _train(cfg, resume, overrides)
    finally:
        torch.set_num_threads(threads)


def _train(cfg: Config | None, resume: str | Path | None, overrides: list[str]) -> Path:
    state = None
    if resume is not None:
        state, resume_dir = load_resume_state(resume)
        changing = [o for o in overrides if o.startswith("model.")]
        if changing:
            raise ValueError(f"{resume}: model.* overrides ({', '.join(changing)}) cannot change the architecture "
                             f"of a resumed run (its weights are for model.encoder {state['config']['model']['encoder']}"
                             f"): start a new run instead")
        moving = [o for o in overrides if o.split("=", 1)[0].strip() in BATCH_PLAN_KEYS]
        if moving and not state.get("epoch_done", True):
            raise ValueError(f"{resume} stopped in the middle of an epoch, whose batches depend on "
                             f"{', '.join(sorted(BATCH_PLAN_KEYS))}: overriding {', '.join(moving)} would make the "
                             f"rest of it different batches; resume without them, or from an epoch-end checkpoint")
        cfg = config_from_dict(state["config"])
        for override in overrides:  # e.g. trainer.max_epochs=30 to extend a finished run
            apply_override(cfg, override)
    tc, dc = cfg.trainer, cfg.data
    validate_config(cfg)
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    context, device = init_distributed(resolve_device(tc.device))
    check_precision(tc.precision, device)
    if not context.is_main:
        log.setLevel(logging.WARNING)

    train_set = build_dataset(dc.name, dc.train_split, dc.args)
    fitted = {"labels": list(train_set.labels), "input_spec": dict(train_set.input_spec)}
    if state is not None and fitted["labels"] != list(state["labels"]):
        raise ValueError(f"{resume} was trained with labels {state['labels'][:10]}... but the data now gives "
                         f"{fitted['labels'][:10]}...: a resumed run must keep its vocabulary (label ids)")
    val_set = build_dataset(dc.name, dc.val_split, dc.args, fitted=fitted)
    model = create_model(cfg.model.name, num_classes=len(train_set.labels),
                         in_shape=tuple(train_set.input_spec["step_shape"]), encoder=cfg.model.encoder,
                         **cfg.model.args)
    cfg.model.encoder = dict(vars(model.encoder.config))  # the resolved encoder goes into the saved config
    model.to(device)
    if tc.compile:
        model.frontend.compile()  # in place: state_dict keys stay as they are
    run_dir = resume_dir if state is not None else broadcast_object(
        new_run_dir(Path(tc.out_dir), tc.run_name or f"{dc.name}-{cfg.model.name}-{model.encoder.config.cell}")
        if context.is_main else None, context)
    if context.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")

    optimizer = make_optimizer(model, tc)
    plan = lambda epoch: plan_batches(train_set, dc.batch_size, tc.seed, epoch, dc.max_frames, dc.sortagrad)  # noqa: E731
    steps_per_epoch = math.ceil(len(plan(0)) / tc.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(tc.warmup_steps, tc.max_epochs * steps_per_epoch))
    stepper = Stepper(model, optimizer, scheduler, device, tc.grad_clip, tc.precision, context)
    start_epoch, position, step, best, bad_in_a_row, progress = 0, 0, 0, math.inf, 0, None
    stepper.broadcast_parameters()  # the same start on every rank (a resume below loads the same file everywhere)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        stepper.load_state_dict(state.get("stepper", {}))
        step, best, bad_in_a_row = state["step"], state["best_ter"], state.get("bad_in_a_row", 0)
        start_epoch = state["epoch"] + 1 if state.get("epoch_done", True) else state["epoch"]
        if not state.get("epoch_done", True):
            position, progress = state["position"], dict(state["progress"])
        if state["max_epochs"] != tc.max_epochs:
            log.warning("max_epochs changed from %d to %d: the cosine schedule stretches from here on",
                        state["max_epochs"], tc.max_epochs)
        set_rng_state(state["rng"])
        log.info("resumed from step %d: epoch %d, batch %d", step, start_epoch + 1, position)

    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s (%s, %.2fM parameters) on %s%s; %d train / %d val clips; run folder %s", cfg.model.name,
             model.encoder.config.cell, n_params / 1e6, device, f" x {context.world} ranks" if context.enabled else "",
             len(train_set), len(val_set), run_dir)
    metrics_log, steps_log = TableLog(run_dir, "metrics", "epoch"), TableLog(run_dir, "steps", "step")
    tensorboard = TensorBoardLog(run_dir) if tc.tensorboard and context.is_main else None
    checkpointer = Checkpointer(run_dir, tc.keep_checkpoints, tc.checkpoint_every_steps, tc.checkpoint_every_minutes)
    if context.is_main and state is not None:  # cut the logs back to what the checkpoint had seen
        metrics_log.truncate(state["epoch"])
        steps_log.truncate(step)
        truncate_skipped(run_dir, start_epoch + 1)
        if state.get("epoch_done", True):
            metrics_log.write(state["metrics"])
        elif progress["skipped"]:
            record_skipped(run_dir, start_epoch + 1, [tuple(s) for s in progress["skipped"]], first=False)
    describe = {"arch": model.arch, **fitted}

    def snapshot(epoch: int, epoch_done: bool, position: int, progress: dict, row: dict | None = None) -> dict:
        return {**describe, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "stepper": stepper.state_dict(), "epoch": epoch,
                "epoch_done": epoch_done, "position": position, "progress": progress, "step": step,
                "best_ter": best, "bad_in_a_row": bad_in_a_row, "max_epochs": tc.max_epochs, "metrics": row or {},
                "config": config_to_dict(cfg), "rng": rng_state()}

    for epoch in range(start_epoch, tc.max_epochs):
        model.train()
        loader = make_loader(train_set, dc.batch_size, dc.num_workers, device, tc.seed, epoch, dc.max_frames,
                             dc.sortagrad, start=position, shard=(context.rank, context.world))
        progress = progress or {"loss_sum": 0.0, "samples": 0, "frames": 0, "skipped": [], "bad_steps": 0,
                                "seconds": 0.0}
        started, done_before, interval = time.time() - progress["seconds"], progress["samples"], []
        interval_start = time.time()
        last_position = position + len(loader)
        bar = Progress(loader, f"epoch {epoch + 1}/{tc.max_epochs}", position, position + len(loader),
                       enabled=tc.progress and context.is_main, every_s=tc.progress_every_s)
        for batch in bar:
            position += 1
            if context.enabled:
                # Dropout draws from the global RNG and ranks see different batches, so their RNG states
                # drift apart and a checkpoint (written by rank 0) could not restore the others'. Seeding
                # each batch from (seed, epoch, position, rank) makes every rank's state a function of the
                # position alone: an exact resume on every rank, and different masks on different ranks.
                torch.manual_seed(step_seed(tc.seed, epoch, position, context.rank))
            skipped = batch["skipped"]
            if batch["inputs"] is not None:
                result = stepper.accumulate(batch)
                skipped = skipped + result.skipped
                progress["frames"] += int(batch["lengths"].sum())
            skipped = gather_lists(skipped, context)  # every rank's skips: rank 0 logs and checkpoints them all
            if skipped and context.is_main:
                record_skipped(run_dir, epoch + 1, skipped, first=not progress["skipped"])
            progress["skipped"] += [list(s) for s in skipped]
            if position % tc.grad_accum and position < last_position:
                continue  # more micro-batches to accumulate before this step
            report = stepper.step()
            if report.non_finite:
                progress["bad_steps"] += 1
                bad_in_a_row += 1
                log.warning("non-finite loss/gradient at step %d (ids %s): step skipped", step, batch["ids"][:8])
                if bad_in_a_row >= tc.max_bad_steps:
                    raise RuntimeError(f"{bad_in_a_row} non-finite steps in a row: stopping before the weights are "
                                       f"corrupted; lower trainer.lr or check the data (last ids {batch['ids'][:8]})")
                continue
            if not report.applied:
                continue
            bad_in_a_row, step = 0, step + 1
            progress["loss_sum"] += report.loss * report.samples
            progress["samples"] += report.samples
            progress["seconds"] = time.time() - started
            interval.append(report)
            rate = (progress["samples"] - done_before) / max(time.time() - started, 1e-9)
            bar.update(loss=f"{report.loss:.3f}", clips_s=f"{rate:.1f}")
            if context.is_main and tc.log_every_steps and step % tc.log_every_steps == 0:
                row = step_row(step, epoch, interval, optimizer, len(progress["skipped"]), time.time() - interval_start)
                steps_log.write(row)
                if tensorboard:
                    tensorboard.write("train", row, step)
                interval, interval_start = [], time.time()
            if checkpointer.due(step) and context.is_main:
                checkpointer.save(snapshot(epoch, False, position, progress))
        train_time = time.time() - started
        val = validate(model, make_loader(val_set, dc.eval_batch_size, dc.num_workers, device,
                                          max_frames=dc.max_frames, shard=(context.rank, context.world), split_batches=False),
                       device, context)
        train_loss = progress["loss_sum"] / max(progress["samples"], 1)
        row = {"epoch": epoch + 1, "step": step, "train_loss": round(train_loss, 5),
               "val_loss": round(val["loss"], 5), "val_ter": round(val["ter"], 3),
               "lr": optimizer.param_groups[0]["lr"], "clips_per_s": round(progress["samples"] / train_time, 2),
               "frames_per_s": round(progress["frames"] * context.world / train_time, 1),
               "epoch_s": round(train_time, 1), "skipped_samples": len(progress["skipped"]),
               "val_skipped": val["skipped"], "skipped_steps": progress["bad_steps"]}
        log.info("epoch %d/%d  train_loss %.4f  val_loss %.4f  val_TER %.2f%%  %.1f clips/s  %.0fs%s",
                 epoch + 1, tc.max_epochs, row["train_loss"], row["val_loss"], row["val_ter"], row["clips_per_s"],
                 train_time, f"  skipped {row['skipped_samples']} samples" if row["skipped_samples"] else "")
        is_best = val["ter"] < best
        best = min(best, val["ter"])
        if context.is_main:
            # Checkpoint first, then the metrics row; a resume rewrites the row from the checkpoint if needed.
            checkpointer.save(snapshot(epoch, True, 0, {}, row), best=is_best)
            metrics_log.write(row)
            if tensorboard:
                tensorboard.write("epoch", row, step)
        position, progress = 0, None
    if tensorboard:
        tensorboard.close()
    return run_dir


def step_row(step: int, epoch: int, reports: list, optimizer, skipped: int, seconds: float) -> dict:
    """One line of steps.jsonl: means over the optimizer steps since the previous line, which took ``seconds``."""
    samples = sum(r.samples for r in reports)
    return {"step": step, "epoch": epoch + 1,
            "loss": round(sum(r.loss * r.samples for r in reports) / max(samples, 1), 6),
            "grad_norm": round(sum(r.grad_norm for r in reports) / max(len(reports), 1), 4),
            "lr": optimizer.param_groups[0]["lr"], "samples": samples,
            "clips_per_s": round(samples / max(seconds, 1e-9), 2), "skipped_samples": skipped,
            "time": round(time.time(), 3)}
