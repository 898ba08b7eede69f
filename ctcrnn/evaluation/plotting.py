"""``ctcrnn plot RUN``: a run's learning curves (training loss per step and epoch, validation loss and
error, learning rate) drawn from its ``steps.jsonl`` and ``metrics.jsonl`` into one PNG.

Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

from pathlib import Path

from ..paths import check_output
from ..runlog import TableLog


def plot_run(run_dir: str | Path, out: str | Path | None = None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run folder {run_dir} " + ("is a file: give the run folder that holds metrics.jsonl"
                                                     if run_dir.exists() else "does not exist: check the path"))
    epochs, steps = TableLog(run_dir, "metrics", "epoch").rows(), TableLog(run_dir, "steps", "step").rows()
    if not epochs and not steps:
        raise ValueError(f"{run_dir} has no metrics.jsonl or steps.jsonl: is it a ctcrnn run folder?")
    out = check_output(out, "--out") if out else check_output(run_dir / "curves.png", "the default --out")
    fig, (loss_ax, error_ax, lr_ax) = plt.subplots(1, 3, figsize=(14, 3.8))
    if steps:
        loss_ax.plot([r["step"] for r in steps], [r["loss"] for r in steps], lw=0.8, alpha=0.6,
                     label="train (per logged step)")
    if epochs:
        at = [r["step"] for r in epochs]
        loss_ax.plot(at, [r["train_loss"] for r in epochs], "o-", label="train (epoch mean)")
        loss_ax.plot(at, [r["val_loss"] for r in epochs], "s-", label="validation")
        error_ax.plot([r["epoch"] for r in epochs], [r["val_ter"] for r in epochs], "s-", color="C2")
    history = steps or epochs
    lr_ax.plot([r["step"] for r in history], [r["lr"] for r in history], color="C3")
    loss_ax.set(xlabel="optimizer step", ylabel="CTC loss per sample", yscale="log", title="loss")
    loss_ax.legend(fontsize=8)
    error_ax.set(xlabel="epoch", ylabel="%", title="validation token error rate (greedy)")
    lr_ax.set(xlabel="optimizer step", title="learning rate")
    for ax in (loss_ax, error_ax, lr_ax):
        ax.grid(alpha=0.3)
    fig.suptitle(run_dir.name)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
