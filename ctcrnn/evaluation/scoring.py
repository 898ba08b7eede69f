"""Evaluate a checkpoint on a dataset split: transcripts, segmentation and alignment scores, files.

Writes to the output folder: ``summary.json``, ``summary.md``, ``hypotheses.tsv`` (one line per
clip: id, reference, hypothesis, edits, plus the beam-search hypothesis when a decoder is given; cells
escaped as :func:`ctcrnn.runlog.tsv_cell` says), ``skipped.tsv`` (clips that could not be read, or whose
model output is not finite), ``too_long_references.tsv`` (clips whose reference has more labels than the
model outputs frames for the clip: it cannot emit them; they are scored all the same, each missing label
an error) and, for data with frame labels, ``segments.png``. Greedy results are always reported, so a
beam/LM setting is read against them in the same file. The folder is checked before the model runs.
Core module: must never import a modality package (``ctcrnn.video``, ``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from torch.nn.utils.rnn import pad_sequence

from ..decoding.alignment import forced_align_segments, frame_labels_from_segments
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..config import apply_override, config_from_dict
from ..nn.ctc import min_ctc_frames
from ..data import build_dataset, labels_to_text
from ..decoding.factory import describe_decoder, make_decoder, with_word_delimiter
from ..metrics import cer, edit_distance, error_rate, segmentation_scores, wer, words
from ..data import make_loader
from ..inference import predict, resolve_device
from ..paths import check_output
from ..runlog import write_skipped_tsv, write_tsv
from .transcribe import check_finite

log = logging.getLogger(__name__)


def to_input_frames(labels: list[int], num_input: int, stride: int) -> list[int]:
    """Per-output-frame labels back at the input frame rate: input t takes the output frame centred
    nearest to it, (t + stride // 2) // stride (output j is centred on input j * stride)."""
    last = len(labels) - 1
    return [labels[min(last, (t + stride // 2) // stride)] for t in range(num_input)]


def frames_from_transcript(log_probs: torch.Tensor, transcript: list[int], num_input: int,
                           stride: int = 1) -> list[int] | None:
    """Forced-align ``transcript`` to one clip's (T', V) log-probs and label every input frame;
    None when the transcript is empty or cannot fit the output frames."""
    # The length test first: it is O(1), and a huge reference (a corrupt manifest line) fails it at once.
    if not transcript or len(transcript) > log_probs.shape[0] or min_ctc_frames(transcript) > log_probs.shape[0]:
        return None
    segments = forced_align_segments(log_probs, transcript)
    return to_input_frames(frame_labels_from_segments(segments, log_probs.shape[0]), num_input, stride)


# Clips per beam-search call: ctcrnn's search costs mostly per frame, whatever the number of clips, so
# evaluation gathers several model batches before decoding (benchmarks/README.md: decoders).
DECODE_BATCH = 256


def run_model(model, dataset, batch_size: int, device: torch.device, num_workers: int = 0,
              decoder=None, keep_log_probs: bool = False, unreadable: list | None = None,
              max_frames: int = 0) -> list[dict]:
    """Per clip: id, reference (and its raw ``text`` when the dataset has one), greedy hypothesis, output
    frames T', the ``decoder``'s best hypothesis (when given), the clip's (T', V) log-probs (with
    ``keep_log_probs``, for re-decoding) and frame labels from both alignment settings. Items the dataset
    cannot read, and clips whose log-probs are not finite, are appended to ``unreadable`` as (id, reason)
    (and logged when no list is given)."""
    model.to(device)
    results = []
    counted = unreadable is not None
    unreadable = unreadable if counted else []
    pending = []  # (row, its (T', V) log-probs): clips waiting for the beam search

    def decode_pending():
        if pending:
            log_probs = pad_sequence([clip for _, clip in pending], batch_first=True)
            lengths = torch.tensor([clip.shape[0] for _, clip in pending])
            for (row, _), nbest in zip(pending, decoder(log_probs, lengths)):
                row["beam"] = nbest[0].tokens
            pending.clear()

    loader = make_loader(dataset, batch_size, num_workers, device, max_frames=max_frames)
    for batch, log_probs, out_lengths, hyps in predict(model, loader, device, unreadable):
        for i, sample_id in enumerate(batch["ids"]):
            try:
                check_finite(log_probs[i, : int(out_lengths[i])], sample_id)
            except ValueError as error:
                unreadable.append((sample_id, str(error)))
                continue
            row = {"id": sample_id, "ref": batch["targets"][i], "hyp": hyps[i], "frames": int(out_lengths[i])}
            if "texts" in batch:
                row["text"] = batch["texts"][i]
            if decoder is not None:
                pending.append((row, log_probs[i, : int(out_lengths[i])]))
            if keep_log_probs:
                row["log_probs"] = log_probs[i, : int(out_lengths[i])]
            if "frame_labels" in batch:
                clip = log_probs[i, : int(out_lengths[i])]
                num_input = int(batch["lengths"][i])
                row["truth_frames"] = batch["frame_labels"][i]
                stride = model.frontend.stride
                row["segmentation_frames"] = frames_from_transcript(clip, hyps[i], num_input, stride)
                row["alignment_frames"] = frames_from_transcript(clip, row["ref"], num_input, stride)
            results.append(row)
        if len(pending) >= DECODE_BATCH:
            decode_pending()
    decode_pending()
    if unreadable and not counted:
        log.warning("%d clips could not be read or gave non-finite log-probabilities and are left out, e.g. %s: %s",
                    len(unreadable), *unreadable[0])
    return results


def too_long_references(results: list[dict]) -> list[dict]:
    """The rows whose reference has more labels than the clip's output frames: no CTC output can hold it
    (a wrong transcript, a cut clip, a corrupt manifest line); each missing label is scored as an error.
    Rows made elsewhere than :func:`run_model`, without "frames", are not checked."""
    return [r for r in results if len(r["ref"]) > r.get("frames", len(r["ref"]))]


def spells_words(input_spec: dict | None) -> bool:
    """Labels are characters that spell words (a word delimiter is declared): score WER and CER."""
    return (input_spec or {}).get("word_delimiter") is not None


def transcript_scores(results: list[dict], key: str, labels: list[str], input_spec: dict | None) -> dict:
    """Token error rate and exact-transcript share of ``results[i][key]``; for character data also
    corpus-level WER and CER against the raw reference text (characters outside the vocabulary included:
    a model that cannot write them is charged for them)."""
    refs, hyps = [r["ref"] for r in results], [r[key] for r in results]
    scores = {"ter": error_rate(refs, hyps),
              "transcript_exact": 100.0 * sum(a == b for a, b in zip(refs, hyps)) / max(1, len(results))}
    if spells_words(input_spec):
        ref_texts = [reference_text(r, labels, input_spec) for r in results]
        hyp_texts = [labels_to_text(h, labels, input_spec) for h in hyps]
        scores["wer"], scores["cer"] = wer(ref_texts, hyp_texts), cer(ref_texts, hyp_texts)
        exact = sum(a.strip() == b.strip() for a, b in zip(ref_texts, hyp_texts))  # characters(a) == characters(b)
        scores["transcript_exact"] = 100.0 * exact / len(results)
    return scores


def reference_text(row: dict, labels: list[str], input_spec: dict) -> str:
    """The raw reference when the dataset gave one (it may hold characters the model cannot write)."""
    return row.get("text", labels_to_text(row["ref"], labels, input_spec))


def score(results: list[dict], labels: list[str], background: list[str], input_spec: dict | None = None) -> dict:
    """Transcript error rate (WER/CER too for character data) plus, with frame labels, scores in the
    segmentation and alignment settings."""
    if not results:
        raise ValueError("nothing to score: no clip of the split could be read (see the skipped list)")
    summary = {"clips": len(results), **transcript_scores(results, "hyp", labels, input_spec)}
    if "beam" in results[0]:
        summary["beam"] = transcript_scores(results, "beam", labels, input_spec)
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


def write_reports(results: list[dict], summary: dict, labels: list[str], out_dir: Path, num_plots: int,
                  input_spec: dict | None = None, unreadable: list | None = None) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    spec = input_spec or {}
    beam, spelled = "beam" in summary, spells_words(input_spec)

    def text(seq: list[int]) -> str:
        return labels_to_text(seq, labels, spec)

    def row_cells(r: dict) -> list:
        ref = reference_text(r, labels, spec) if spelled else text(r["ref"])
        cells = [r["id"], ref]
        for hyp in [r["hyp"], r["beam"]] if beam else [r["hyp"]]:
            # Counted with the same transforms as the summary's CER/WER, so the columns add up to it
            # (characters(a) vs characters(b) is the stripped strings, compared without making lists).
            hyp_text = text(hyp)
            cells += ([hyp_text, edit_distance(ref.strip(), hyp_text.strip()), edit_distance(words(ref), words(hyp_text))]
                      if spelled else [hyp_text, edit_distance(r["ref"], hyp)])
        return cells

    columns = ["id", "reference", "hypothesis", *(["char_edits", "word_edits"] if spelled else ["edits"])]
    columns += [f"beam_{c}" for c in columns[2:]] if beam else []
    write_tsv(out_dir / "hypotheses.tsv", columns, map(row_cells, results))
    write_skipped(out_dir, unreadable)
    too_long = too_long_references(results)
    _write_or_remove(out_dir / "too_long_references.tsv", ("id", "reference_labels", "output_frames"),
                     [(r["id"], len(r["ref"]), r["frames"]) for r in too_long])
    lines = [f"# Evaluation: {summary['checkpoint']} on split `{summary['split']}`", "",
             "| metric | value |", "|---|---|", f"| clips | {summary['clips']} |"]
    if unreadable:
        lines.append(f"| unreadable clips skipped (skipped.tsv) | {len(unreadable)} |")
    if too_long:
        lines.append(f"| references longer than the model's output (too_long_references.tsv) | {len(too_long)} |")
    for name, block in [("", summary), *([(f"beam search ({summary['beam']['decoder']}): ", summary["beam"])]
                                        if beam else [])]:
        if spelled:
            lines += [f"| {name}word error rate (%) | {block['wer']:.2f} |",
                      f"| {name}character error rate (%) | {block['cer']:.2f} |"]
        else:
            lines.append(f"| {name}transcript error rate (%) | {block['ter']:.2f} |")
        lines.append(f"| {name}exact transcripts (%) | {block['transcript_exact']:.1f} |")
    for setting in ("segmentation", "alignment"):
        for key, value in summary.get(setting, {}).items():
            lines.append(f"| {setting}: {key} | {value:.2f} |" if isinstance(value, float) else
                         f"| {setting}: {key} | {value} |")
    if "segmentation" in summary:
        plot_segments(results, labels, out_dir / "segments.png", num_plots)
        lines += ["", "Predicted (greedy transcript, force-aligned) vs true segments:", "", "![segments](segments.png)"]
    (out_dir / "summary.md").write_text("\n".join(lines) + "\n")


# Every file write_reports may write, checked before the model runs.
REPORT_FILES = ("summary.json", "summary.md", "hypotheses.tsv", "skipped.tsv", "too_long_references.tsv",
                "segments.png")


def write_skipped(out_dir: Path, unreadable: list | None) -> None:
    """skipped.tsv: every clip the dataset could not read, with the reason (written as training writes its own)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_or_remove(out_dir / "skipped.tsv", ("id", "reason"), unreadable or [], write_skipped_tsv)


def _write_or_remove(path: Path, columns: tuple[str, ...], rows: list, writer=write_tsv) -> None:
    """A list report when there is something to list; otherwise no file, not one left by an earlier
    evaluation into the same folder (it would list clips this one did not skip)."""
    if rows:
        writer(path, columns, rows)
    else:
        path.unlink(missing_ok=True)


def load_for_evaluation(checkpoint: str | Path, split: str | None, default: str = "test",
                        overrides: list[str] = ()):
    """(state, config, split, dataset, model) for scoring ``checkpoint`` on ``split`` (None: the config's
    ``default`` split, "test" or "val"). ``overrides`` (``data.args.root=/data/LibriSpeech``) point the
    checkpoint's data config elsewhere; the dataset is read with the checkpoint's fitted vocabulary and
    preprocessing."""
    state = load_checkpoint(checkpoint)
    cfg = config_from_dict(state["config"])
    for override in overrides:
        if not override.startswith(("data.", "eval.")):
            raise ValueError(f"evaluation overrides may change data.* and eval.* only, not {override!r}")
        apply_override(cfg, override)
    split = split or getattr(cfg.data, f"{default}_split")
    dataset = build_dataset(cfg.data.name, split, cfg.data.args,
                            fitted={"labels": state["labels"], "input_spec": state["input_spec"]})
    if list(dataset.labels) != list(state["labels"]):
        raise ValueError(f"{checkpoint} was trained with labels {state['labels'][:8]}... but {cfg.data.name}/{split} "
                         f"has {list(dataset.labels)[:8]}...: evaluate on data with the same vocabulary")
    return state, cfg, split, dataset, model_from_checkpoint(state)


def evaluate(checkpoint: str | Path, split: str | None = None, out_dir: str | Path | None = None,
             device: str = "auto", batch_size: int | None = None, decoder: dict | None = None,
             overrides: list[str] = ()) -> dict:
    """Evaluate ``checkpoint`` on ``split`` (default: the config's test split) and write the reports.

    decoder: options of :func:`make_decoder` (``beam_size``, ``lm``, ``lm_weight``, ``word_bonus``,
    ``lexicon``, ``word_delimiter``) to report a beam search beside greedy decoding.
    overrides: ``data.*`` settings that point the checkpoint's data config at other data.
    """
    state, cfg, split, dataset, model = load_for_evaluation(checkpoint, split, overrides=overrides)
    option = "--out" if out_dir else "the default output folder (choose another with --out)"
    out_dir = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{split.replace('/', '_')}"
    check_output(out_dir, option, folder=True, inside=REPORT_FILES)  # before the model runs, not after
    beam = make_decoder(state["labels"], **with_word_delimiter(decoder, state["input_spec"])) if decoder else None
    unreadable: list = []
    results = run_model(model, dataset, batch_size or cfg.data.eval_batch_size, resolve_device(device),
                        cfg.data.num_workers, decoder=beam, unreadable=unreadable, max_frames=cfg.data.max_frames)
    if not results:
        write_skipped(out_dir, unreadable)
        first = "; ".join(f"{i}: {reason}" for i, reason in unreadable[:3])
        raise ValueError(f"nothing to score on {split}: all {len(unreadable)} clips were unreadable (listed in "
                         f"{out_dir / 'skipped.tsv'}), e.g. {first}")
    summary = {"checkpoint": str(checkpoint), "split": split, "epoch": state["epoch"] + 1,
               **score(results, state["labels"], cfg.eval.background, state["input_spec"]),
               "unreadable": len(unreadable)}
    too_long = too_long_references(results)
    summary["too_long_references"] = len(too_long)
    if too_long:
        log.warning("%d references have more labels than their clip's output frames, so the model cannot emit "
                    "them (each missing label is scored as an error), listed in %s: e.g. %s (%d labels, %d frames)",
                    len(too_long), out_dir / "too_long_references.tsv", too_long[0]["id"], len(too_long[0]["ref"]),
                    too_long[0]["frames"])
    if beam is not None:
        summary["beam"]["decoder"] = describe_decoder(decoder)
    write_reports(results, summary, state["labels"], out_dir, cfg.eval.num_plots, state["input_spec"], unreadable)
    if hasattr(dataset, "write_predictions"):  # a dataset's own output format (e.g. MS-TCN's per-video files)
        dataset.write_predictions(results, out_dir)
    summary["out_dir"] = str(out_dir)
    return summary
