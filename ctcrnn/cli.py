"""The ``ctcrnn`` command: ``train``, ``evaluate``, ``transcribe``, ``align``, ``tune-lm``, ``lm``, ``plot``,
``export``, ``bundle``, ``average``, ``models``. Every command that takes a checkpoint also takes a bundle
folder or the name of a shipped bundle.

``python train.py ARGS`` is ``ctcrnn train ARGS``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys

from .checkpoint import CheckpointError
from .config import ConfigError, load_config


def format_summary(summary: dict) -> str:
    def rates(block: dict) -> str:
        if "wer" in block:
            return f"WER {block['wer']:.2f}%  CER {block['cer']:.2f}%"
        return f"transcript error rate {block['ter']:.2f}%"

    lines = [f"{summary['split']}: {summary['clips']} clips, {rates(summary)}"]
    if summary.get("unreadable"):
        lines[0] += f" ({summary['unreadable']} unreadable clips skipped, listed in skipped.tsv)"
    for setting in ("segmentation", "alignment"):
        if setting in summary:
            s = summary[setting]
            lines.append(f"  {setting:<12} frame acc {s['acc']:.1f}  edit {s['edit']:.1f}  "
                         f"F1@10/25/50 {s['f1@10']:.1f}/{s['f1@25']:.1f}/{s['f1@50']:.1f}")
    if "beam" in summary:
        b = summary["beam"]
        lines.append(f"  {b['decoder']}: {rates(b)}")
    lines.append(f"  reports in {summary['out_dir']}")
    return "\n".join(lines)


def cmd_train(args) -> None:
    from .training.distributed import DistContext, shutdown
    from .evaluation.scoring import evaluate
    from .training.trainer import train

    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with the config inside its checkpoint; drop --config "
                              "(overrides such as trainer.max_epochs=N still apply)")
        run_dir = train(None, resume=args.resume, overrides=args.overrides)
    else:
        run_dir = train(load_config(args.config, args.overrides))
    rank = int(os.environ.get("RANK", "0"))
    shutdown(DistContext(rank, int(os.environ.get("WORLD_SIZE", "1"))))
    if rank != 0:  # under torchrun, rank 0 reports and evaluates
        return
    print(f"run folder: {run_dir}")
    if not args.no_eval and (run_dir / "best.pt").exists():
        print(format_summary(evaluate(run_dir / "best.pt", device=args.device)))


def cmd_evaluate(args) -> None:
    from .evaluation.scoring import evaluate

    summary = evaluate(args.checkpoint, split=args.split, out_dir=args.out, device=args.device,
                       batch_size=args.batch_size, decoder=decoder_options(args), overrides=args.overrides)
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, indent=2))


def decoder_options(args) -> dict | None:
    if args.beam:
        return {"beam_size": args.beam, "lm": args.lm, "lm_weight": args.lm_weight, "word_bonus": args.word_bonus,
                "lexicon": args.lexicon, "word_delimiter": args.word_delimiter, "engine": args.decoder,
                "unk_score": args.unk_score}
    if args.lm or args.lexicon or args.decoder != "ctcrnn" or args.unk_score is not None:
        raise ValueError("--lm, --lexicon, --unk-score and --decoder apply to beam search: add --beam N "
                         "(e.g. --beam 16)")
    return None


def make_recogniser(args):
    from .checkpoint import load_checkpoint
    from .decoding.factory import make_decoder, with_word_delimiter
    from .evaluation.transcribe import Recogniser

    options = decoder_options(args) if hasattr(args, "beam") else None
    decoder = None
    if options:
        state = load_checkpoint(args.checkpoint)
        decoder = make_decoder(state["labels"], **with_word_delimiter(options, state["input_spec"]))
    return Recogniser(args.checkpoint, device=args.device, decoder=decoder)


def cmd_transcribe(args) -> None:
    from .evaluation.transcribe import write_ctm

    results = make_recogniser(args).transcribe(args.files)
    for t in results:
        print(f"{t.path}\t{t.text}" if t.error is None else f"{t.path}\tERROR: {t.error}")
    if args.ctm:
        write_ctm([t for t in results if t.error is None], args.ctm)
    failed = [t for t in results if t.error is not None]
    if failed:
        sys.exit(f"error: {len(failed)} of {len(results)} files could not be read")


def cmd_align(args) -> None:
    from pathlib import Path

    from .evaluation.transcribe import write_ctm

    text = Path(args.transcript).read_text() if Path(args.transcript).is_file() else args.transcript
    result = make_recogniser(args).align(args.media, text)
    for s in result.segments:
        times = f"{s['start_s']:8.3f} {s['end_s']:8.3f}" if "start_s" in s else f"{s['start']:6d} {s['end']:6d}"
        print(f"{times}  {s['label']!r:12} {s['score']:8.4f}")
    if args.out:
        write_ctm([result], args.out)
        print(f"segments written to {args.out} and {Path(args.out).with_suffix('.json')}")


def cmd_tune_lm(args) -> None:
    from .evaluation.lm_tuning import tune_lm

    result = tune_lm(args.checkpoint, args.lm, split=args.split, lm_weights=args.lm_weights,
                     word_bonuses=args.word_bonuses, beam_size=args.beam, lexicon=args.lexicon,
                     word_delimiter=args.word_delimiter, device=args.device, out=args.out, engine=args.decoder,
                     unk_score=args.unk_score)
    print(f"{result['split']}: greedy transcript error rate {result['greedy_ter']:.2f}%; beam {args.beam} with LM:")
    print("  lm_weight  word_bonus  error %")
    for g in result["grid"]:
        print(f"  {g['lm_weight']:9.2f}  {g['word_bonus']:10.2f}  {g['ter']:7.2f}")
    best = result["best"]
    print(f"best: --lm-weight {best['lm_weight']} --word-bonus {best['word_bonus']} ({best['ter']:.2f}%)")


def cmd_lm(args) -> None:
    from .decoding.lm import main as lm_main

    lm_main(args.lm_args)


def cmd_plot(args) -> None:
    from .evaluation.plotting import plot_run

    print(f"learning curves written to {plot_run(args.run, args.out)}")


def cmd_export(args) -> None:
    from .export import export

    path = export(args.checkpoint, args.out, format=args.format, with_features=args.with_features)
    print(f"exported {path} and {path.parent / 'config.json'}")


def cmd_bundle(args) -> None:
    from .bundle import save_bundle, update_bundle_config

    decoder = None
    if args.beam or args.lm or args.lexicon:
        decoder = {"beam_size": args.beam or 16, "lm_weight": args.lm_weight, "word_bonus": args.word_bonus}
        if args.word_delimiter is not None:
            decoder["word_delimiter"] = args.word_delimiter
    folder = save_bundle(args.checkpoint, args.out, lm=args.lm, lexicon=args.lexicon, decoder=decoder,
                         recipe=args.recipe, name=args.name)
    if args.reference_clips:
        from .evaluation.spot_check import spot_check

        reference = spot_check(folder, clips=args.reference_clips, device=args.device)
        reference["command"] = f"ctcrnn.evaluation.spot_check.spot_check(BUNDLE, clips={args.reference_clips})"
        update_bundle_config(folder, reference=reference)
        print(f"reference: first {reference['clips']} clips of {reference['split']}: "
              + ", ".join(f"{k} {reference[k]:.2f}%" for k in ("ter", "wer", "cer") if k in reference))
    print(f"bundle written to {folder}")


def cmd_average(args) -> None:
    from .checkpoint import save_checkpoint
    from .training.averaging import average_checkpoints

    save_checkpoint(average_checkpoints(args.checkpoints), args.out)
    print(f"average of {len(args.checkpoints)} checkpoints written to {args.out}")


def cmd_models(args) -> None:
    from .registry import list_models

    print("\n".join(list_models(args.pattern)))


def float_list(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def add_decoder_options(p: argparse.ArgumentParser, beam_default: int | None, lm_required: bool = False) -> None:
    from .decoding.factory import DECODERS

    p.add_argument("--beam", type=int, default=beam_default,
                   help="prefix beam search with this beam size, reported beside greedy decoding")
    p.add_argument("--lm", required=lm_required, help="n-gram LM in ARPA format ('ctcrnn lm build' makes one)")
    if not lm_required:
        p.add_argument("--lm-weight", type=float, default=0.5, help="weight of the natural-log LM probability")
        p.add_argument("--word-bonus", type=float, default=0.0, help="added per word (per token for token LMs)")
    p.add_argument("--lexicon", help="file of allowed words, one per line")
    p.add_argument("--unk-score", type=float, default=None,
                   help="added to each word the LM does not know, on top of its <unk> probability (<= 0; -inf "
                        "forbids them); default: the decoder's own (ctcrnn 0, pyctcdecode -10, flashlight -inf)")
    p.add_argument("--word-delimiter", help="the label between words (e.g. '|') when labels spell words")
    p.add_argument("--decoder", choices=DECODERS, default="ctcrnn",
                   help="beam search engine: ctcrnn's own (default), or flashlight-text / pyctcdecode when "
                        "installed (pip install 'ctcrnn[decoders]')")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctcrnn", description="CNN-RNN CTC sequence recognition")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a YAML recipe (default: the embedded SyntheticActions job)")
    p.add_argument("--config", help="YAML recipe in configs/; omitted: the embedded default")
    p.add_argument("--resume", help="continue the run of this checkpoint or run folder (its config, plus any "
                   "overrides); a corrupted checkpoint falls back to the newest readable one")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation after training")
    p.add_argument("--device", default="auto", help="device for the final evaluation")
    p.add_argument("overrides", nargs="*", help="key.sub=value, e.g. model.encoder.cell=lstm trainer.max_epochs=3")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="score a checkpoint and write summary.json/.md, hypotheses, plots")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", help="dataset split (default: the config's test split)")
    p.add_argument("--out", help="output folder (default: <run>/eval-<split>)")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.add_argument("overrides", nargs="*", help="data.* settings pointing the checkpoint's data config at other "
                   "data, e.g. data.args.root=/data/LibriSpeech (the model's vocabulary and preprocessing stay)")
    add_decoder_options(p, beam_default=None)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("transcribe", help="print a transcript per media file")
    p.add_argument("checkpoint")
    p.add_argument("files", nargs="+")
    p.add_argument("--ctm", help="also write token times as CTM (and JSON) to this file")
    p.add_argument("--device", default="cpu")
    add_decoder_options(p, beam_default=None)
    p.set_defaults(func=cmd_transcribe)
    p = sub.add_parser("align", help="force-align a transcript to a media file: token segments with times")
    p.add_argument("checkpoint")
    p.add_argument("media")
    p.add_argument("transcript", help="the text, or a file holding it")
    p.add_argument("--out", help="write the segments as CTM (and JSON) to this file")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_align)
    p = sub.add_parser("tune-lm", help="grid-search LM weight and word bonus on the validation split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", help="dataset split (default: the config's validation split)")
    p.add_argument("--lm-weights", type=float_list, default=[0.0, 0.25, 0.5, 1.0, 2.0], help="e.g. 0,0.5,1")
    p.add_argument("--word-bonuses", type=float_list, default=[-1.0, 0.0, 1.0, 2.0], help="e.g. -1,0,1")
    p.add_argument("--out", help="write the grid as JSON here")
    p.add_argument("--device", default="auto")
    add_decoder_options(p, beam_default=16, lm_required=True)
    p.set_defaults(func=cmd_tune_lm)
    p = sub.add_parser("lm", help="n-gram LM tools: 'ctcrnn lm build text.txt --order 3 --out lm.arpa'")
    p.add_argument("lm_args", nargs=argparse.REMAINDER)
    p.set_defaults(func=cmd_lm)
    p = sub.add_parser("plot", help="draw a run's learning curves (loss, validation error, lr) to a PNG")
    p.add_argument("run", help="run folder (holding metrics.jsonl / steps.jsonl)")
    p.add_argument("--out", help="PNG path (default: <run>/curves.png)")
    p.set_defaults(func=cmd_plot)
    p = sub.add_parser("export", help="export a checkpoint or bundle to ONNX or TorchScript (+ config.json)")
    p.add_argument("checkpoint", help="checkpoint file, bundle folder or shipped bundle name")
    p.add_argument("--format", choices=("onnx", "torchscript"), default="onnx")
    p.add_argument("--out", required=True, help="folder for model.onnx / model.pt and config.json")
    p.add_argument("--with-features", action="store_true",
                   help="put the preprocessing in the graph (audio: raw samples (B, N) and sample counts in)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("bundle", help="package a checkpoint as a bundle folder: safetensors weights + config.json")
    p.add_argument("checkpoint", help="checkpoint file (or a bundle folder to re-package)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--lm", help="n-gram LM (ARPA) to copy in and suggest for beam search")
    p.add_argument("--lexicon", help="lexicon (one word per line) to copy in and suggest")
    p.add_argument("--beam", type=int, help="suggested beam size (default 16 when an LM or lexicon is given)")
    p.add_argument("--lm-weight", type=float, default=0.5, help="suggested LM weight")
    p.add_argument("--word-bonus", type=float, default=0.0, help="suggested word bonus")
    p.add_argument("--word-delimiter", help="the label between words, if not the model's own")
    p.add_argument("--recipe", help="the command that trained the checkpoint, recorded in config.json")
    p.add_argument("--name", help="bundle name (default: the folder's name)")
    p.add_argument("--reference-clips", type=int, default=0,
                   help="also record greedy scores on the first N test clips (re-checked by the tests)")
    p.add_argument("--device", default="cpu", help="device for --reference-clips")
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("average", help="average the weights of several checkpoints of one run (icefall's --avg)")
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--out", required=True, help="checkpoint file to write, e.g. avg.pt")
    p.set_defaults(func=cmd_average)
    from .compare import add_arguments as add_compare_arguments, run_from_args as cmd_compare
    p = sub.add_parser("compare", help="train GRU/LSTM/Transformer/TCN encoders on the same data and budget, "
                       "report error, size, speed and memory (rerun to continue)")
    add_compare_arguments(p)
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=cmd_models)
    return parser


# Options whose value may start with "-" beyond a plain number (-inf, -1,0,1): argparse takes those for
# options of their own, so they are joined to their option ("--unk-score=-inf") before parsing.
_SIGNED_OPTIONS = ("--lm-weight", "--word-bonus", "--unk-score", "--lm-weights", "--word-bonuses")
_SIGNED_VALUE = re.compile(r"-(inf|\d|\.\d)", re.IGNORECASE)


def attach_signed_values(argv: list[str]) -> list[str]:
    """``--word-bonuses -1,0,1`` and ``--unk-score -inf`` as users write them, in the form argparse reads."""
    out: list[str] = []
    for arg in argv:
        if out and out[-1] in _SIGNED_OPTIONS and _SIGNED_VALUE.match(arg):
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(attach_signed_values(sys.argv[1:] if argv is None else list(argv)))
    try:
        args.func(args)
    except (ValueError, CheckpointError) as e:  # ConfigError, RegistryError and data errors are ValueErrors
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
