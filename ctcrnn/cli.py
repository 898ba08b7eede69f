"""The ``ctcrnn`` command: ``train``, ``evaluate``, ``transcribe``, ``stream``, ``align``, ``tune-lm``, ``lm``,
``plot``, ``export``, ``bundle``, ``average``, ``models``. Every command that takes a checkpoint also takes a bundle
folder or the name of a shipped bundle.

``python train.py ARGS`` is ``ctcrnn train ARGS``.

Hostile input is refused early and in one line: every numeric option is range-checked as it is parsed
(argparse ``type=`` functions below, so the message names the option), input files named by options are
checked as they are parsed, and output locations are checked before any work starts. Errors the code raises
for the user (ValueError subclasses, CheckpointError) and OSErrors on the user's paths end the command
with ``ctcrnn <command>: error: ...`` and exit status 1; argparse's own errors exit with 2.
"""
from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
from pathlib import Path

from .checkpoint import CheckpointError
from .config import ConfigError, load_config
from .argtypes import finite_float, nonneg_float, nonneg_int, parse_number, positive_float, positive_int
from .paths import check_output, input_file_problem
from .runlog import tsv_cell


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
    if summary.get("too_long_references"):
        lines.append(f"  {summary['too_long_references']} references have more labels than the model outputs frames "
                     "for their clip (scored as errors), listed in too_long_references.tsv")
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
    if args.beam is not None:
        return {"beam_size": args.beam, "lm": args.lm, "lm_weight": args.lm_weight, "word_bonus": args.word_bonus,
                "lexicon": args.lexicon, "word_delimiter": args.word_delimiter, "engine": args.decoder,
                "unk_score": args.unk_score}
    if args.lm or args.lexicon or args.decoder != "ctcrnn" or args.unk_score is not None:
        raise ValueError("--lm, --lexicon, --unk-score and --decoder apply to beam search: add --beam N "
                         "(e.g. --beam 16)")
    return None


def make_recogniser(args):
    from .evaluation.transcribe import Recogniser

    options = decoder_options(args) if hasattr(args, "beam") else None
    return Recogniser(args.checkpoint, device=args.device, decoder=make_decoder_for(args.checkpoint, options))


def cmd_transcribe(args) -> None:
    from .evaluation.transcribe import check_ctm_output, write_ctm

    if args.stream or args.chunk_seconds:
        return transcribe_long(args)
    if args.ctm:
        check_ctm_output(args.ctm)
    recogniser = make_recogniser(args)
    if args.ctm:
        check_times(recogniser, "--ctm")
    results = recogniser.transcribe(args.files)
    for t in results:
        print(f"{tsv_cell(t.path)}\t{tsv_cell(t.text)}" if t.error is None else f"{tsv_cell(t.path)}\tERROR: {tsv_cell(t.error)}")
    transcribed = [t for t in results if t.error is None]
    if args.ctm and transcribed:
        write_ctm(transcribed, args.ctm)
    failed = len(results) - len(transcribed)
    if failed:
        sys.exit(f"ctcrnn transcribe: error: {failed} of {len(results)} files could not be read; each is "
                 "listed above as 'PATH<tab>ERROR: reason'" + (f" (the CTM holds the {len(transcribed)} others)"
                                                               if args.ctm and transcribed else ""))


def transcribe_long(args) -> None:
    """``transcribe --stream`` (a causal model, as if live) or ``--chunk-seconds`` (any model, overlapping windows)."""
    from . import live

    if args.stream and args.chunk_seconds:
        raise ValueError("--stream and --chunk-seconds exclude each other: --stream runs a causal (*_streaming) "
                         "model live; --chunk-seconds runs any model over overlapping windows")
    if args.ctm:
        raise ValueError("--ctm is not written with --stream or --chunk-seconds: run without them for token times")
    options = decoder_options(args)
    if options and options.get("engine", "ctcrnn") != "ctcrnn":
        raise ValueError(f"--decoder {options['engine']} cannot continue across chunks: use --decoder ctcrnn")
    if args.stream:
        failed = live.stream_files(args.checkpoint, args.files, options, args.device, args.chunk_ms / 1000,
                                   args.realtime, partials=not args.quiet)
    else:
        failed = live.transcribe_windows(args.checkpoint, args.files, make_decoder_for(args.checkpoint, options),
                                         args.device, args.chunk_seconds, args.context_seconds)
    if failed:
        sys.exit(f"ctcrnn transcribe: error: {failed} of {len(args.files)} files could not be read; each is listed "
                 "above as 'PATH<tab>ERROR: reason'")


def make_decoder_for(checkpoint: str, options: dict | None):
    """The beam-search decoder ``options`` ask for, for this checkpoint's labels; None for greedy."""
    from .checkpoint import load_checkpoint
    from .decoding.factory import make_decoder, with_word_delimiter

    if not options:
        return None
    state = load_checkpoint(checkpoint)
    return make_decoder(state["labels"], **with_word_delimiter(options, state["input_spec"]))


def cmd_stream(args) -> None:
    from . import live

    options = decoder_options(args)
    if options and options.get("engine", "ctcrnn") != "ctcrnn":
        raise ValueError(f"--decoder {options['engine']} cannot continue across chunks: use --decoder ctcrnn")
    live.stream_source(args.checkpoint, args.source, options, args.device, args.chunk_ms / 1000, args.realtime,
                       partials=not args.quiet)


def check_times(recogniser, option: str) -> None:
    if recogniser.seconds_per_frame is None:
        raise ValueError(f"{option} writes times in seconds, but the checkpoint's input_spec has no 'fps': drop {option}")


def read_transcript(text_or_path: str) -> str:
    """``align``'s transcript: the contents of the file it names, else the text itself."""
    # os.path, not Path: Path.is_file raises on a name too long for a file (a long transcript given inline).
    if os.path.isdir(text_or_path):
        raise ValueError(f"transcript {text_or_path} is a directory: give the text, or a text file holding it")
    if not os.path.isfile(text_or_path):
        return text_or_path
    try:
        return Path(text_or_path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"transcript file {text_or_path} is not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                         f"{e.start}): save it as UTF-8") from None
    except OSError as e:
        raise ValueError(f"transcript file {text_or_path} cannot be read ({e.strerror})") from None


def cmd_align(args) -> None:
    from .evaluation.transcribe import check_ctm_output, write_ctm

    text = read_transcript(args.transcript)
    if args.out:
        check_ctm_output(args.out, "--out")
    recogniser = make_recogniser(args)
    if args.out:
        check_times(recogniser, "--out")
    result = recogniser.align(args.media, text)
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

    lm_main(args.lm_args, prog="ctcrnn lm")


def cmd_plot(args) -> None:
    from .evaluation.plotting import plot_run

    print(f"learning curves written to {plot_run(args.run, args.out)}")


def cmd_export(args) -> None:
    from .export import export

    if args.streaming:
        from .stream_export import export_streaming

        if args.with_features:
            raise ValueError("--streaming exports the model's step function over model input steps; the audio "
                             "features stream with their own overlap (ctcrnn.streaming): drop --with-features")
        paths = export_streaming(args.checkpoint, args.out, format=args.format)
        print(f"exported {', '.join(map(str, paths))} and {paths[0].parent / 'config.json'}")
        return
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

    check_output(args.out, "--out")
    save_checkpoint(average_checkpoints(args.checkpoints), args.out)
    print(f"average of {len(args.checkpoints)} checkpoints written to {args.out}")


def cmd_models(args) -> None:
    from .registry import list_models

    print("\n".join(list_models(args.pattern)))


# ---------------------------------------------------------------------------------------------------------
# Option values, checked as they are parsed (argparse names the option in front of each message). A NaN
# weight would make every hypothesis score NaN and decode quietly wrong; these refuse it before any work.


def beam_size(text: str) -> int:
    value = parse_number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"the beam size must be >= 1 (--beam 1 is greedy decoding; without --beam "
                                         f"only greedy decoding is run), got {text!r}")
    return value


def unk_score(text: str) -> float:
    value = parse_number(text)
    if not value <= 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be <= 0 (a penalty; -inf forbids unknown words), got {text!r}")
    return value


def float_list(text: str) -> list[float]:
    values = [parse_number(v) for v in text.split(",") if v.strip()]
    if not values or not all(math.isfinite(v) for v in values):
        raise argparse.ArgumentTypeError(f"expected one or more comma-separated finite numbers, got {text!r}")
    return values


def input_file(text: str) -> str:
    """A file the command reads (--lm, --lexicon): it must exist, be a file and be readable."""
    problem = input_file_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def split_name(text: str) -> str:
    """--split: a split name or a manifest file; a folder is neither (a path, so not a split name either)."""
    if os.sep in text and os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text} is a directory: give a split name (e.g. test) or a manifest file "
                                         "(.jsonl)")
    return text


def device_name(text: str) -> str:
    """--device: a device this machine has (auto, cpu, cuda, cuda:N, ...; see resolve_device), returned
    resolved ("auto" as "cuda" or "cpu"), so every command, greedy ones included, gets one torch can use."""
    from .inference import resolve_device

    try:
        return str(resolve_device(text, "--device"))
    except (ValueError, RuntimeError) as e:  # RuntimeError: torch's own, for a name it cannot parse
        raise argparse.ArgumentTypeError(str(e)) from None


def add_decoder_options(p: argparse.ArgumentParser, beam_default: int | None, lm_required: bool = False) -> None:
    from .decoding.factory import DECODERS

    p.add_argument("--beam", type=beam_size, default=beam_default,
                   help="prefix beam search with this beam size (>= 1), reported beside greedy decoding")
    p.add_argument("--lm", type=input_file, required=lm_required,
                   help="n-gram LM in ARPA format ('ctcrnn lm build' makes one)")
    if not lm_required:
        p.add_argument("--lm-weight", type=finite_float, default=0.5, help="weight of the natural-log LM probability")
        p.add_argument("--word-bonus", type=finite_float, default=0.0,
                       help="added per word (per token for token LMs)")
    p.add_argument("--lexicon", type=input_file,
                   help="file of allowed words, one per line (UTF-8); words the model cannot spell are left out "
                        "with a warning, or refused when they are more than half of the file")
    p.add_argument("--unk-score", type=unk_score, default=None,
                   help="added to each word the LM does not know, on top of its <unk> probability (<= 0; -inf "
                        "forbids them); default: the decoder's own (ctcrnn 0, pyctcdecode -10, flashlight -inf)")
    p.add_argument("--word-delimiter", help="the label between words (e.g. '|') when labels spell words")
    p.add_argument("--decoder", choices=DECODERS, default="ctcrnn",
                   help="beam search engine: ctcrnn's own (default), or flashlight-text / pyctcdecode when "
                        "installed (pip install 'ctcrnn[decoders]')")


def add_live_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--chunk-ms", type=positive_float, default=80.0,
                   help="live input arrives in chunks of this many milliseconds (default 80)")
    p.add_argument("--realtime", action="store_true", help="pace a file at real time, as a live source would be")
    p.add_argument("--quiet", action="store_true", help="print only the final transcript, no partial results")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctcrnn", description="CNN-RNN CTC sequence recognition")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a YAML recipe (default: the embedded SyntheticActions job)")
    p.add_argument("--config", help="YAML recipe in configs/; omitted: the embedded default")
    p.add_argument("--resume", help="continue the run of this checkpoint or run folder (its config, plus any "
                   "overrides); a corrupted checkpoint falls back to the newest readable one")
    p.add_argument("--no-eval", action="store_true", help="skip the test-split evaluation after training")
    p.add_argument("--device", type=device_name, default="auto", help="device for the final evaluation")
    p.add_argument("overrides", nargs="*", help="key.sub=value, e.g. model.encoder.cell=lstm trainer.max_epochs=3")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("evaluate", help="score a checkpoint and write summary.json/.md, hypotheses, plots")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", type=split_name, help="dataset split or manifest (default: the config's test split)")
    p.add_argument("--out", help="output folder (default: <run>/eval-<split>)")
    p.add_argument("--device", type=device_name, default="auto")
    p.add_argument("--batch-size", type=positive_int)
    p.add_argument("--json", action="store_true", help="also print the summary as JSON")
    p.add_argument("overrides", nargs="*", help="data.* settings pointing the checkpoint's data config at other "
                   "data, e.g. data.args.root=/data/LibriSpeech (the model's vocabulary and preprocessing stay)")
    add_decoder_options(p, beam_default=None)
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("transcribe", help="print a transcript per media file")
    p.add_argument("checkpoint")
    p.add_argument("files", nargs="+")
    p.add_argument("--ctm", help="also write token times as CTM (and JSON) to this file")
    p.add_argument("--device", type=device_name, default="cpu")
    p.add_argument("--stream", action="store_true", help="read each file chunk by chunk as if live (a causal "
                   "*_streaming model), printing partial results to stderr as they change")
    p.add_argument("--chunk-seconds", type=positive_float, help="long files with any model: overlapping windows "
                   "of this many seconds, one through the model at a time, decoded as one stream")
    p.add_argument("--context-seconds", type=nonneg_float, help="with --chunk-seconds: extra input read on each "
                   "side of a window (default a quarter of the window)")
    add_live_options(p)
    add_decoder_options(p, beam_default=None)
    p.set_defaults(func=cmd_transcribe)
    p = sub.add_parser("stream", help="recognise a live stream with a causal model: raw 16-bit PCM on stdin ('-') "
                       "or a file read as if live; partial results on stderr, the final transcript on stdout")
    p.add_argument("checkpoint", help="checkpoint file, bundle folder or shipped bundle name (a *_streaming model)")
    p.add_argument("source", help="'-': signed 16-bit little-endian mono PCM at the model's sample rate on standard "
                   "input (arecord -f S16_LE -r 16000 | ctcrnn stream model.pt -); otherwise a media file")
    p.add_argument("--device", type=device_name, default="cpu")
    add_live_options(p)
    add_decoder_options(p, beam_default=None)
    p.set_defaults(func=cmd_stream)
    p = sub.add_parser("align", help="force-align a transcript to a media file: token segments with times")
    p.add_argument("checkpoint")
    p.add_argument("media")
    p.add_argument("transcript", help="the text, or a file holding it")
    p.add_argument("--out", help="write the segments as CTM (and JSON) to this file")
    p.add_argument("--device", type=device_name, default="cpu")
    p.set_defaults(func=cmd_align)
    p = sub.add_parser("tune-lm", help="grid-search LM weight and word bonus on the validation split")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--split", type=split_name, help="dataset split or manifest (default: the config's validation "
                   "split)")
    p.add_argument("--lm-weights", type=float_list, default=[0.0, 0.25, 0.5, 1.0, 2.0], help="e.g. 0,0.5,1")
    p.add_argument("--word-bonuses", type=float_list, default=[-1.0, 0.0, 1.0, 2.0], help="e.g. -1,0,1")
    p.add_argument("--out", help="write the grid as JSON here")
    p.add_argument("--device", type=device_name, default="auto")
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
    p.add_argument("--streaming", action="store_true", help="a causal model's step function (state as explicit "
                   "inputs and outputs) and flush function instead of the whole-input graph")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("bundle", help="package a checkpoint as a bundle folder: safetensors weights + config.json")
    p.add_argument("checkpoint", help="checkpoint file (or a bundle folder to re-package)")
    p.add_argument("--out", required=True, help="bundle folder to write")
    p.add_argument("--lm", type=input_file, help="n-gram LM (ARPA) to copy in and suggest for beam search")
    p.add_argument("--lexicon", type=input_file, help="lexicon (one word per line) to copy in and suggest")
    p.add_argument("--beam", type=beam_size, help="suggested beam size (default 16 when an LM or lexicon is given)")
    p.add_argument("--lm-weight", type=finite_float, default=0.5, help="suggested LM weight")
    p.add_argument("--word-bonus", type=finite_float, default=0.0, help="suggested word bonus")
    p.add_argument("--word-delimiter", help="the label between words, if not the model's own")
    p.add_argument("--recipe", help="the command that trained the checkpoint, recorded in config.json")
    p.add_argument("--name", help="bundle name (default: the folder's name)")
    p.add_argument("--reference-clips", type=nonneg_int, default=0,
                   help="also record greedy scores on the first N test clips (re-checked by the tests)")
    p.add_argument("--device", type=device_name, default="cpu", help="device for --reference-clips")
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
_SIGNED_VALUE = re.compile(r"-(inf|nan|\d|\.\d)", re.IGNORECASE)  # -nan too: refused by its option's check


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
    # ConfigError, RegistryError, data, LM, lexicon and output-location errors are ValueErrors naming the
    # file or option; an OSError is a file of the user's that failed in a way no check foresaw (a disk that
    # fills up, a folder removed mid-run).
    except (ValueError, CheckpointError) as e:
        sys.exit(f"ctcrnn {args.command}: error: {e}")
    except KeyboardInterrupt as e:  # training's says where it stopped and how to resume; a bare one says nothing
        print(str(e) or f"ctcrnn {args.command}: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as e:
        where = f"{e.filename}: " if e.filename else ""
        sys.exit(f"ctcrnn {args.command}: error: {where}{e.strerror or e}")


if __name__ == "__main__":
    main()
