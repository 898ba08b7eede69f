"""Evaluate a checkpoint on a dataset split: transcripts, segmentation and alignment scores, files.

Writes to the output folder: ``summary.json``, ``summary.md``, ``hypotheses.tsv`` (one line per
clip: id, reference, hypothesis, edits) and, for data with frame labels, ``segments.png``.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .alignment import forced_align_segments, frame_labels_from_segments
from .checkpoint import load_checkpoint, model_from_checkpoint
from .config import config_from_dict
from .ctc import min_ctc_frames
from .data import build_dataset
from .metrics import edit_distance, error_rate, segmentation_scores
from .trainer import make_loader, predict, resolve_device

log = logging.getLogger("ctcrnn.evaluate")


def to_input_frames(labels: list[int], num_input: int, stride: int) -> list[int]:
    """Per-output-frame labels back at the input frame rate: input t takes the output frame centred
    nearest to it, (t + stride // 2) // stride (output j is centred on input j * stride)."""
    last = len(labels) - 1
    return [labels[min(last, (t + stride // 2) // stride)] for t in range(num_input)]


def frames_from_transcript(log_probs: torch.Tensor, transcript: list[int], num_input: int,
                           stride: int = 1) -> list[int] | None:
    """Forced-align ``transcript`` to one clip's (T', V) log-probs and label every input frame;
    None when the transcript is empty or cannot fit the output frames."""
    if not transcript or min_ctc_frames(transcript) > log_probs.shape[0]:
        return None
    segments = forced_align_segments(log_probs, transcript)
    return to_input_frames(frame_labels_from_segments(segments, log_probs.shape[0]), num_input, stride)


def run_model(model, dataset, batch_size: int, device: torch.device, num_workers: int = 0) -> list[dict]:
    """Per clip: id, reference, greedy hypothesis, and frame labels from both alignment settings."""
    model.to(device)
    results = []
    for batch, log_probs, out_lengths, hyps in predict(model, make_loader(dataset, batch_size, num_workers, None,
                                                                          device), device):
        for i, sample_id in enumerate(batch["ids"]):
            row = {"id": sample_id, "ref": batch["targets"][i], "hyp": hyps[i]}
            if "frame_labels" in batch:
                clip = log_probs[i, : int(out_lengths[i])]
                num_input = int(batch["lengths"][i])
                row["truth_frames"] = batch["frame_labels"][i]
                stride = model.frontend.stride
                row["segmentation_frames"] = frames_from_transcript(clip, hyps[i], num_input, stride)
                row["alignment_frames"] = frames_from_transcript(clip, row["ref"], num_input, stride)
            results.append(row)
    return results


def score(results: list[dict], labels: list[str], background: list[str]) -> dict:
    """Transcript error rate plus, with frame labels, scores in the segmentation and alignment settings."""
    summary = {"clips": len(results), "ter": error_rate([r["ref"] for r in results], [r["hyp"] for r in results]),
               "transcript_exact": 100.0 * sum(r["ref"] == r["hyp"] for r in results) / max(1, len(results))}
    if results and "truth_frames" in results[0]:
        unknown = [b for b in background if b not in labels]
        if unknown:
            raise ValueError(f"eval.background names {unknown}, which are not labels of this model: {labels[1:]}")
        background_ids = tuple(labels.index(b) for b in background)
        for setting in ("segmentation", "alignment"):
            truth = [r["truth_frames"] for r in results]
            # A clip with no usable alignment scores every frame as wrong (label -1), not as missing.
            pred = [r[f"{setting}_frames"] or [-1] * len(r["truth_frames"]) for r in results]
            scores = segmentation_scores(truth, pred)
            if background_ids:
                scores["acc_no_bg"] = segmentation_scores(truth, pred, background=background_ids)["acc"]
            scores["unaligned_clips"] = sum(r[f"{setting}_frames"] is None for r in results)
            summary[setting] = scores
    return summary


def plot_segments(results: list[dict], labels: list[str], path: Path, count: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    rows = [r for r in results if "truth_frames" in r][:count]
    if not rows:
        return
    cmap = plt.get_cmap("tab20")
    colour = lambda label: (0.85, 0.85, 0.85, 1.0) if label < 0 else cmap(label % 20)  # noqa: E731  grey: unaligned
    fig, axes = plt.subplots(len(rows), 1, figsize=(10, 1.1 * len(rows) + 0.8), squeeze=False)
    for ax, r in zip(axes[:, 0], rows):
        predicted = r["segmentation_frames"] or [-1] * len(r["truth_frames"])
        for y, frames in ((1, r["truth_frames"]), (0, predicted)):
            ax.imshow([[colour(label) for label in frames]], aspect="auto", extent=(0, len(frames), y, y + 0.9),
                      interpolation="nearest")
        ax.set_xlim(0, len(r["truth_frames"]))
        ax.set_ylim(0, 1.9)
        ax.set_yticks([0.45, 1.45], ["predicted", "truth"])
        ax.set_title(r["id"], fontsize=8, loc="left")
    used = sorted({label for r in rows for label in r["truth_frames"] + (r["segmentation_frames"] or [])})
    fig.legend(handles=[Patch(color=colour(u), label=labels[u]) for u in used], loc="lower center",
               ncol=min(len(used), 6), fontsize=8)
    axes[-1, 0].set_xlabel("frame")
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_reports(results: list[dict], summary: dict, labels: list[str], out_dir: Path, num_plots: int) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    names = lambda seq: " ".join(labels[t] for t in seq)  # noqa: E731
    with open(out_dir / "hypotheses.tsv", "w") as f:
        f.write("id\treference\thypothesis\tedits\n")
        for r in results:
            f.write(f"{r['id']}\t{names(r['ref'])}\t{names(r['hyp'])}\t{edit_distance(r['ref'], r['hyp'])}\n")
    lines = [f"# Evaluation: {summary['checkpoint']} on split `{summary['split']}`", "",
             "| metric | value |", "|---|---|", f"| clips | {summary['clips']} |",
             f"| transcript error rate (%) | {summary['ter']:.2f} |",
             f"| exact transcripts (%) | {summary['transcript_exact']:.1f} |"]
    for setting in ("segmentation", "alignment"):
        for key, value in summary.get(setting, {}).items():
            lines.append(f"| {setting}: {key} | {value:.2f} |" if isinstance(value, float) else
                         f"| {setting}: {key} | {value} |")
    if "segmentation" in summary:
        plot_segments(results, labels, out_dir / "segments.png", num_plots)
        lines += ["", "Predicted (greedy transcript, force-aligned) vs true segments:", "", "![segments](segments.png)"]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")


def evaluate(checkpoint: str | Path, split: str | None = None, out_dir: str | Path | None = None,
             device: str = "auto", batch_size: int | None = None) -> dict:
    """Evaluate ``checkpoint`` on ``split`` (default: the config's test split) and write the reports."""
    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"])
    split = split or cfg.data.test_split
    dataset = build_dataset(cfg.data.name, split, cfg.data.args)
    if list(dataset.labels) != list(state["labels"]):
        raise ValueError(f"{checkpoint} was trained with labels {state['labels'][:8]}... but {cfg.data.name}/{split} "
                         f"has {list(dataset.labels)[:8]}...: evaluate on data with the same vocabulary")
    model = model_from_checkpoint(state)
    results = run_model(model, dataset, batch_size or cfg.data.eval_batch_size, resolve_device(device),
                        cfg.data.num_workers)
    summary = {"checkpoint": str(checkpoint), "split": split, "epoch": state["epoch"] + 1,
               **score(results, state["labels"], cfg.eval.background)}
    out_dir = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{split}"
    write_reports(results, summary, state["labels"], out_dir, cfg.eval.num_plots)
    summary["out_dir"] = str(out_dir)
    return summary
