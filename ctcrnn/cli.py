"""The ``ctcrnn`` command: ``train``, ``evaluate``, ``models``.

``python train.py ARGS`` is ``ctcrnn train ARGS``.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys

from .checkpoint import CheckpointError
from .config import ConfigError, load_config


def format_summary(summary: dict) -> str:
    lines = [f"{summary['split']}: {summary['clips']} clips, transcript error rate {summary['ter']:.2f}%"]
    for setting in ("segmentation", "alignment"):
        if setting in summary:
            s = summary[setting]
            lines.append(f"  {setting:<12} frame acc {s['acc']:.1f}  edit {s['edit']:.1f}  "
                         f"F1@10/25/50 {s['f1@10']:.1f}/{s['f1@25']:.1f}/{s['f1@50']:.1f}")
    lines.append(f"  reports in {summary['out_dir']}")
    return "\n".join(lines)


def cmd_train(args) -> None:
    from .evaluate import evaluate
    from .trainer import train

    if args.resume:
        if args.config:
            raise ConfigError("--resume continues a run with the config inside its checkpoint; drop --config "
                              "(overrides such as trainer.max_epochs=N still apply)")
        run_dir = train(None, resume=args.resume, overrides=args.overrides)
    else:
        run_dir = train(load_config(args.config, args.overrides))
    print(f"run folder: {run_dir}")
    if not args.no_eval and (run_dir / "best.pt").exists():
        print(format_summary(evaluate(run_dir / "best.pt", device=args.device)))


def cmd_evaluate(args) -> None:
    from .evaluate import evaluate

    summary = evaluate(args.checkpoint, split=args.split, out_dir=args.out, device=args.device,
                       batch_size=args.batch_size)
    print(format_summary(summary))
    if args.json:
        print(json.dumps(summary, indent=2))


def cmd_models(args) -> None:
    from .registry import list_models

    print("\n".join(list_models(args.pattern)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ctcrnn", description="CNN-RNN CTC sequence recognition")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train", help="train from a YAML recipe (default: the embedded SyntheticActions job)")
    p.add_argument("--config", help="YAML recipe in configs/; omitted: the embedded default")
    p.add_argument("--resume", help="continue the run of this checkpoint (its config, plus any overrides)")
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
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("models", help="list registered models")
    p.add_argument("pattern", nargs="?", default="*")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, CheckpointError) as e:  # ConfigError, RegistryError and data errors are ValueErrors
        sys.exit(f"error: {e}")


if __name__ == "__main__":
    main()
