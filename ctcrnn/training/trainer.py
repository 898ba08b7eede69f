"""The training loop: AdamW + warm-up/cosine, gradient accumulation, mixed precision, clipping,
validation, atomic checkpoints (every epoch, every N steps and/or M minutes), exact resume, torchrun DDP.

A checkpoint holds everything the run depends on: weights, optimizer, scheduler, grad scaler, the position
in the epoch's batch plan (which depends only on seed and epoch), the epoch's running sums and every RNG
state. DataLoaders draw their worker seeds from their own generator, never from the global one, and
datasets seed per-item randomness from (seed, epoch, index) through ``set_epoch``; so a run killed at any
point and resumed from its last checkpoint ends with weights bitwise equal (CPU) to an uninterrupted run.
Under DDP the global RNG is reseeded per batch and rank (see ``train_one_epoch``), so that holds for every
rank.

``train`` reads in three parts, after icefall's recipes: ``prepare_run`` builds everything once into a
``Run``; then, per epoch, ``train_one_epoch`` (the batch loop, whose running sums are an ``EpochProgress``)
and ``end_epoch`` (validation, the metrics row, the epoch-end checkpoint).

Every setting is checked before the run folder is made, so a refused config leaves no folder behind. One
process at a time trains in a run folder (``runlock.py``). Ctrl-C stops at the next step boundary with a
checkpoint of it and a message saying how to resume (``interrupt.py``); a run whose clips cannot be used
stops with the count and the list (``skips.py``).
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...);
datasets and models come from the registries.
"""
from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import CheckpointError
from ..config import (Config, ConfigError, apply_override, config_from_dict, config_to_dict, save_config,
                      validate_config)
from ..data import build_dataset, label_difference, make_loader, plan_batches
from ..inference import predict, resolve_device
from ..metrics import edit_distance
from ..nn.ctc import ctc_loss
from ..randomness import rng_state, seed_everything, set_rng_state, step_seed
from ..registry import create_model
from ..paths import check_output
from ..runlog import Progress, TableLog, TensorBoardLog, record_skipped, truncate_skipped
from .checkpoints import BATCH_PLAN_KEYS, Checkpointer, load_resume_state
from .finetune import freeze, frozen_modules, initialize_from
from .distributed import DistContext, all_reduce_sum, broadcast_object, gather_lists, init_distributed
from .interrupt import StopRequest, TrainingInterrupted, interrupted_before_start, interrupted_message
from .runlock import RunFolderBusy, RunLock
from .skips import check_early, check_skipped_share, check_trained_on_something
from .stepping import Stepper, check_precision

log = logging.getLogger(__name__)


def make_optimizer(model: torch.nn.Module, tc) -> torch.optim.Optimizer:
    """AdamW (decoupled weight decay) or SGD with momentum, from ``trainer.optimizer``."""
    params = [p for p in model.parameters() if p.requires_grad]  # frozen ones (trainer.freeze) never move
    if tc.optimizer == "sgd":
        return torch.optim.SGD(params, lr=tc.lr, momentum=tc.momentum, weight_decay=tc.weight_decay)
    return torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)


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


def claim_new_run_dir(out_dir: Path, name: str, lock: RunLock) -> Path:
    """out_dir/name, or name-2, name-3, ... when a run is already there or another process is starting one
    there (never mix two runs), created and locked by ``lock``."""
    n = 1
    while True:
        run_dir = out_dir / (name if n == 1 else f"{name}-{n}")
        if not (run_dir / "config.yaml").exists():
            run_dir.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire(run_dir)
            except RunFolderBusy:
                pass  # a run starting there right now
            else:
                if not (run_dir / "config.yaml").exists():  # not one that ended between the look and the lock
                    return run_dir
                lock.release()
        n += 1


def encoder_name(encoder) -> str:
    """The cell for an RNN encoder (gru, lstm), else the encoder type (transformer, tcn): for run names and logs."""
    return encoder.cell if encoder.type == "rnn" else encoder.type


@dataclass
class EpochProgress:
    """The running sums of the epoch under way. A mid-epoch checkpoint stores them as a plain dict (checkpoints
    load with ``weights_only=True``, which refuses classes), in the keys checkpoints have always had."""
    loss_sum: float = 0.0   # sum over applied steps of mean loss x samples
    samples: int = 0        # samples the applied steps trained on
    frames: int = 0         # input frames of this rank's batches
    skipped: list = field(default_factory=list)  # [id, reason] of every skipped sample, all ranks
    bad_steps: int = 0      # steps skipped for a non-finite loss or gradient
    seconds: float = 0.0    # training time of the epoch, carried over a resume

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, progress: dict) -> EpochProgress:
        """From a mid-epoch checkpoint's ``progress`` (the same keys before this class existed)."""
        return cls(**{**progress, "skipped": [list(s) for s in progress["skipped"]]})

    def add_step(self, report, seconds: float) -> None:
        """Counts an applied optimizer step; ``seconds`` is the epoch's training time up to it."""
        self.loss_sum += report.loss * report.samples
        self.samples += report.samples
        self.seconds = seconds


@dataclass
class Run:
    """Everything the epoch loop needs, built by ``prepare_run``. ``step``, ``best_ter`` and ``bad_in_a_row``
    change as it trains; the ``start_*`` fields say where the first epoch starts (past 0 after a mid-epoch resume)."""
    cfg: Config
    context: DistContext
    device: torch.device
    train_set: Any
    val_set: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    stepper: Stepper
    run_dir: Path
    describe: dict                  # arch, labels and input_spec: what rebuilds the model from a checkpoint
    metrics_log: TableLog           # a row per epoch
    steps_log: TableLog             # a row every trainer.log_every_steps optimizer steps
    tensorboard: TensorBoardLog | None
    checkpointer: Checkpointer
    stop: StopRequest = field(default_factory=lambda: StopRequest(enabled=False))  # Ctrl-C asked the run to stop
    probed: bool = False            # the early check of skips.py has drawn its random clips
    used_clips: bool = False        # some step of this run has trained on a clip (resumed runs: yes)
    step: int = 0                   # optimizer steps applied
    best_ter: float = math.inf      # the best validation TER so far (an epoch that beats it writes best.pt)
    bad_in_a_row: int = 0           # non-finite steps in a row (trainer.max_bad_steps stops the run)
    start_epoch: int = 0            # the first epoch to train (0-based)
    start_position: int = 0         # batches of start_epoch trained before a mid-epoch resume
    start_progress: EpochProgress = field(default_factory=EpochProgress)  # ... and their running sums

    def snapshot(self, epoch: int, epoch_done: bool, position: int, progress: dict, row: dict | None = None) -> dict:
        """A checkpoint: all the run depends on, as plain containers and tensors."""
        return {**self.describe, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "stepper": self.stepper.state_dict(), "epoch": epoch,
                "epoch_done": epoch_done, "position": position, "progress": progress, "step": self.step,
                "best_ter": self.best_ter, "bad_in_a_row": self.bad_in_a_row, "max_epochs": self.cfg.trainer.max_epochs,
                "metrics": row or {}, "config": config_to_dict(self.cfg), "rng": rng_state()}


def train(cfg: Config | None, resume: str | Path | None = None, overrides: list[str] = ()) -> Path:
    """Train from ``cfg`` (or continue the run of ``resume``: a checkpoint or run folder); returns the run
    folder. Under torchrun every rank calls this; rank 0 alone writes files. torch's CPU thread count
    (``trainer.threads``) and the SIGINT handler are set for the run only and restored afterwards.

    Raises TrainingInterrupted (a KeyboardInterrupt) on Ctrl-C, saying where it stopped and how to resume;
    RunFolderBusy when another process trains in the run folder; TooManySkipped when too few clips can be used.
    """
    threads, lock, run, epoch = torch.get_num_threads(), RunLock(), None, None
    try:
        run = prepare_run(cfg, resume, overrides, lock)
        position, progress = run.start_position, run.start_progress
        with StopRequest(enabled=not run.context.enabled) as run.stop:
            for epoch in range(run.start_epoch, run.cfg.trainer.max_epochs):
                progress = train_one_epoch(run, epoch, position, progress)
                check_trained_on_something(run, epoch, progress)
                end_epoch(run, epoch, progress)
                if run.stop.requested:
                    raise TrainingInterrupted(interrupted_message(run.step, epoch + 1, run.checkpointer.last_path,
                                                                  run.run_dir))
                position, progress = 0, EpochProgress()
        if run.tensorboard:
            run.tensorboard.close()
        return run.run_dir
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt:  # a second Ctrl-C, or one before the run could take the first calmly
        if run is None:
            raise TrainingInterrupted(interrupted_before_start(resume)) from None
        raise TrainingInterrupted(interrupted_message(run.step, None if epoch is None else epoch + 1,
                                                      run.checkpointer.last_path, run.run_dir)) from None
    finally:
        lock.release()
        torch.set_num_threads(threads)


# ---- run preparation. Its order is part of the exact resume: every RNG is seeded before the first draw
# (datasets, model weights), and a resumed run's RNG states are set after the last draw of construction.

def prepare_run(cfg: Config | None, resume: str | Path | None, overrides: list[str], lock: RunLock) -> Run:
    """Checks the config, seeds, builds data, model and optimizer, then the run folder (locked by ``lock``),
    loads the state of a resumed run and opens its logs. Nothing is written before every check has passed."""
    state = resume_dir = resumed_from = None
    if resume is not None:
        state, resume_dir, resumed_from = load_resume_state(resume)
        cfg = resumed_config(state, resumed_from, overrides)
    tc = cfg.trainer
    context, device = start_process(cfg)
    if context.is_main:  # before minutes of data loading: another process in the folder, a folder we cannot write
        if resume_dir is not None:
            lock.acquire(resume_dir)
        else:
            check_output(tc.out_dir, "trainer.out_dir", folder=True)
    train_set, val_set, fitted = build_datasets(cfg.data, state, resumed_from)
    model = build_model(cfg, train_set, device)
    start_from(cfg.trainer, model, train_set.labels, fresh=state is None)
    optimizer, scheduler, stepper = build_stepper(cfg, model, train_set, device, context)
    run_dir = open_run_dir(cfg, model, context, resume_dir, lock)
    start = {} if state is None else restore_training_state(state, resumed_from, model, optimizer, scheduler,
                                                            stepper, tc.max_epochs)
    log.info("model %s (%s, %.2fM parameters) on %s%s; %d train / %d val clips; run folder %s", cfg.model.name,
             encoder_name(model.encoder.config), sum(p.numel() for p in model.parameters()) / 1e6, device,
             f" x {context.world} ranks" if context.enabled else "", len(train_set), len(val_set), run_dir)
    run = Run(cfg, context, device, train_set, val_set, model, optimizer, scheduler, stepper, run_dir,
              describe={"arch": model.arch, **fitted}, metrics_log=TableLog(run_dir, "metrics", "epoch"),
              steps_log=TableLog(run_dir, "steps", "step"),
              tensorboard=TensorBoardLog(run_dir) if tc.tensorboard and context.is_main else None,
              checkpointer=Checkpointer(run_dir, tc.keep_checkpoints, tc.checkpoint_every_steps,
                                        tc.checkpoint_every_minutes), used_clips=state is not None, **start)
    run.checkpointer.last_path = resumed_from
    if context.is_main and state is not None:
        cut_logs_back(run, state)
    return run


def resumed_config(state: dict, resume: Path, overrides: list[str]) -> Config:
    """The config of the run being resumed (from the checkpoint ``resume``) with ``overrides`` applied (e.g.
    trainer.max_epochs=30 to extend a finished run); refuses those that would make it a different run."""
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
    try:
        cfg = config_from_dict(state["config"])
    except ConfigError as e:
        raise CheckpointError(f"{resume}: its 'config' cannot be read ({e}); resume from another checkpoint of "
                              f"the run") from None
    for override in overrides:
        apply_override(cfg, override)
    return cfg


def start_process(cfg: Config) -> tuple[DistContext, torch.device]:
    """Checks the config, seeds every RNG, sets torch's threads and joins torchrun's process group if any."""
    tc = cfg.trainer
    validate_config(cfg)
    seed_everything(tc.seed)
    if tc.threads:
        torch.set_num_threads(tc.threads)
    context, device = init_distributed(resolve_device(tc.device, "trainer.device"))
    check_precision(tc.precision, device)
    if not context.is_main:
        log.setLevel(logging.WARNING)
    return context, device


def build_datasets(dc, state: dict | None, resume: str | Path | None) -> tuple[Any, Any, dict]:
    """The train and val splits and what the train split fitted (labels, input spec), which the val split
    reuses and a resumed run must keep: its weights are for those label ids."""
    train_set = build_dataset(dc.name, dc.train_split, dc.args)
    fitted = {"labels": list(train_set.labels), "input_spec": dict(train_set.input_spec)}
    if state is not None and fitted["labels"] != list(state["labels"]):
        raise ValueError(f"{resume} was trained with other labels than the data now gives ("
                         f"{label_difference(list(state['labels']), fitted['labels'])}): a resumed run must keep its "
                         f"vocabulary (label ids); point data.args back at the data it was trained on")
    val_set = build_dataset(dc.name, dc.val_split, dc.args, fitted=fitted)
    return train_set, val_set, fitted


def build_model(cfg: Config, train_set, device: torch.device) -> torch.nn.Module:
    """The registry's model for the data's labels and step shape, on ``device``; writes the resolved encoder
    settings into ``cfg`` (the saved config)."""
    from_data = {"num_classes": len(train_set.labels), "in_shape": tuple(train_set.input_spec["step_shape"])}
    args = dict(cfg.model.args)
    if "encoder" in args:
        raise ConfigError("model.args.encoder: the encoder is set with model.encoder.<key>=... (e.g. "
                          "model.encoder.hidden_size=256), not through model.args")
    for key, value in from_data.items():
        if key not in args:
            continue
        given = tuple(args.pop(key)) if isinstance(args[key], (list, tuple)) else args.pop(key)
        if given != value:  # the same value is harmless; another one would build a model the data cannot feed
            what = "the number of labels" if key == "num_classes" else "the step shape of its input"
            raise ConfigError(f"model.args.{key}={list(given) if isinstance(given, tuple) else given} but the "
                              f"dataset sets {key} from {what}: {list(value) if isinstance(value, tuple) else value}; "
                              f"drop model.args.{key} (change the data settings, data.args, to change it)")
    model = create_model(cfg.model.name, **from_data, encoder=cfg.model.encoder, **args)
    cfg.model.encoder = dict(vars(model.encoder.config))
    model.to(device)
    if cfg.trainer.compile:
        model.frontend.compile()  # in place: state_dict keys stay as they are
    return model


def start_from(tc, model, labels: list[str], fresh: bool) -> None:
    """``trainer.init_from``: a new run starts from another run's or a bundle's weights (a resumed run has its
    own); ``trainer.freeze``: those parameters stay fixed, resumed or not (requires_grad is not saved)."""
    if tc.init_from and fresh:
        report = initialize_from(model, tc.init_from, list(labels))
        log.info("initialised from %s: %d tensors; labels kept %d, new %d%s, dropped %d%s", report["source"],
                 report["loaded"], len(report["kept"]), len(report["new"]),
                 f" ({', '.join(report['new'][:10])})" if report["new"] else "", len(report["dropped"]),
                 f" ({', '.join(report['dropped'][:10])})" if report["dropped"] else "")
    if tc.freeze:
        frozen = freeze(model, list(tc.freeze))
        log.info("frozen: %d parameter tensors under %s", len(frozen), ", ".join(tc.freeze))


def open_run_dir(cfg: Config, model, context: DistContext, resume_dir: Path | None, lock: RunLock) -> Path:
    """The resumed run's folder (locked by prepare_run), or a new one named, made and locked by rank 0 for all
    ranks; the config goes into it."""
    tc = cfg.trainer
    name = tc.run_name or f"{cfg.data.name}-{cfg.model.name}-{encoder_name(model.encoder.config)}"
    try:
        run_dir = resume_dir if resume_dir is not None else broadcast_object(
            claim_new_run_dir(Path(tc.out_dir), name, lock) if context.is_main else None, context)
        if context.is_main:
            save_config(cfg, run_dir / "config.yaml")
    except OSError as e:  # check_output passed, then the disk filled or the folder changed under us
        raise ValueError(f"cannot write the run folder under trainer.out_dir={tc.out_dir} ({e}): choose a "
                         f"writable trainer.out_dir") from None
    return run_dir


def build_stepper(cfg: Config, model, train_set, device: torch.device, context: DistContext) -> tuple:
    """(optimizer, warm-up/cosine scheduler over all the run's optimizer steps, stepper); the parameters are
    made the same on every rank (a resume then loads the same file everywhere)."""
    tc, dc = cfg.trainer, cfg.data
    optimizer = make_optimizer(model, tc)
    batches = len(plan_batches(train_set, dc.batch_size, tc.seed, 0, dc.max_frames, dc.sortagrad))
    steps_per_epoch = math.ceil(batches / tc.grad_accum)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, cosine_with_warmup(tc.warmup_steps, tc.max_epochs * steps_per_epoch))
    stepper = Stepper(model, optimizer, scheduler, device, tc.grad_clip, tc.precision, context)
    stepper.broadcast_parameters()
    return optimizer, scheduler, stepper


def restore_training_state(state: dict, path: Path, model, optimizer, scheduler, stepper, max_epochs: int) -> dict:
    """Loads the checkpoint ``path`` (``state``) into the run's parts and sets every RNG to its state; returns the
    counters and start point for ``Run``. Checkpoints of older versions lack stepper and bad_in_a_row, and one
    written at an epoch's end has no position."""
    for key, part in (("model", model), ("optimizer", optimizer), ("scheduler", scheduler), ("stepper", stepper)):
        try:
            part.load_state_dict(state.get(key, {}) if key == "stepper" else state[key])
        except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
            raise CheckpointError(f"{path}: its {key!r} state does not fit this run ({type(e).__name__}: "
                                  f"{str(e)[:300]}); resume from another checkpoint of the run") from None
    epoch_done = state.get("epoch_done", True)
    start = {"step": state["step"], "best_ter": state["best_ter"], "bad_in_a_row": state.get("bad_in_a_row", 0),
             "start_epoch": state["epoch"] + 1 if epoch_done else state["epoch"]}
    if not epoch_done:
        start.update(start_position=state["position"], start_progress=EpochProgress.from_dict(state["progress"]))
    if state["max_epochs"] != max_epochs:
        log.warning("max_epochs changed from %d to %d: the cosine schedule stretches from here on",
                    state["max_epochs"], max_epochs)
    set_rng_state(state["rng"])
    log.info("resumed from step %d: epoch %d, batch %d", start["step"], start["start_epoch"] + 1,
             start.get("start_position", 0))
    return start


def cut_logs_back(run: Run, state: dict) -> None:
    """Cuts metrics, steps and skipped samples back to what the checkpoint had seen: the resumed run writes
    the rest again."""
    run.metrics_log.truncate(state["epoch"])
    run.steps_log.truncate(run.step)
    truncate_skipped(run.run_dir, run.start_epoch + 1)
    if state.get("epoch_done", True):
        run.metrics_log.write(state["metrics"])
    elif run.start_progress.skipped:
        record_skipped(run.run_dir, run.start_epoch + 1, [tuple(s) for s in run.start_progress.skipped], first=False)


# ---- one epoch

def train_one_epoch(run: Run, epoch: int, position: int, progress: EpochProgress) -> EpochProgress:
    """Trains the epoch's batches from ``position`` on (past 0 after a mid-epoch resume), adding to ``progress``:
    an optimizer step every ``grad_accum`` batches and at the epoch's end, step logs and step checkpoints.
    Returns ``progress`` with ``seconds`` the whole pass."""
    tc, dc, context = run.cfg.trainer, run.cfg.data, run.context
    run.model.train()
    for module in frozen_modules(run.model, run.cfg.trainer.freeze):
        module.eval()  # a frozen part keeps its BatchNorm statistics too, not only its weights
    loader = make_loader(run.train_set, dc.batch_size, dc.num_workers, run.device, tc.seed, epoch, dc.max_frames,
                         dc.sortagrad, start=position, shard=(context.rank, context.world))
    started, done_before, interval = time.time() - progress.seconds, progress.samples, []
    interval_start = time.time()
    last_position = position + len(loader)
    bar = Progress(loader, f"epoch {epoch + 1}/{tc.max_epochs}", position, last_position,
                   enabled=tc.progress and context.is_main, every_s=tc.progress_every_s)
    for batch in bar:
        position += 1
        if context.enabled:
            # Dropout draws from the global RNG and ranks see different batches, so their RNG states
            # drift apart and a checkpoint (written by rank 0) could not restore the others'. Seeding
            # each batch from (seed, epoch, position, rank) makes every rank's state a function of the
            # position alone: an exact resume on every rank, and different masks on different ranks.
            torch.manual_seed(step_seed(tc.seed, epoch, position, context.rank))
        accumulate(run, epoch, batch, progress)
        check_skipped_share(run, epoch, progress)
        if not run.used_clips:
            check_early(run, progress)
        if position % tc.grad_accum and position < last_position:
            continue  # more micro-batches to accumulate before this step
        report = run.stepper.step()
        run.used_clips = run.used_clips or report.samples > 0
        saved = False
        if report.non_finite:
            count_non_finite_step(run, batch, progress)
        elif report.applied:
            run.bad_in_a_row, run.step = 0, run.step + 1
            progress.add_step(report, time.time() - started)
            interval.append(report)
            rate = (progress.samples - done_before) / max(time.time() - started, 1e-9)
            bar.update(loss=f"{report.loss:.3f}", clips_s=f"{rate:.1f}")
            if context.is_main and tc.log_every_steps and run.step % tc.log_every_steps == 0:
                write_step_row(run, step_row(run.step, epoch, interval, run.optimizer, len(progress.skipped),
                                             time.time() - interval_start))
                interval, interval_start = [], time.time()
            if run.checkpointer.due(run.step) and context.is_main:
                run.checkpointer.save(run.snapshot(epoch, False, position, progress.to_dict()))
                saved = True
        if run.stop.requested:
            stop_at_step_boundary(run, epoch, position, progress, time.time() - started, saved)
    progress.seconds = time.time() - started
    return progress


def stop_at_step_boundary(run: Run, epoch: int, position: int, progress: EpochProgress, seconds: float,
                          saved: bool) -> None:
    """Ctrl-C was pressed during the step just finished: checkpoint it (unless that was just done) and stop.
    The state is whole here (weights, optimizer, position, running sums and RNGs all after the same batch),
    so a resume from it continues exactly as an unbroken run would."""
    progress.seconds = seconds
    if run.context.is_main and not saved:
        run.checkpointer.save(run.snapshot(epoch, False, position, progress.to_dict()))
    raise TrainingInterrupted(interrupted_message(run.step, epoch + 1, run.checkpointer.last_path, run.run_dir))


def accumulate(run: Run, epoch: int, batch: dict, progress: EpochProgress) -> None:
    """Adds the batch's gradients (if any of it could be read) and records its skipped samples, every rank's:
    rank 0 logs and checkpoints them all."""
    skipped = batch["skipped"]
    if batch["inputs"] is not None:
        result = run.stepper.accumulate(batch)
        skipped = skipped + result.skipped
        progress.frames += int(batch["lengths"].sum())
    skipped = gather_lists(skipped, run.context)
    if skipped and run.context.is_main:
        record_skipped(run.run_dir, epoch + 1, skipped, first=not progress.skipped)
    progress.skipped += [list(s) for s in skipped]


class TrainingDiverged(ValueError):
    """Too many non-finite steps in a row (``trainer.max_bad_steps``): the run stops with its weights intact."""


def count_non_finite_step(run: Run, batch: dict, progress: EpochProgress) -> None:
    """A step the stepper skipped for a non-finite loss or gradient; too many in a row stop the run."""
    progress.bad_steps += 1
    run.bad_in_a_row += 1
    log.warning("non-finite loss/gradient at step %d (ids %s): step skipped", run.step, batch["ids"][:8])
    if run.bad_in_a_row >= run.cfg.trainer.max_bad_steps:
        raise TrainingDiverged(f"{run.bad_in_a_row} non-finite steps in a row: stopping before the weights are "
                               f"corrupted; lower trainer.lr or check the data (last ids {batch['ids'][:8]}); the "
                               f"checkpoints written so far in {run.run_dir} are intact")


def write_step_row(run: Run, row: dict) -> None:
    run.steps_log.write(row)
    if run.tensorboard:
        run.tensorboard.write("train", row, run.step)


# ---- end of epoch

def end_epoch(run: Run, epoch: int, progress: EpochProgress) -> None:
    """Validates, logs the epoch's row and writes the epoch-end checkpoint (and best.pt when val TER improved)."""
    tc, dc, context = run.cfg.trainer, run.cfg.data, run.context
    val = validate(run.model, make_loader(run.val_set, dc.eval_batch_size, dc.num_workers, run.device,
                                          max_frames=dc.max_frames, shard=(context.rank, context.world),
                                          split_batches=False), run.device, context)
    row = epoch_row(run, epoch, progress, val)
    log.info("epoch %d/%d  train_loss %.4f  val_loss %.4f  val_TER %.2f%%  %.1f clips/s  %.0fs%s",
             epoch + 1, tc.max_epochs, row["train_loss"], row["val_loss"], row["val_ter"], row["clips_per_s"],
             progress.seconds, f"  skipped {row['skipped_samples']} samples" if row["skipped_samples"] else "")
    is_best = val["ter"] < run.best_ter
    run.best_ter = min(run.best_ter, val["ter"])
    if context.is_main:
        # Checkpoint first, then the metrics row; a resume rewrites the row from the checkpoint if needed.
        run.checkpointer.save(run.snapshot(epoch, True, 0, {}, row), best=is_best)
        run.metrics_log.write(row)
        if run.tensorboard:
            run.tensorboard.write("epoch", row, run.step)


def epoch_row(run: Run, epoch: int, progress: EpochProgress, val: dict) -> dict:
    """One line of metrics.jsonl."""
    seconds = progress.seconds
    return {"epoch": epoch + 1, "step": run.step, "train_loss": round(progress.loss_sum / max(progress.samples, 1), 5),
            "val_loss": round(val["loss"], 5), "val_ter": round(val["ter"], 3),
            "lr": run.optimizer.param_groups[0]["lr"], "clips_per_s": round(progress.samples / seconds, 2),
            "frames_per_s": round(progress.frames * run.context.world / seconds, 1),
            "epoch_s": round(seconds, 1), "skipped_samples": len(progress.skipped),
            "val_skipped": val["skipped"], "skipped_steps": progress.bad_steps}


def step_row(step: int, epoch: int, reports: list, optimizer, skipped: int, seconds: float) -> dict:
    """One line of steps.jsonl: means over the optimizer steps since the previous line, which took ``seconds``."""
    samples = sum(r.samples for r in reports)
    return {"step": step, "epoch": epoch + 1,
            "loss": round(sum(r.loss * r.samples for r in reports) / max(samples, 1), 6),
            "grad_norm": round(sum(r.grad_norm for r in reports) / max(len(reports), 1), 4),
            "lr": optimizer.param_groups[0]["lr"], "samples": samples,
            "clips_per_s": round(samples / max(seconds, 1e-9), 2), "skipped_samples": skipped,
            "time": round(time.time(), 3)}
