"""Training at scale, checked on the CPU: torchrun DDP with 2 Gloo processes equals one process with the
same global batch; gradient accumulation equals one big batch; bf16 autocast trains; fp16 is refused
without CUDA; the compiled frontend trains; the step log, TensorBoard events and ``ctcrnn plot``."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from tests.fixtures import tiny_config_overrides
from ctcrnn.checkpoint import load_checkpoint
from ctcrnn.cli import main
from ctcrnn.config import load_config
from ctcrnn.data import build_dataset, collate
from ctcrnn.registry import create_model
from ctcrnn.training.stepping import Stepper
from ctcrnn.training import trainer as trainer_module
from ctcrnn.training.trainer import cosine_with_warmup, train

REPO = Path(__file__).resolve().parents[2]  # the repository: tests/training/../..

# CRDNN normalises with LayerNorm (per frame), not BatchNorm, so its forward does not depend on how a batch
# is split across ranks; dropout is off, so no random mask differs between ranks either.
DDP_RUN = {
    "data.name": "synthetic_dtmf", "data.args.train_size": 40, "data.args.val_size": 8, "data.args.test_size": 8,
    "data.args.dtmf.max_groups": 1, "data.args.dtmf.max_keys_per_group": 3, "data.args.features.n_mels": 20,
    "data.batch_size": 8, "data.eval_batch_size": 8, "data.max_frames": 1600,
    "model.name": "crdnn", "model.args.channels": "[4, 8]", "model.args.dnn_sizes": "[8]", "model.args.dropout": 0,
    "model.encoder.hidden_size": 8, "model.encoder.num_layers": 1, "trainer.max_epochs": 2,
    "trainer.warmup_steps": 2, "trainer.progress": "false", "trainer.threads": 1, "trainer.log_every_steps": 1,
    "trainer.device": "cpu",
}


def step_losses(run_dir: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run_dir / "steps.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("batching", [
    {},  # length buckets of at most 1600 frames
    # 41 clips in batches of 8: each epoch ends with a one-clip batch, so rank 1's share is empty and it must
    # still take part in the step (with zero gradients) rather than leave rank 0 waiting.
    {"data.max_frames": 0, "data.args.train_size": 41},
], ids=["buckets", "empty_share"])
def test_ddp_two_gloo_processes_equal_one_process_with_the_same_global_batch(tmp_path, batching):
    """Two ranks sum their gradients in another order than one process does, so the weights agree to float32
    rounding, not bitwise. SGD keeps that rounding at its own size step after step (AdamW divides each
    gradient by its running RMS, which makes noise in a near-zero gradient a weight change of order lr)."""
    run = {**DDP_RUN, **batching, "trainer.optimizer": "sgd", "trainer.lr": 0.05, "trainer.out_dir": str(tmp_path)}
    args = [f"{k}={v}" for k, v in run.items()]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(REPO / "train.py"), "--no-eval", *args, "trainer.run_name=ddp"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = train(load_config(None, [*args, "trainer.run_name=single"]))
    ddp_losses, single_losses = step_losses(tmp_path / "ddp"), step_losses(single)
    assert len(ddp_losses) == len(single_losses) > 4  # length buckets: the same global batches on both
    assert ddp_losses == pytest.approx(single_losses, rel=1e-4)
    a, b = load_checkpoint(tmp_path / "ddp" / "last.pt")["model"], load_checkpoint(single / "last.pt")["model"]
    for k in a:  # float32 rounding over a dozen steps, far below what one step moves a weight
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5, msg=k)
    # Rank 0 alone wrote the run folder: one metrics row per epoch, validation reduced over both ranks.
    ddp_rows = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    single_rows = [json.loads(line) for line in (single / "metrics.jsonl").read_text().splitlines()]
    assert [r["val_loss"] for r in ddp_rows] == pytest.approx([r["val_loss"] for r in single_rows], rel=1e-4)
    # Greedy hypotheses may flip where two outputs tie to rounding: allow one edit, not an exact match.
    cfg = load_config(None, args)
    ref_tokens = sum(len(item["target"]) for item in build_dataset(cfg.data.name, "val", cfg.data.args))
    for r, q in zip(ddp_rows, single_rows):
        assert abs(r["val_ter"] - q["val_ter"]) <= 100 / ref_tokens + 1e-3


def torchrun(args: list[str]) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(REPO / "train.py"), "--no-eval", *args], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]


def test_ddp_resume_with_dropout_is_bitwise_exact_on_every_rank(tmp_path):
    """With dropout, each rank's RNG state is its own; resuming 2 ranks from a mid-run step checkpoint
    (written by rank 0) must still end with the weights of the uninterrupted run."""
    args = [f"{k}={v}" for k, v in {**DDP_RUN, "model.args.dropout": 0.3, "trainer.out_dir": str(tmp_path),
                                    "trainer.checkpoint_every_steps": 1, "trainer.keep_checkpoints": 100}.items()]
    torchrun([*args, "trainer.run_name=whole"])
    steps = sorted((tmp_path / "whole" / "checkpoints").glob("step-*.pt"), key=lambda p: int(p.stem.split("-")[1]))
    shutil.copytree(tmp_path / "whole", tmp_path / "resumed")
    middle = tmp_path / "resumed" / "checkpoints" / steps[len(steps) // 2 + 1].name  # mid-epoch 2
    assert not load_checkpoint(middle)["epoch_done"]
    torchrun(["--resume", str(middle)])
    whole = load_checkpoint(tmp_path / "whole" / "last.pt")["model"]
    resumed = load_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert all(torch.equal(whole[k], resumed[k]) for k in whole), "resumed DDP weights differ"


def test_ddp_records_the_clips_every_rank_skipped(tmp_path):
    """Unreadable clips are a counted, logged skip whichever rank meets them: rank 0 writes them all."""
    rng = np.random.default_rng(0)
    entries = []
    for i in range(16):
        if i % 4 == 3:
            entries.append({"path": f"missing{i}.wav", "text": "12", "id": f"missing{i}"})
        else:
            sf.write(tmp_path / f"a{i}.wav", (0.1 * rng.standard_normal(2400)).astype("float32"), 8000)
            entries.append({"path": f"a{i}.wav", "text": "12", "id": f"a{i}"})
    manifest = tmp_path / "train.jsonl"
    manifest.write_text("".join(json.dumps(e) + "\n" for e in entries))
    model = {k: v for k, v in DDP_RUN.items() if k.startswith(("model.", "trainer."))}
    args = {**model, "data.name": "audio_manifest", "data.args.train": manifest, "data.args.val": manifest,
            "data.args.test": manifest, "data.args.features.sample_rate": 8000, "data.args.features.n_mels": 20,
            "data.batch_size": 4, "data.eval_batch_size": 4, "trainer.max_epochs": 1, "trainer.out_dir": tmp_path,
            "trainer.run_name": "ddp"}
    torchrun([f"{k}={v}" for k, v in args.items()])
    rows = (tmp_path / "ddp" / "skipped.tsv").read_text().splitlines()[1:]
    assert sorted(r.split("\t")[1] for r in rows) == sorted(f"missing{i}" for i in (3, 7, 11, 15))


def test_gradient_accumulation_equals_one_big_batch():
    """The gradient a step applies is the same (float64: equal up to summation order, ~1e-16 relative)
    whether the 12 clips come as one batch or as unequal micro-batches. Compared before the optimizer
    step: AdamW's m / sqrt(v) would turn rounding noise in near-zero gradients into weight changes of order lr."""
    dataset = build_dataset("synthetic_actions", "train", {"train_size": 12, "frame_size": 16, "max_frames": 40})
    small = create_model("frame_cnn_rnn", num_classes=len(dataset.labels), in_shape=(3, 16, 16), widths=(4, 8),
                         feature_dim=16, encoder={"hidden_size": 8}).double()
    big = create_model(**{"name": small.arch["name"], **small.arch["kwargs"]}).double()
    big.load_state_dict(small.state_dict())
    steppers, applied = [], []
    for model in (small, big):
        model.eval()  # BatchNorm's running statistics: the same whatever the batch split (dropout is 0)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        grads = []
        optimizer.register_step_pre_hook(lambda opt, *_, grads=grads: grads.extend(
            torch.zeros_like(p) if p.grad is None else p.grad.clone()  # None: a part no loss reached
            for group in opt.param_groups for p in group["params"]))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(1, 10))
        steppers.append(Stepper(model, optimizer, scheduler, torch.device("cpu"), grad_clip=1.0))
        applied.append(grads)
    items = [dataset[i] for i in range(12)]
    as_double = lambda part: {**collate(part), "inputs": collate(part)["inputs"].double()}  # noqa: E731
    for part in (items[:3], items[3:5], items[5:]):  # unequal micro-batches, as length buckets give
        steppers[0].accumulate(as_double(part))
    report = steppers[0].step()
    steppers[1].accumulate(as_double(items))
    whole = steppers[1].step()
    assert report.samples == whole.samples == 12 and report.loss == pytest.approx(whole.loss, rel=1e-10)
    assert report.grad_norm == pytest.approx(whole.grad_norm, rel=1e-10)
    assert len(applied[0]) == len(applied[1]) == len(list(small.parameters()))
    scale = max(float(g.abs().max()) for g in applied[1])
    for g, h in zip(*applied):
        torch.testing.assert_close(g, h, rtol=1e-9, atol=1e-12 * scale)


def test_grad_accum_in_the_trainer_counts_optimizer_steps(tmp_path):
    run_dir = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.grad_accum": 2,
                                                                         "data.args.train_size": 40})))
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [3, 6]  # 5 batches per epoch -> 2 steps of 2 batches + 1 of 1


def test_bf16_autocast_trains_on_the_cpu_and_fp16_is_refused(tmp_path, monkeypatch):
    seen = set()  # dtypes the first convolution's outputs had in the training steps

    class Spy(trainer_module.Stepper):
        def accumulate(self, batch):
            first = next(m for m in self.model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
            handle = first.register_forward_hook(lambda module, inputs, output: seen.add(output.dtype))
            try:
                return super().accumulate(batch)
            finally:
                handle.remove()

    monkeypatch.setattr(trainer_module, "Stepper", Spy)
    run_dir = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.precision": "bf16"})))
    assert seen == {torch.bfloat16}  # the forward really ran under autocast
    state = load_checkpoint(run_dir / "last.pt")
    assert all(v.dtype != torch.bfloat16 and torch.isfinite(v).all() for v in state["model"].values()
               if v.is_floating_point())  # weights stay float32; only the forward ran in bf16
    assert all(r["train_loss"] > 0 for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines()))
    with pytest.raises(SystemExit, match="fp16 needs a CUDA device"):
        main(["train", "--no-eval", *tiny_config_overrides(tmp_path, **{"trainer.precision": "fp16",
                                                                        "trainer.device": "cpu"})])


@pytest.mark.slow
def test_compiled_frontend_trains_and_saves_plain_keys(tmp_path):
    run_dir = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.compile": "true",
                                                                         "trainer.max_epochs": 1})))
    state = load_checkpoint(run_dir / "last.pt")
    assert not any("_orig_mod" in k for k in state["model"])  # loads into an uncompiled model as it is
    create_model(state["arch"]["name"], **state["arch"]["kwargs"]).load_state_dict(state["model"])


def test_step_log_tensorboard_and_plot(tmp_path, capsys):
    run_dir = train(load_config(None, tiny_config_overrides(tmp_path, **{"trainer.log_every_steps": 2,
                                                                         "trainer.tensorboard": "true"})))
    rows = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 6, 8, 10, 12]
    assert {"loss", "lr", "grad_norm", "samples", "clips_per_s", "skipped_samples"} <= set(rows[0])
    assert (run_dir / "steps.csv").read_text().startswith("step,epoch,loss,")
    assert list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
    main(["plot", str(run_dir)])
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "curves.png" in capsys.readouterr().out


def test_grad_scaler_path_survives_a_non_finite_loss_and_reports_it():
    """The fp16 path (exercised with torch's CPU GradScaler, as fp16 itself needs CUDA): after a NaN loss the
    scaler is updated, so the next step works, and a skipped step counts as non-finite for the run's guard."""
    dataset = build_dataset("synthetic_actions", "train", {"train_size": 4, "frame_size": 16, "max_frames": 40})
    model = create_model("frame_cnn_rnn", num_classes=len(dataset.labels), in_shape=(3, 16, 16), widths=(4, 8),
                         feature_dim=16, encoder={"hidden_size": 8})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    stepper = Stepper(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
                      torch.device("cpu"))
    stepper.scaler = torch.amp.GradScaler("cpu")
    batch = collate([dataset[i] for i in range(4)])
    before = [p.detach().clone() for p in model.parameters()]
    poisoned = {**batch, "inputs": batch["inputs"] * float("nan")}
    stepper.accumulate(poisoned)
    bad = stepper.step()
    assert bad.non_finite and not bad.applied
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))  # untouched
    stepper.accumulate(batch)
    good = stepper.step()  # would raise "unscale_() has already been called" without the update()
    assert good.applied and not good.non_finite


def test_redirected_output_gets_plain_progress_lines_not_a_bar(tmp_path):
    """With stderr not a terminal (nohup, CI, a file), progress is a log line every progress_every_s seconds:
    no carriage-return redraws of a bar filling the log."""
    args = tiny_config_overrides(tmp_path, **{"trainer.max_epochs": 1, "trainer.progress": "true",
                                              "trainer.progress_every_s": 1e-6})
    run = subprocess.run([sys.executable, str(REPO / "train.py"), "--no-eval", *args], cwd=tmp_path,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    lines = [line for line in run.stderr.splitlines() if "epoch 1/1  batch" in line]
    assert "\r" not in run.stderr and "it/s" not in run.stderr
    assert [int(line.split("batch ")[1].split("/")[0]) for line in lines] == list(range(1, 7))  # 48 clips / 8
    assert all("loss" in line and "clips_s" in line for line in lines)
