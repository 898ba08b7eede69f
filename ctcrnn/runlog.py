"""What a run writes besides checkpoints: per-epoch metrics, per-step training log, skipped samples,
and (optionally) TensorBoard events.

Files in the run folder: ``metrics.csv``/``metrics.jsonl`` (one row per epoch: losses, validation error,
lr, throughput, skipped counts), ``steps.csv``/``steps.jsonl`` (a row every ``trainer.log_every_steps``
optimizer steps: loss, lr, grad norm, throughput, skipped so far), ``skipped.tsv`` (every skipped sample
with the reason) and ``tensorboard/`` with ``trainer.tensorboard=true``. A resumed run first cuts each log
back to its checkpoint, so no row is ever written twice.

Also the TSV cell escaping (:func:`tsv_cell`) that every TSV report shares. (The checks of input and output
paths are in :mod:`ctcrnn.paths`.)
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """Progress through one epoch's batches: a tqdm bar when stderr is a terminal; otherwise (nohup, CI, a
    log file) a plain log line every ``every_s`` seconds, since a bar's redraws would fill the file."""

    def __init__(self, iterable, desc: str, initial: int, total: int, enabled: bool = True,
                 every_s: float = 60.0, stream=None):
        stream = stream or sys.stderr
        self.desc, self.position, self.total, self.every_s = desc, initial, total, every_s
        self.bar = tqdm(iterable, desc=desc, leave=False, dynamic_ncols=True, initial=initial, total=total) \
            if enabled and stream.isatty() else None
        self.iterable, self.lines = iterable if self.bar is None else self.bar, enabled and self.bar is None
        self.last = time.time()

    def __iter__(self):
        for item in self.iterable:
            self.position += 1
            yield item

    def update(self, **values) -> None:
        """Show the latest values (``loss``, ``clips_s``, ...): in the bar, or as a line when one is due."""
        if self.bar is not None:
            self.bar.set_postfix(**values)
        elif self.lines and time.time() - self.last >= self.every_s:
            self.last = time.time()
            log.info("%s  batch %d/%d  %s", self.desc, self.position, self.total,
                     "  ".join(f"{k} {v}" for k, v in values.items()))


class TableLog:
    """Rows appended to ``<name>.csv`` and ``<name>.jsonl``; ``key`` is the column that orders them."""

    def __init__(self, run_dir: Path, name: str, key: str):
        self.csv, self.jsonl, self.key = run_dir / f"{name}.csv", run_dir / f"{name}.jsonl", key

    def rows(self) -> list[dict]:
        """The rows written so far; a torn last line (a kill or a full disk mid-write) is left out."""
        if not self.jsonl.exists():
            return []
        rows = []
        for line in self.jsonl.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def truncate(self, last: int) -> None:
        """Keep the rows whose ``key`` is at most ``last`` (what the checkpoint being resumed had seen); each
        file is rewritten through a temp file and a rename, so a kill here loses no history."""
        kept = [row for row in self.rows() if row[self.key] <= last]
        for path, text in ((self.jsonl, "".join(json.dumps(row) + "\n" for row in kept)), (self.csv, csv_text(kept))):
            tmp = path.with_name(f".{path.name}.tmp")
            tmp.write_text(text)
            os.replace(tmp, path)

    def write(self, row: dict) -> None:
        # Empty, not only missing: a resume from inside the first epoch truncates the csv to no rows at all.
        new = not self.csv.exists() or self.csv.stat().st_size == 0
        with open(self.csv, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(row))
            if new:
                writer.writeheader()
            writer.writerow(row)
        with open(self.jsonl, "a") as f:
            f.write(json.dumps(row) + "\n")


class TensorBoardLog:
    """Scalars to ``run/tensorboard`` through torch's SummaryWriter (needs the ``tensorboard`` package)."""

    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ValueError("trainer.tensorboard=true needs the tensorboard package: pip install tensorboard "
                             f"(or set trainer.tensorboard=false) [{e}]") from None
        self.writer = SummaryWriter(str(run_dir / "tensorboard"))

    def write(self, prefix: str, row: dict, step: int) -> None:
        for key, value in row.items():
            if isinstance(value, (int, float)) and key not in ("epoch", "step"):
                self.writer.add_scalar(f"{prefix}/{key}", value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def csv_text(rows: list[dict]) -> str:
    if not rows:
        return ""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


_TSV_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def tsv_cell(value) -> str:
    """A value as one cell of a TSV report (skipped.tsv, hypotheses.tsv, ...): a backslash is written as
    ``\\``, a tab as ``\t``, a line feed as ``\n`` and a carriage return as ``\r`` (backslash, letter), so a
    file name or a reason holding them neither splits its row nor its line, and the text can be read back
    exactly (every other character, spaces included, is written as it is)."""
    return str(value).translate(_TSV_ESCAPES)


def write_tsv(path: Path, columns: Iterable[str], rows, append: bool = False) -> None:
    """A TSV report: a header of ``columns``, then one line per row, every cell through :func:`tsv_cell`.
    ``append`` adds to an existing file (the header is written only when the file is new); otherwise the
    file is replaced."""
    new = not (append and path.exists())
    with open(path, "a" if append else "w", encoding="utf-8") as f:
        if new:
            f.write("\t".join(columns) + "\n")
        f.writelines("\t".join(tsv_cell(cell) for cell in row) + "\n" for row in rows)


def write_skipped_tsv(path: Path, columns: tuple[str, ...], rows, append: bool = False) -> None:
    """A skipped.tsv (training's and ``ctcrnn evaluate``'s): :func:`write_tsv`, one row per skipped item."""
    write_tsv(path, columns, rows, append)


def record_skipped(run_dir: Path, epoch: int, skipped: list[tuple[str, str]], first: bool) -> None:
    """Every skipped sample goes to skipped.tsv; the log shows the first of each epoch."""
    path = run_dir / "skipped.tsv"
    write_skipped_tsv(path, ("epoch", "id", "reason"), [(epoch, sample_id, reason) for sample_id, reason in skipped],
                      append=True)
    if first:
        log.warning("skipping %s: %s (all skipped samples are listed in %s)", *skipped[0], path)


def truncate_skipped(run_dir: Path, epoch: int) -> None:
    """Drop skipped.tsv rows of ``epoch`` and later: a resumed run lists them again as it meets them."""
    path = run_dir / "skipped.tsv"
    if path.exists():
        lines = path.read_text().splitlines(keepends=True)
        path.write_text("".join(lines[:1] + [line for line in lines[1:] if int(line.split("\t", 1)[0]) < epoch]))
