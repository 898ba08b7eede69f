"""The picture ``ctcrnn evaluate`` adds for text lines: a few line images as the model saw them, each with
its reference and the model's hypothesis (and the beam search's, when one ran). Called through the image
datasets' ``write_predictions`` hook. Must never import the core training code or another modality.
"""
from __future__ import annotations

import logging
from pathlib import Path

from ..data import labels_to_text
from .io import ImageError

log = logging.getLogger(__name__)

MAX_LINES = 8


def pick_rows(results: list[dict], count: int) -> list[dict]:
    """Lines with errors first (the ones worth looking at), then correct ones, each group in split order."""
    wrong = [r["hyp"] != r["ref"] or r.get("beam", r["hyp"]) != r["ref"] for r in results]
    return ([r for r, w in zip(results, wrong) if w] + [r for r, w in zip(results, wrong) if not w])[:count]


def plot_lines(dataset, results: list[dict], out_dir: Path, count: int = MAX_LINES) -> Path | None:
    """Write ``out_dir/lines.png`` and link it from ``summary.md``; returns the path (None: nothing drawn)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {line.id: i for i, line in enumerate(dataset.lines)}
    spec, labels = dataset.input_spec, dataset.labels
    shown = []
    for row in pick_rows([r for r in results if r["id"] in index], count):
        try:
            shown.append((row, dataset.image(index[row["id"]], augmented=False)))
        except ImageError:
            continue
    if not shown:
        return None
    fig, axes = plt.subplots(len(shown), 1, figsize=(10, 1.3 * len(shown) + 0.3), squeeze=False)
    for ax, (row, image) in zip(axes[:, 0], shown):
        ax.imshow(image.numpy(), cmap="gray_r", vmin=0, vmax=1, aspect="equal", interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        reference = row.get("text", labels_to_text(row["ref"], labels, spec))
        caption = [f"ref: {reference}", f"hyp: {labels_to_text(row['hyp'], labels, spec)}"]
        if "beam" in row:
            caption.append(f"beam: {labels_to_text(row['beam'], labels, spec)}")
        source = dataset.lines[index[row["id"]]].source
        ax.set_title(f"{row['id']}{f' ({source})' if source else ''}\n" + "\n".join(caption), fontsize=8, loc="left",
                     family="monospace")
    fig.tight_layout()
    path = out_dir / "lines.png"
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    summary = out_dir / "summary.md"
    if summary.exists() and "lines.png" not in summary.read_text():
        with open(summary, "a") as f:
            f.write("\nLines as the model saw them (errors first), reference vs hypothesis:\n\n![lines](lines.png)\n")
    return path
