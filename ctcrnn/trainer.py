"""The training loop: AdamW + warm-up/cosine, clipping, validation, atomic checkpoints, resume.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...);
datasets and models come from the registries.
"""
from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .config import (
    Config,
    apply_override,
    config_from_dict,
    config_to_dict,
    save_config,
)
from .ctc import ctc_loss
from .data import LengthBucketSampler, build_dataset, collate
from .decoding import greedy_decode
from .metrics import error_rate
from .registry import create_model

log = logging.getLogger("ctcrnn.train")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"trainer.device={name} but no CUDA device is available: use trainer.device=auto or cpu")
    return device


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict:
    # NumPy's legacy state holds an ndarray; store it as a tensor so weights_only loading accepts it.
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos, "has_gauss": has_gauss,
                       "gauss": gauss}}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_loader(dataset, batch_size: int, num_workers: int, device: torch.device, seed: int | None = None,
                epoch: int = 0, max_frames: int = 0, sortagrad: bool = False) -> DataLoader:
    """Batches of ``batch_size`` items, shuffled when ``seed`` is given; with ``max_frames`` > 0 and a
    dataset that knows its ``lengths``, batches of similar-length items holding at most ``max_frames``
    padded input steps (and at most ``batch_size`` items). The order depends only on seed and epoch, so
    a resumed run sees the same batches."""
    if max_frames > 0 and getattr(dataset, "lengths", None) is not None:
        sampler = LengthBucketSampler(dataset.lengths, max_frames, batch_size, seed=seed or 0, epoch=epoch,
                                      sortagrad=sortagrad, shuffle=seed is not None)
        return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=collate,
                          pin_memory=device.type == "cuda")
    order = None
    if seed is not None:
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()
    return DataLoader(dataset, batch_size=batch_size, sampler=order, num_workers=num_workers,
                      collate_fn=collate, pin_memory=device.type == "cuda")


def cosine_with_warmup(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return factor


@torch.no_grad()
def predict(model, loader, device, unreadable: list | None = None):
    """Yield (batch, log_probs (B, T', V) on CPU, out_lengths (B,), greedy hypotheses) in eval mode;
    items the dataset could not read are appended to ``unreadable`` as (id, reason)."""
    model.eval()
    for batch in loader:
        if unreadable is not None:
            unreadable += batch["skipped"]
        if batch["inputs"] is None:
            continue
        log_probs, out_lengths = model(batch["inputs"].to(device, non_blocking=True), batch["lengths"].to(device))
        log_probs, out_lengths = log_probs.cpu(), out_lengths.cpu()
        yield batch, log_probs, out_lengths, greedy_decode(log_probs, out_lengths)


def train_step(model, batch: dict, optimizer, scheduler, device: torch.device, grad_clip: float):
    """One optimisation step on a collated batch: forward, CTC loss (infeasible samples left out),
    backward, gradient clipping, optimizer and scheduler step.

    Returns (CTCLossResult, applied): ``result.loss`` is None when no sample was feasible; ``applied`` is
    False when nothing was updated, including a non-finite loss or gradient, which never touches the weights.
    """
    log_probs, out_lengths = model(batch["inputs"].to(device, non_blocking=True), batch["lengths"].to(device))
    result = ctc_loss(log_probs, out_lengths, batch["targets"], batch["ids"])
    if result.loss is None:
        return result, False
    optimizer.zero_grad(set_to_none=True)
    result.loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip or math.inf)
    if not (torch.isfinite(result.loss) and torch.isfinite(grad_norm)):
        return result, False
    optimizer.step()
    scheduler.step()
    return result, True


def validate(model, loader, device) -> dict:
    """Mean CTC loss, greedy token error rate (%) and skipped (infeasible or unreadable) samples over a split."""
    total_loss, kept, skipped, refs, hyps, unreadable = 0.0, 0, 0, [], [], []
    for batch, log_probs, out_lengths, batch_hyps in predict(model, loader, device, unreadable):
        result = ctc_loss(log_probs, out_lengths, batch["targets"], batch["ids"])
        if result.loss is not None:
            total_loss += result.loss.item() * result.kept
            kept += result.kept
        skipped += len(result.skipped)
        refs += batch["targets"]
        hyps += batch_hyps
    return {"loss": total_loss / max(kept, 1), "ter": error_rate(refs, hyps), "skipped": skipped + len(unreadable)}


class MetricsLog:
    """One row per epoch, appended to metrics.csv and metrics.jsonl in the run folder."""

    def __init__(self, run_dir: Path):
        self.csv, self.jsonl = run_dir / "metrics.csv", run_dir / "metrics.jsonl"

    def truncate(self, epochs: int) -> None:
        """Keep the first ``epochs`` rows: a resumed run rewrites what came after its checkpoint."""
        for path, header in ((self.csv, 1), (self.jsonl, 0)):
            if path.exists():
                lines = path.read_text().splitlines(keepends=True)
                path.write_text("".join(lines[: header + epochs]))

    def write(self, row: dict) -> None:
        new = not self.csv.exists()
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")


def train(cfg: Config, resume: str | Path | None = None, overrides: list[str] = ()) -> Path:
    """Train from ``cfg`` (or continue the run in ``resume``); returns the run folder."""
    state = None
    if resume is not None:
        state = load_checkpoint(resume)
        cfg = config_from_dict(state["config"])
        for override in overrides:  # e.g. trainer.max_epochs=30 to extend a finished run
            apply_override(cfg, override)
    tc = cfg.trainer
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    device = resolve_device(tc.device)

    train_set = build_dataset(cfg.data.name, cfg.data.train_split, cfg.data.args)
    fitted = {"labels": list(train_set.labels), "input_spec": dict(train_set.input_spec)}
    val_set = build_dataset(cfg.data.name, cfg.data.val_split, cfg.data.args, fitted=fitted)
    model = create_model(cfg.model.name, num_classes=len(train_set.labels),
                         in_shape=tuple(train_set.input_spec["step_shape"]), encoder=cfg.model.encoder,
                         **cfg.model.args)
    cfg.model.encoder = dict(vars(model.encoder.config))  # the resolved encoder goes into the saved config
    model.to(device)
    run_dir = Path(resume).parent if resume is not None else new_run_dir(
        Path(tc.out_dir), tc.run_name or f"{cfg.data.name}-{cfg.model.name}-{model.encoder.config.cell}")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    dc = cfg.data
    train_loader = lambda epoch: make_loader(train_set, dc.batch_size, dc.num_workers, device, seed=tc.seed,
                                             epoch=epoch, max_frames=dc.max_frames, sortagrad=dc.sortagrad)
    steps_per_epoch = len(train_loader(0))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(tc.warmup_steps, tc.max_epochs * steps_per_epoch))
    start_epoch, step, best = 0, 0, math.inf
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch, step, best = state["epoch"] + 1, state["step"], state["best_ter"]
        if state["max_epochs"] != tc.max_epochs:
            log.warning("max_epochs changed from %d to %d: the cosine schedule stretches from here on",
                        state["max_epochs"], tc.max_epochs)
        set_rng_state(state["rng"])
        log.info("resumed %s at epoch %d (step %d)", resume, start_epoch, step)

    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s (%s, %.2fM parameters) on %s; %d train / %d val clips; run folder %s",
             cfg.model.name, model.encoder.config.cell, n_params / 1e6, device, len(train_set), len(val_set), run_dir)
    val_loader = make_loader(val_set, dc.eval_batch_size, dc.num_workers, device, max_frames=dc.max_frames)
    metrics_log = MetricsLog(run_dir)
    metrics_log.truncate(start_epoch)
    describe = {"arch": model.arch, **fitted}
    bad_in_a_row = 0

    for epoch in range(start_epoch, tc.max_epochs):
        model.train()
        loader = train_loader(epoch)
        started, frames, loss_sum, loss_count, skipped, bad_steps = time.time(), 0, 0.0, 0, [], 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{tc.max_epochs}", disable=not tc.progress, leave=False,
                   dynamic_ncols=True)
        for batch in bar:
            if batch["skipped"]:  # unreadable items: already left out of the batch
                record_skipped(run_dir, epoch + 1, batch["skipped"], first=not skipped)
                skipped += batch["skipped"]
            if batch["inputs"] is None:
                continue
            result, applied = train_step(model, batch, optimizer, scheduler, device, tc.grad_clip)
            if result.skipped:
                record_skipped(run_dir, epoch + 1, result.skipped, first=not skipped)
            skipped += result.skipped
            if result.loss is None:
                continue
            if not applied:  # stop if non-finite steps keep coming
                bad_steps += 1
                bad_in_a_row += 1
                log.warning("non-finite loss/gradient at step %d (ids %s): step skipped", step, batch["ids"][:8])
                if bad_in_a_row >= tc.max_bad_steps:
                    raise RuntimeError(f"{bad_in_a_row} non-finite steps in a row: stopping before the weights are "
                                       f"corrupted; lower trainer.lr or check the data (last ids {batch['ids'][:8]})")
                continue
            bad_in_a_row = 0
            step += 1
            loss_sum += result.loss.item() * result.kept
            loss_count += result.kept
            frames += int(batch["lengths"].sum())
            bar.set_postfix(loss=f"{result.loss.item():.3f}", clips_s=f"{loss_count / (time.time() - started):.1f}")
        train_time = time.time() - started
        val = validate(model, val_loader, device)
        row = {"epoch": epoch + 1, "step": step, "train_loss": round(loss_sum / max(loss_count, 1), 5),
               "val_loss": round(val["loss"], 5), "val_ter": round(val["ter"], 3),
               "lr": optimizer.param_groups[0]["lr"], "clips_per_s": round(loss_count / train_time, 2),
               "frames_per_s": round(frames / train_time, 1), "epoch_s": round(train_time, 1),
               "skipped_samples": len(skipped), "val_skipped": val["skipped"], "skipped_steps": bad_steps}
        log.info("epoch %d/%d  train_loss %.4f  val_loss %.4f  val_TER %.2f%%  %.1f clips/s  %.0fs%s",
                 epoch + 1, tc.max_epochs, row["train_loss"], row["val_loss"], row["val_ter"], row["clips_per_s"],
                 train_time, f"  skipped {len(skipped)} infeasible" if skipped else "")
        is_best = val["ter"] < best
        best = min(best, val["ter"])
        checkpoint = {**describe, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict(), "epoch": epoch, "step": step, "best_ter": best,
                      "max_epochs": tc.max_epochs, "metrics": row, "config": config_to_dict(cfg),
                      "rng": rng_state()}
        # Checkpoint first, then the metrics row: a crash in between never leaves a row without its state.
        if is_best:
            save_checkpoint(checkpoint, run_dir / "best.pt")
        save_checkpoint(checkpoint, run_dir / "last.pt")
        metrics_log.write(row)
    return run_dir


def new_run_dir(out_dir: Path, name: str) -> Path:
    """out_dir/name, or name-2, name-3, ... when a run is already there (never mix two runs)."""
    run_dir, n = out_dir / name, 1
    while (run_dir / "config.yaml").exists():
        n += 1
        run_dir = out_dir / f"{name}-{n}"
    return run_dir


def record_skipped(run_dir: Path, epoch: int, skipped: list[tuple[str, str]], first: bool) -> None:
    """Every skipped sample goes to skipped.tsv; the log shows the first of each epoch."""
    path = run_dir / "skipped.tsv"
    new = not path.exists()
    with open(path, "a") as f:
        if new:
            f.write("epoch\tid\treason\n")
        f.writelines(f"{epoch}\t{sample_id}\t{reason}\n" for sample_id, reason in skipped)
    if first:
        log.warning("skipping %s: %s (all skipped samples are listed in %s)", *skipped[0], path)
