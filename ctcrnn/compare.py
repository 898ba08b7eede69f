"""``ctcrnn compare``: GRU, LSTM, Transformer or TCN for my data? Train each on the same data and budget.

Every (encoder, seed) variant trains in its own subprocess (``python -m ctcrnn.compare --train-child``) into
``DIR/runs/<encoder>-seed<k>``, so its peak memory is its own: the child's ``ru_maxrss`` from ``os.wait4``
(peak resident set of the training process, DataLoader worker processes not included). A budget in minutes
is a wall-clock limit on that subprocess: at the limit it is stopped and the variant keeps its best
checkpoint so far (``best.pt``; the config's ``trainer.max_epochs`` still caps the epochs, and its cosine
schedule is not shortened). A finished variant writes ``done.json``; running the same command again skips
it, resumes an unfinished one from its ``last.pt`` with the budget it has left, and tries a failed one again
(from its ``last.pt`` when it has one: a run that finished training and failed in evaluation is only
evaluated); a resumed variant reports its time and peak memory over all its subprocesses. Transformer and
TCN widths are chosen so their encoders have about as many parameters as the GRU's (unless
``model.encoder.d_model`` is given). Writes ``DIR/report.md``, ``DIR/report.json`` and ``DIR/curves.png``.

Floor: above training and evaluation (imports both), below the CLI.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path

import torch

from .argtypes import positive_float, positive_int
from .config import load_config

log = logging.getLogger("ctcrnn.compare")

# Encoder names on the command line -> EncoderConfig fields they set.
ENCODERS = {
    "gru": {"type": "rnn", "cell": "gru"},
    "lstm": {"type": "rnn", "cell": "lstm"},
    "transformer": {"type": "transformer"},
    "tcn": {"type": "tcn"},
}
PARAMETER_TOLERANCE = 0.15      # transformer/tcn encoders within 15 % of the GRU encoder's parameters
BENCHMARK = Path(__file__).resolve().parent.parent / "benchmarks" / "long_sequences.py"


def parse_encoders(text: str) -> list[str]:
    """'gru,lstm' -> ['gru', 'lstm']; unknown names are an error listing the valid ones."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in ENCODERS]
    if unknown or not names:
        raise ValueError(f"unknown encoder(s) {', '.join(map(repr, unknown)) or '(none given)'}: "
                         f"choose from {', '.join(ENCODERS)}")
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------ sizing


def encoder_overrides(name: str, fields: dict) -> list[str]:
    return [f"model.encoder.{key}={value}" for key, value in {**ENCODERS[name], **fields}.items()]


def size_variants(config: str | None, encoders: list[str], overrides: list[str]) -> dict:
    """{encoder: {"overrides", "params", "encoder_params"} or {"error"}}: each variant's encoder settings,
    transformer/tcn widths picked (multiples of nhead, or of 2) so their encoder parameter count is closest
    to the GRU encoder's under the same config."""
    from .training.trainer import build_datasets, build_model

    cfg = load_config(config, list(overrides))
    train_set, _, _ = build_datasets(cfg.data, None, None)
    cpu = torch.device("cpu")

    def counts(name: str, fields: dict) -> tuple[int, int, dict]:  # (parameters, encoder's, resolved encoder)
        model = build_model(load_config(config, [*overrides, *encoder_overrides(name, fields)]), train_set, cpu)
        return (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in model.encoder.parameters()),
                dataclasses.asdict(model.encoder.config))

    sized: dict = {}
    target = counts("gru", {})[1]
    user_width = any(o.startswith("model.encoder.d_model=") for o in overrides)
    for name in encoders:
        try:
            fields: dict = {}
            total, encoder, resolved = counts(name, fields)
            if ENCODERS[name]["type"] != "rnn" and not user_width:
                step = resolved["nhead"] if name == "transformer" else 2
                fields = {"d_model": best_width(lambda w, name=name: counts(name, {"d_model": w})[1], target, step)}
                total, encoder, resolved = counts(name, fields)
            sized[name] = {"overrides": encoder_overrides(name, fields), "params": total, "encoder_params": encoder,
                           "encoder": resolved, "params_vs_gru": round(encoder / target - 1, 3)}
        except Exception as error:  # noqa: BLE001  (a variant that cannot be built is reported, not fatal)
            sized[name] = {"error": f"{type(error).__name__}: {error}"}
    return sized


def best_width(encoder_params, target: int, step: int) -> int:
    """The multiple of ``step`` whose ``encoder_params(width)`` is closest to ``target`` (parameters grow
    monotonically with width: a doubling search, then a bisection)."""
    high = step
    while encoder_params(high) < target and high < 1 << 14:
        high *= 2
    low = step
    while high - low > step:
        middle = (low + high) // 2 // step * step
        if encoder_params(middle) < target:
            low = middle
        else:
            high = middle
    return min((low, high), key=lambda w: abs(encoder_params(w) - target))


# ----------------------------------------------------------------------------------------- one variant


def train_child(spec_path: str) -> None:
    """The subprocess: train one variant (or resume it); any exception is written to ``error.txt``."""
    spec = json.loads(Path(spec_path).read_text())
    from .training.trainer import train
    try:
        if spec["resume"]:
            train(None, resume=spec["run_dir"])
        else:
            train(load_config(spec["config"], spec["overrides"]))
    except BaseException as error:
        Path(spec["run_dir"], "error.txt").write_text(f"{type(error).__name__}: {error}\n\n{traceback.format_exc()}")
        raise


def metrics_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def run_variant(name: str, seed: int, sized: dict, config: str | None, overrides: list[str], out: Path,
                budget_s: float | None) -> dict:
    """Train (or resume) one variant in a subprocess, evaluate it; the result dict, also in ``done.json``."""
    run_name = f"{name}-seed{seed}"
    run_dir = out / "runs" / run_name
    done = run_dir / "done.json"
    if done.exists():
        earlier = json.loads(done.read_text())
        if earlier.get("status") != "failed":
            log.info("%s: done earlier, kept (%s)", run_name, done)
            return earlier
        # A failure may have been passing (the code changed under a running comparison, memory ran out, the
        # evaluation broke): the rerun tries again, resuming the training it kept (none left: evaluation only).
        log.info("%s: failed earlier (%s), trying again", run_name, earlier.get("reason"))
        done.unlink()
    result = {"variant": run_name, "encoder": name, "seed": seed, "run_dir": str(run_dir)}
    if "error" in sized:
        return finish(run_dir, {**result, "status": "failed", "reason": sized["error"]})
    result.update({k: sized[k] for k in ("params", "encoder_params", "params_vs_gru")}, encoder_config=sized["encoder"])
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "error.txt").unlink(missing_ok=True)
    previous = metrics_rows(run_dir)
    resume = (run_dir / "last.pt").exists()
    ledger = run_dir / "budget.json"
    kept = json.loads(ledger.read_text()) if resume and ledger.exists() else {}
    spent, peak_before = kept.get("spent_s", 0.0), kept.get("peak_rss_mib", 0.0)
    spec = {"config": config, "run_dir": str(run_dir), "resume": resume,
            "overrides": [*overrides, *sized["overrides"], f"trainer.seed={seed}", f"trainer.out_dir={out / 'runs'}",
                          f"trainer.run_name={run_name}", "trainer.progress=false"]}
    (run_dir / "child.json").write_text(json.dumps(spec, indent=1))
    log.info("%s: %s (%d encoder parameters)%s", run_name, "resuming" if resume else "training",
             sized["encoder_params"], f", {budget_s - spent:.0f} s of budget left" if budget_s else "")
    stopped, started, pid, noted = False, time.perf_counter(), 0, 0.0

    def note(elapsed: float, peak_mib: float = 0.0) -> None:  # what a resumed variant carries over
        ledger.write_text(json.dumps({"spent_s": elapsed, "peak_rss_mib": max(peak_before, peak_mib)}))
    with open(run_dir / "child.log", "a") as child_log:
        child = subprocess.Popen([sys.executable, "-m", "ctcrnn.compare", "--train-child", str(run_dir / "child.json")],
                                 stdout=child_log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while True:
                pid, status, usage = os.wait4(child.pid, os.WNOHANG)
                if pid:
                    break
                elapsed = spent + time.perf_counter() - started
                if budget_s is not None and elapsed > budget_s and not stopped:
                    os.killpg(child.pid, signal.SIGTERM)   # its own session: DataLoader workers go too
                    stopped = True
                if elapsed - noted > 5:  # a killed comparison resumes with the budget this variant has left
                    note(elapsed)
                    noted = elapsed
                time.sleep(0.2)
        finally:
            if not pid:  # interrupted (Ctrl-C): stop the child, keep what it wrote for the next run
                os.killpg(child.pid, signal.SIGKILL)
                _, _, usage = os.wait4(child.pid, 0)
                note(spent + time.perf_counter() - started, usage.ru_maxrss / 1024)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = spent + time.perf_counter() - started
    # The peak over every child this variant had: a resumed one may have trained little or nothing.
    peak = max(peak_before, usage.ru_maxrss / 1024)
    note(wall, peak)
    rows = metrics_rows(run_dir)
    result.update(peak_rss_mib=round(peak, 1), wall_s=round(wall, 1), budget_stopped=stopped,
                  epochs=len(rows), resumed_from_epoch=len(previous) if resume else 0)
    if child.returncode != 0 and not stopped:
        error = run_dir / "error.txt"
        reason = error.read_text().split("\n")[0] if error.exists() else f"training process exited with {child.returncode}"
        return finish(run_dir, {**result, "status": "failed", "reason": reason})
    if not (run_dir / "best.pt").exists():
        reason = (f"the budget of {budget_s / 60:g} min was too small for one epoch: raise --budget-minutes or "
                  f"shrink the data (e.g. data.args.train_size)") if stopped else "no best.pt was written"
        return finish(run_dir, {**result, "status": "failed", "reason": reason})
    result.update(curve_from_metrics(rows))
    try:
        result.update(evaluate_variant(run_dir))
    except Exception as error:  # noqa: BLE001
        return finish(run_dir, {**result, "status": "failed", "reason": f"evaluation: {type(error).__name__}: {error}"})
    return finish(run_dir, {**result, "status": "ok"})


def finish(run_dir: Path, result: dict) -> dict:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "done.json").write_text(json.dumps(result, indent=1))
    if result["status"] == "failed":
        log.warning("%s failed: %s", result["variant"], result["reason"])
    return result


def curve_from_metrics(rows: list[dict]) -> dict:
    """Validation TER against cumulative training seconds (``epoch_s``: the training passes, validation
    excluded); the time to the best epoch; seconds per optimizer step."""
    clock, curve = 0.0, []
    for row in rows:
        clock += row["epoch_s"]
        curve.append([round(clock, 1), row["val_ter"]])
    best = min(range(len(rows)), key=lambda i: rows[i]["val_ter"])
    steps = rows[-1]["step"]
    non_finite = sum(row.get("skipped_steps", 0) for row in rows)
    return {"curve": curve, "best_val_ter": rows[best]["val_ter"], "best_epoch": best + 1,
            "time_to_best_s": curve[best][0], "train_s": round(clock, 1),
            "s_per_step": round(clock / steps, 4) if steps else None, "non_finite_steps": non_finite}


def seconds_per_step(spec: dict) -> float | None:
    """Media seconds one input step stands for (video fps, audio feature hop), None when unknown."""
    if spec.get("fps"):
        return 1.0 / float(spec["fps"])
    features = spec.get("features") or {}
    if features.get("hop_ms"):
        return float(features["hop_ms"]) / 1000
    return None


def evaluate_variant(run_dir: Path, clips: int = 8) -> dict:
    """Test-split scores of ``best.pt`` and the real-time factor of its forward pass on one thread."""
    from .evaluation.scoring import evaluate, load_for_evaluation

    summary = evaluate(run_dir / "best.pt", "test", run_dir / "eval-test", device="cpu")
    state, _, _, dataset, model = load_for_evaluation(run_dir / "best.pt", "test")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    compute, steps = 0.0, 0
    try:
        with torch.inference_mode():
            for index in range(min(clips, len(dataset))):
                x = dataset[index]["input"][None]
                start = time.perf_counter()
                model(x, torch.tensor([x.shape[1]]))
                compute += time.perf_counter() - start
                steps += x.shape[1]
    finally:
        torch.set_num_threads(threads)
    step_s = seconds_per_step(state["input_spec"])
    ter = summary.get("ter", summary.get("token_error_rate"))
    return {"test_ter": ter, "test_summary": {k: v for k, v in summary.items() if isinstance(v, (int, float))},
            "rtf_1thread": round(compute / (steps * step_s), 4) if step_s and steps else None,
            "ms_per_1k_steps_1thread": round(1e6 * compute / max(steps, 1), 2)}


# ------------------------------------------------------------------------------------- length probe


def length_probe(sized: dict, lengths: list[int], features: int, timeout: float) -> list[dict]:
    """One training step's time and peak memory against T, by benchmarks/long_sequences.py's probe, for the
    compared RNNs and a Transformer of the compared width (its own standalone models: the frontend is
    left out). Empty when the benchmark file is not there (an installed package)."""
    if not BENCHMARK.exists() or not lengths:
        return []
    spec = importlib.util.spec_from_file_location("ctcrnn_long_sequences", BENCHMARK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    rows = []
    for name, size in sized.items():
        if "error" in size or name == "tcn":
            continue  # the probe has no TCN
        enc = size["encoder"]
        width = enc["d_model"] or enc["hidden_size"] * 2
        options = {"features": features, "hidden": enc["hidden_size"], "layers": enc["num_layers"], "width": width,
                   "heads": enc["nhead"], "ffn": enc["ff_size"] or 4 * width, "transformer_layers": enc["num_layers"],
                   "threads": 1, "steps": 1, "timeout": timeout}
        for length, result in module.probe([name], lengths, **options).items():
            rows.append({"encoder": name, "T": length[1], **{k: result.get(k) for k in ("status", "time", "peak_gib")}})
    return rows


# ------------------------------------------------------------------------------------------- report


def spread(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarize(results: list[dict], encoders: list[str]) -> list[dict]:
    rows = []
    for name in encoders:
        runs = [r for r in results if r["encoder"] == name]
        ok = [r for r in runs if r["status"] == "ok"]
        mean, sd = spread([r["test_ter"] for r in ok if r.get("test_ter") is not None])

        def pick(key: str, ok: list = ok) -> float | None:
            return spread([r[key] for r in ok if r.get(key) is not None])[0]
        rows.append({"encoder": name, "runs": len(runs), "ok": len(ok), "test_ter_mean": mean, "test_ter_sd": sd,
                     "test_ter_per_seed": [r.get("test_ter") for r in ok],
                     "params": next((r.get("params") for r in runs if r.get("params")), None),
                     "encoder_params": next((r.get("encoder_params") for r in runs if r.get("encoder_params")), None),
                     "s_per_step": pick("s_per_step"), "time_to_best_s": pick("time_to_best_s"),
                     "peak_rss_mib": pick("peak_rss_mib"), "rtf_1thread": pick("rtf_1thread"),
                     "ms_per_1k_steps_1thread": pick("ms_per_1k_steps_1thread"),
                     "failed": "; ".join(f"{r['variant']}: {r['reason']}" for r in runs if r["status"] == "failed")})
    return rows


def fmt(value, spec: str = ".3g") -> str:
    return "-" if value is None else format(value, spec)


def write_report(out: Path, report: dict) -> None:
    (out / "report.json").write_text(json.dumps(report, indent=1))
    lines = [f"# Encoder comparison: {', '.join(report['encoders'])}", "",
             f"`{report['command']}`", "",
             (f"Budget per variant: {report['budget']}; seeds: {report['seeds']}. Test TER: mean ± sd over seeds "
             "(per seed: each seed's, in seed order, so one seed that did not learn is seen as such). "
             "Peak memory: the training subprocess's peak resident set (ru_maxrss from os.wait4; DataLoader workers "
             "not included). RTF: forward-pass seconds per media second, one thread, batch 1. Time to best: "
             "training seconds (sum of the epochs' training passes, validation excluded) until the lowest "
             "validation TER; the budget is wall clock, validation included."), "",
             ("| encoder | test TER % | per seed | params (encoder) | vs GRU encoder | s/step | time to best s "
             "| peak RSS MiB | RTF 1 thread | status |"), "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["table"]:
        sized = report["sizing"].get(row["encoder"], {})
        status = f"failed: {row['failed']}" if row["failed"] else "ok"
        ter = "-" if row["test_ter_mean"] is None else f"{row['test_ter_mean']:.2f} ± {row['test_ter_sd']:.2f}"
        per_seed = ", ".join(fmt(value, ".2f") for value in row.get("test_ter_per_seed", [])) or "-"
        lines.append(f"| {row['encoder']} | {ter} | {per_seed} "
                     f"| {fmt(row['params'], ',')} ({fmt(row['encoder_params'], ',')}) "
                     f"| {fmt(sized.get('params_vs_gru'), '+.1%')} | {fmt(row['s_per_step'])} "
                     f"| {fmt(row['time_to_best_s'], '.0f')} | {fmt(row['peak_rss_mib'], '.0f')} "
                     f"| {fmt(row['rtf_1thread'])} | {status} |")
    if report["length_probe"]:
        lines += ["", ("One training step (batch 1, one thread, encoder + CTC head only) against sequence length T "
                  "(benchmarks/long_sequences.py's probe):"), "", "| encoder | T | time s | peak GiB | status |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r['encoder']} | {r['T']} | {fmt(r['time'])} | {fmt(r['peak_gib'])} | {r['status']} |"
                  for r in report["length_probe"]]
    lines += ["", "Validation TER against training time: curves.png."]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    plot_curves(out / "curves.png", report["results"])


def plot_curves(path: Path, results: list[dict]) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for result in results:
        if result.get("curve"):
            seconds, ter = zip(*result["curve"])
            axis.plot(seconds, ter, marker="o", label=result["variant"])
    axis.set_xlabel("training wall-clock time (s, validation passes excluded)")
    axis.set_ylabel("validation TER (%)")
    axis.set_title("validation error against training time")
    if axis.get_legend_handles_labels()[0]:
        axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


# ------------------------------------------------------------------------------------------ driver


def compare(config: str | None, encoders: list[str] | str, out: str | Path, seeds: int = 1,
            budget_minutes: float | None = None, overrides: list[str] = (), lengths: list[int] = (500, 1000, 2000),
            probe_timeout: float = 60.0, command: str = "") -> dict:
    """Train and evaluate every (encoder, seed); write DIR/report.md, report.json, curves.png; the report dict."""
    if isinstance(encoders, str):
        encoders = parse_encoders(encoders)
    else:
        encoders = parse_encoders(",".join(encoders))
    if seeds < 1:
        raise ValueError(f"--seeds must be >= 1, got {seeds}")
    if budget_minutes is not None and not budget_minutes > 0:
        raise ValueError(f"--budget-minutes must be > 0, got {budget_minutes}")
    overrides = [*overrides, "trainer.device=cpu"] if not any(o.startswith("trainer.device=") for o in overrides) \
        else list(overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    resolved = load_config(config, overrides).trainer
    base_seed, epochs = resolved.seed, resolved.max_epochs
    sized = size_variants(config, encoders, overrides)
    for name in encoders:
        if "error" not in sized[name]:
            log.info("%s: %d parameters (encoder %d, %+.1f%% vs the GRU's)", name, sized[name]["params"],
                     sized[name]["encoder_params"], 100 * sized[name]["params_vs_gru"])
    budget_s = budget_minutes * 60 if budget_minutes else None
    results = [run_variant(name, base_seed + k, sized[name], config, overrides, out, budget_s)
               for k in range(seeds) for name in encoders]
    probe = length_probe(sized, list(lengths), 80, probe_timeout) if lengths else []
    report = {"command": command or f"ctcrnn compare --encoders {','.join(encoders)}", "config": config,
              "encoders": encoders, "seeds": seeds,
              "budget": (f"{budget_minutes:g} min wall clock (at most {epochs} epochs)" if budget_minutes
                         else f"{epochs} epochs (trainer.max_epochs)"),
              "overrides": overrides, "sizing": sized, "table": summarize(results, encoders), "results": results,
              "length_probe": probe, "memory_measure": "ru_maxrss of the training subprocess (os.wait4)"}
    write_report(out, report)
    return report


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="YAML recipe in configs/; omitted: the embedded default")
    p.add_argument("--encoders", default="gru,lstm,transformer", help=f"comma-separated: {', '.join(ENCODERS)}")
    p.add_argument("--seeds", type=positive_int, default=1, help="seeds per encoder (trainer.seed, +1, ...)")
    p.add_argument("--budget-minutes", type=positive_float, help="wall-clock training budget per variant "
                   "(default: the config's trainer.max_epochs)")
    p.add_argument("--lengths", default="500,1000,2000",
                   help="sequence lengths for the time/memory-per-step probe ('' to skip)")
    p.add_argument("--out", required=True, help="output folder; rerunning the same command continues it")
    p.add_argument("overrides", nargs="*", help="key.sub=value for every variant, e.g. data.args.train_size=400")


def command_line(args: argparse.Namespace) -> str:
    """The command that reruns (and so continues) this comparison."""
    parts = ["ctcrnn compare"] + ([f"--config {args.config}"] if args.config else []) + [f"--encoders {args.encoders}"]
    parts += [f"--seeds {args.seeds}"] if args.seeds != 1 else []
    parts += [f"--budget-minutes {args.budget_minutes:g}"] if args.budget_minutes else []
    parts += [f"--lengths '{args.lengths}'"] if args.lengths != "500,1000,2000" else []
    return " ".join([*parts, *args.overrides, f"--out {args.out}"])


def run_from_args(args: argparse.Namespace) -> None:
    report = compare(args.config, args.encoders, args.out, seeds=args.seeds, budget_minutes=args.budget_minutes,
                     overrides=args.overrides, lengths=[int(n) for n in args.lengths.split(",") if n.strip()],
                     command=command_line(args))
    print((Path(args.out) / "report.md").read_text())
    failed = [row["encoder"] for row in report["table"] if row["ok"] == 0]
    if failed:
        print(f"failed: {', '.join(failed)} (reasons in the table)")


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["--train-child"]:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
        train_child(argv[1])
        return
    parser = argparse.ArgumentParser(prog="ctcrnn compare", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        run_from_args(parser.parse_args(argv))
    except ValueError as error:
        sys.exit(f"error: {error}")


if __name__ == "__main__":
    main()
