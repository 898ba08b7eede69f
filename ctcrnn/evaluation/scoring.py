"""Evaluate a checkpoint on a dataset split: transcripts, segmentation and alignment scores, files.

Writes to the output folder: ``summary.json``, ``summary.md``, ``hypotheses.tsv`` (one line per
clip: id, reference, hypothesis, edits, plus the beam-search hypothesis when a decoder is given) and,
for data with frame labels, ``segments.png``. Greedy results are always reported, so a beam/LM setting
is read against them in the same file.
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
from ..metrics import cer, characters, edit_distance, error_rate, segmentation_scores, wer, words
from ..data import make_loader
from ..inference import predict, resolve_device
from ..runlog import write_skipped_tsv

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
    if not transcript or min_ctc_frames(transcript) > log_probs.shape[0]:
        return None
    segments = forced_align_segments(log_probs, transcript)
    return to_input_frames(frame_labels_from_segments(segments, log_probs.shape[0]), num_input, stride)


# Clips per beam-search call: ctcrnn's search costs mostly per frame, whatever the number of clips, so
# evaluation gathers several model batches before decoding (benchmarks/README.md: decoders).
DECODE_BATCH = 256


def run_model(model, dataset, batch_size: int, device: torch.device, num_workers: int = 0,
              decoder=None, keep_log_probs: bool = False, unreadable: list | None = None,
              max_frames: int = 0) -> list[dict]:
    """Per clip: id, reference (and its raw ``text`` when the dataset has one), greedy hypothesis, the
    ``decoder``'s best hypothesis (when given), the clip's (T', V) log-probs (with ``keep_log_probs``, for
    re-decoding) and frame labels from both alignment settings. Items the dataset cannot read are
    appended to ``unreadable`` as (id, reason)."""
    model.to(device)
    results = []
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
            row = {"id": sample_id, "ref": batch["targets"][i], "hyp": hyps[i]}
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
    return results


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
        exact = sum(characters(a) == characters(b) for a, b in zip(ref_texts, hyp_texts))
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

    def edits(row: dict, hyp: list[int]) -> str:
        # Counted with the same transforms as the summary's CER/WER, so the columns add up to it.
        if not spelled:
            return str(edit_distance(row["ref"], hyp))
        ref = reference_text(row, labels, spec)
        return (f"{edit_distance(characters(ref), characters(text(hyp)))}\t"
                f"{edit_distance(words(ref), words(text(hyp)))}")

    edit_columns = "char_edits\tword_edits" if spelled else "edits"
    with open(out_dir / "hypotheses.tsv", "w") as f:
        f.write(f"id\treference\thypothesis\t{edit_columns}")
        f.write("".join(f"\tbeam_{c}" for c in ["hypothesis", *edit_columns.split("\t")]) + "\n" if beam else "\n")
        for r in results:
            ref = reference_text(r, labels, spec) if spelled else text(r["ref"])
            f.write(f"{r['id']}\t{ref}\t{text(r['hyp'])}\t{edits(r, r['hyp'])}")
            f.write(f"\t{text(r['beam'])}\t{edits(r, r['beam'])}\n" if beam else "\n")
    write_skipped(out_dir, unreadable)
    lines = [f"# Evaluation: {summary['checkpoint']} on split `{summary['split']}`", "",
             "| metric | value |", "|---|---|", f"| clips | {summary['clips']} |"]
    if unreadable:
        lines.append(f"| unreadable clips skipped (skipped.tsv) | {len(unreadable)} |")
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


def write_skipped(out_dir: Path, unreadable: list | None) -> None:
    """skipped.tsv: every clip the dataset could not read, with the reason (written as training writes its own)."""
    if unreadable:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_skipped_tsv(out_dir / "skipped.tsv", ("id", "reason"), unreadable)


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
    beam = make_decoder(state["labels"], **with_word_delimiter(decoder, state["input_spec"])) if decoder else None
    unreadable: list = []
    results = run_model(model, dataset, batch_size or cfg.data.eval_batch_size, resolve_device(device),
                        cfg.data.num_workers, decoder=beam, unreadable=unreadable, max_frames=cfg.data.max_frames)
    out_dir = Path(out_dir) if out_dir else Path(checkpoint).parent / f"eval-{split.replace('/', '_')}"
    if not results:
        write_skipped(out_dir, unreadable)
        first = "; ".join(f"{i}: {reason}" for i, reason in unreadable[:3])
        raise ValueError(f"nothing to score on {split}: all {len(unreadable)} clips were unreadable (listed in "
                         f"{out_dir / 'skipped.tsv'}), e.g. {first}")
    summary = {"checkpoint": str(checkpoint), "split": split, "epoch": state["epoch"] + 1,
               **score(results, state["labels"], cfg.eval.background, state["input_spec"]),
               "unreadable": len(unreadable)}
    if beam is not None:
        summary["beam"]["decoder"] = describe_decoder(decoder)
    write_reports(results, summary, state["labels"], out_dir, cfg.eval.num_plots, state["input_spec"], unreadable)
    if hasattr(dataset, "write_predictions"):  # a dataset's own output format (e.g. MS-TCN's per-video files)
        dataset.write_predictions(results, out_dir)
    summary["out_dir"] = str(out_dir)
    return summary
