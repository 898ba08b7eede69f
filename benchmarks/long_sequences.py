"""Peak memory and time of one training step versus sequence length T: ctcrnn's bidirectional GRU and
LSTM encoders against a Transformer encoder of similar size, each under a linear CTC head and
``F.ctc_loss`` on a short random target (the claim that RNNs suit very long sequences, measured).

One step = forward, CTC loss, backward, AdamW step, on a batch of B sequences of T frames. Every
(model, T) runs in a fresh subprocess, so its peak memory is not hidden by an earlier, larger run:
peak = the child's peak RSS (VmHWM) minus its RSS once the model and optimizer exist (CPU), or
``torch.cuda.max_memory_allocated`` over the same baseline (``--device cuda``). Time = median of up
to ``--steps`` steps after one warm-up step, stopping once the timed steps took ``--time-budget``
seconds; where the warm-up alone took longer, it is the time (marked *). A run that needs more than
``--max-gb`` over its baseline (of address space on CPU, a little above RSS: RLIMIT_AS, which torch
reports as a failed allocation; the per-process memory fraction on CUDA; the parent also polls the
child's RSS) is reported as "OOM > X GiB", one that runs past ``--timeout`` as "timeout"; a model is
not run at larger T once it failed. The peak covers all of a run's steps, so it includes what
glibc's malloc keeps after the first step: runs timed on the warm-up step alone (*) read lower, by
up to a third at small T.

Models: ``gru``/``lstm`` are ``ctcrnn.encoder.RNNEncoder`` (fused torch RNNs, one per direction);
``transformer`` is ``torch.nn.TransformerEncoder`` (pre-norm, sinusoidal positions, no dropout)
with torch's default attention dispatch; ``transformer-math`` forces the math SDPA kernel, which
materialises the (T, T) attention matrix. The SDPA kernel that actually ran is read from the
profiler on the warm-up step and printed.

    python benchmarks/long_sequences.py                                   # CPU, 1k..64k, ~13 min on 2 busy cores
    python benchmarks/long_sequences.py --lengths 500 1000 --models gru transformer --steps 1
    python benchmarks/long_sequences.py --device cuda --max-gb 120 --lengths 1000 4000 16000 64000 256000

CPU memory is read from /proc (Linux). ``probe(models, lengths, **options)`` runs the same from Python;
``ctcrnn compare`` loads this file by path for its short time/memory-vs-length table (ctcrnn never imports it
as a module, so an installed package without benchmarks/ just skips that table).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn.functional as F
from torch import nn

from ctcrnn.nn.encoder import EncoderConfig, RNNEncoder

MODELS = ("gru", "lstm", "transformer", "transformer-math")
GIB = 2 ** 30


class RNNCTC(nn.Module):
    """(B, T, F) -> (B, T, V) log-probs: ctcrnn's RNN encoder and a linear CTC head."""

    def __init__(self, cell: str, features: int, hidden: int, layers: int, vocab: int):
        super().__init__()
        self.encoder = RNNEncoder(features, EncoderConfig(cell=cell, impl="fused", hidden_size=hidden,
                                                          num_layers=layers, bidirectional=True))
        self.head = nn.Linear(self.encoder.out_dim, vocab)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x, lengths)).log_softmax(-1)


def sinusoidal_positions(steps: int, width: int, device) -> torch.Tensor:
    """(T, width) fixed positions as in "Attention is all you need"; works for any T (nothing learned)."""
    position = torch.arange(steps, device=device, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, width, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / width))
    table = torch.zeros(steps, width, device=device)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table


class TransformerCTC(nn.Module):
    """(B, T, F) -> (B, T, V) log-probs: input projection + sinusoidal positions, full self-attention
    (no mask: every sequence in the batch has length T), a linear CTC head."""

    def __init__(self, features: int, width: int, heads: int, ffn: int, layers: int, vocab: int):
        super().__init__()
        self.input = nn.Linear(features, width)
        layer = nn.TransformerEncoderLayer(width, heads, ffn, dropout=0.0, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.head = nn.Linear(width, vocab)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        h = self.input(x) + sinusoidal_positions(x.shape[1], self.input.out_features, x.device)
        return self.head(self.encoder(h)).log_softmax(-1)


def build_model(name: str, args) -> nn.Module:
    if name in ("gru", "lstm"):
        return RNNCTC(name, args.features, args.hidden, args.layers, args.vocab)
    return TransformerCTC(args.features, args.width, args.heads, args.ffn, args.transformer_layers, args.vocab)


def attention_context(name: str):
    if name == "transformer-math":
        from torch.nn.attention import SDPBackend, sdpa_kernel
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


def proc_status_gib(field: str, pid: str = "self") -> float:
    """VmRSS / VmHWM / VmSize of a process from /proc, in GiB (0 if the process is gone)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024 / GIB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0.0


def is_out_of_memory(error: BaseException) -> bool:
    text = str(error)
    # The allocator says "can't allocate memory"; composite kernels (the CPU GRU) say std::bad_alloc.
    return isinstance(error, (MemoryError, torch.cuda.OutOfMemoryError)) or "can't allocate memory" in text \
        or "bad_alloc" in text or "out of memory" in text.lower()


# ---------------------------------------------------------------------------------------------- child


def run_child(args) -> None:
    """One (model, T) in this fresh process; JSON lines to ``args.result_file``: baseline, then result."""
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = build_model(args.model, args).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)

    def report(**fields) -> None:
        with open(args.result_file, "a") as out:
            out.write(json.dumps(fields) + "\n")

    if device.type == "cuda":
        torch.cuda.synchronize()
        baseline = torch.cuda.memory_allocated() / GIB
        total = torch.cuda.get_device_properties(device).total_memory / GIB
        torch.cuda.set_per_process_memory_fraction(min(1.0, (baseline + args.max_gb) / total), device)
        torch.cuda.reset_peak_memory_stats()
    else:
        baseline = proc_status_gib("VmRSS")
        # The cap on address space over what the process has mapped now: torch turns an allocation past
        # it into "can't allocate memory", which ends the run as OOM instead of waking the kernel's killer.
        limit = int((proc_status_gib("VmSize") + args.max_gb) * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    report(kind="baseline", baseline_gib=baseline, threads=torch.get_num_threads())

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        # Inputs are made inside the step so that they count in the peak of every T.
        x = torch.randn(args.batch, args.length, args.features, device=device)
        lengths = torch.full((args.batch,), args.length, dtype=torch.long)
        targets = torch.randint(1, args.vocab, (args.batch, args.target_length), device=device)
        target_lengths = torch.full((args.batch,), args.target_length, dtype=torch.long)
        optimizer.zero_grad(set_to_none=True)
        with attention_context(args.model):
            log_probs = model(x, lengths.to(device))
        loss = F.ctc_loss(log_probs.transpose(0, 1), targets, lengths, target_lengths, blank=0)
        loss.backward()
        optimizer.step()
        sync()
        return loss.item()

    stage = "warm-up step"
    try:
        kernels = []
        started = time.perf_counter()
        if args.model.startswith("transformer"):
            activities = [torch.profiler.ProfilerActivity.CPU]
            with torch.profiler.profile(activities=activities) as profile:
                loss = step()
            kernels = sorted({e.name for e in profile.events()
                              if "attention" in e.name and ("_flash" in e.name or "_efficient" in e.name
                                                            or "_math" in e.name or "cudnn" in e.name)})
        else:
            loss = step()
        warm_up = time.perf_counter() - started
        # Long steps are timed fewer times: the warm-up's one-off costs (allocator, oneDNN primitives) are
        # well under a second, so past --time-budget the warm-up step itself is the figure.
        times = [] if warm_up <= args.time_budget else None
        while times is not None and len(times) < args.steps and sum(times) < args.time_budget:
            stage = f"timed step {len(times) + 1}"
            started = time.perf_counter()
            loss = step()
            times.append(time.perf_counter() - started)
    except (RuntimeError, MemoryError) as error:
        if not is_out_of_memory(error):
            raise
        report(kind="result", status="oom", stage=stage, message=str(error).splitlines()[0][:300])
        return
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / GIB - baseline
    else:
        peak = proc_status_gib("VmHWM") - baseline
    report(kind="result", status="ok", times=times or [warm_up], time=statistics.median(times or [warm_up]),
           warm_up_only=not times, peak_gib=peak, loss=loss, kernels=kernels)


# --------------------------------------------------------------------------------------------- parent


def run_one(model: str, length: int, args) -> dict:
    """Run one (model, T) in a subprocess, polling it for the time cap and (as a second guard) its RSS."""
    with tempfile.TemporaryDirectory() as folder:
        result_file, log_file = os.path.join(folder, "result.jsonl"), os.path.join(folder, "log.txt")
        command = [sys.executable, os.path.abspath(__file__), "--child", "--model", model, "--length", str(length),
                   "--result-file", result_file] + args.shared_argv
        started = time.perf_counter()
        with open(log_file, "w") as log:
            child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        baseline, killed = None, None
        while child.poll() is None:
            time.sleep(0.05)
            if time.perf_counter() - started > args.timeout:
                killed = {"status": "timeout"}
            if baseline is None and os.path.exists(result_file):
                with open(result_file) as lines:
                    first = lines.readline()
                if first.endswith("\n"):
                    baseline = json.loads(first)["baseline_gib"]
            if args.device == "cpu" and baseline is not None \
                    and proc_status_gib("VmRSS", str(child.pid)) - baseline > args.max_gb:
                killed = {"status": "oom", "stage": "killed by the RSS poll"}
            if killed:
                child.kill()
                child.wait()
                return {**killed, "wall": time.perf_counter() - started}
        lines = []
        if os.path.exists(result_file):
            with open(result_file) as written:
                lines = [json.loads(line) for line in written]
        results = [line for line in lines if line["kind"] == "result"]
        if results:
            return {**results[-1], "wall": time.perf_counter() - started}
        with open(log_file) as log:
            tail = log.read()[-2000:]
        # Killed by a signal with no result: most likely the kernel's OOM killer.
        return {"status": "crash", "returncode": child.returncode, "log": tail,
                "wall": time.perf_counter() - started}


def cell(result: dict | None, args) -> str:
    if result is None:
        return "-"
    if result["status"] == "ok":
        return f"{result['time']:7.2f}{'*' if result['warm_up_only'] else ' '} {result['peak_gib']:8.3f}"
    if result["status"] == "oom":
        return f"OOM > {args.max_gb:g} GiB"
    if result["status"] == "timeout":
        return f"timeout > {args.timeout:g} s"
    return f"crash (rc {result['returncode']})"


def shared_argv(args) -> list[str]:
    """Everything a child needs besides its (model, T), passed on as given."""
    return [f"--{key.replace('_', '-')}={getattr(args, key)}" for key in (
        "batch", "steps", "time_budget", "device", "max_gb", "threads", "features", "vocab", "target_length", "hidden",
        "layers", "width", "heads", "ffn", "transformer_layers")]


def probe(models, lengths, **options) -> dict[tuple[str, int], dict]:
    """The probe as a function: {(model, T): result} (``status`` ok/oom/timeout/crash, ``time`` s, ``peak_gib``)
    for each model at each T, every run in a fresh subprocess; ``options`` are the command-line options
    (``hidden=64, threads=1, steps=1, timeout=60``). A model is not run at larger T once it failed."""
    args = make_parser().parse_args([])
    for key, value in options.items():
        if not hasattr(args, key):
            raise TypeError(f"probe() got an unknown option {key!r}")
        setattr(args, key, value)
    args.shared_argv = shared_argv(args)
    results: dict[tuple[str, int], dict] = {}
    for name in models:
        for length in lengths:
            results[(name, length)] = run_one(name, length, args)
            if results[(name, length)]["status"] != "ok":
                break
    return results


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    parser.add_argument("--lengths", nargs="+", type=int,
                        default=[1000, 2000, 4000, 8000, 16000, 32000, 64000], help="sequence lengths T (frames)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step (median)")
    parser.add_argument("--time-budget", type=float, default=10.0,
                        help="no further timed step once the timed ones took this long (s); a warm-up longer "
                             "than this is itself the time (marked *)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--max-gb", type=float, default=16.0, help="memory cap over each run's baseline (GiB)")
    parser.add_argument("--timeout", type=float, default=120.0, help="wall-time cap per (model, T) run (s)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each run (0: torch's default)")
    parser.add_argument("--features", type=int, default=80, help="input features per frame")
    parser.add_argument("--vocab", type=int, default=32, help="CTC classes, blank included")
    parser.add_argument("--target-length", type=int, default=20, help="labels in each random target")
    parser.add_argument("--hidden", type=int, default=256, help="RNN units per direction")
    parser.add_argument("--layers", type=int, default=2, help="RNN layers (bidirectional)")
    parser.add_argument("--width", type=int, default=256, help="Transformer d_model")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--ffn", type=int, default=1024, help="Transformer feed-forward width")
    parser.add_argument("--transformer-layers", type=int, default=3)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    parser.add_argument("--length", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--result-file", help=argparse.SUPPRESS)
    return parser


def main() -> None:
    parser = make_parser()
    args = parser.parse_args()
    if args.child:
        run_child(args)
        return
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device on this machine")
    args.shared_argv = shared_argv(args)
    with open("/proc/meminfo") as meminfo:
        available = next(int(line.split()[1]) for line in meminfo if line.startswith("MemAvailable")) * 1024 / GIB
    if args.device == "cpu" and available < args.max_gb + 1:
        print(f"warning: only {available:.1f} GiB available, below --max-gb {args.max_gb:g} + 1: the kernel's "
              f"OOM killer may end a run before the cap does (lower --max-gb)", file=sys.stderr)

    counts = {name: sum(p.numel() for p in build_model(name, args).parameters()) for name in args.models}
    print(f"one training step (forward, CTC loss, backward, AdamW), batch {args.batch}, {args.features}-d input, "
          f"{args.vocab} classes, target {args.target_length} labels, device {args.device}, "
          f"torch {torch.__version__}, {args.threads or torch.get_num_threads()} threads")
    print(f"RNNs: bidirectional, {args.layers} x {args.hidden} per direction; Transformer: {args.transformer_layers} "
          f"layers, d_model {args.width}, {args.heads} heads, FFN {args.ffn}")
    print(f"caps per run: {args.max_gb:g} GiB over baseline, {args.timeout:g} s; time = median of up to {args.steps} "
          f"steps after a warm-up, within {args.time_budget:g} s (*: the warm-up step alone); "
          f"peak = {'max_memory_allocated' if args.device == 'cuda' else 'peak RSS'} over baseline", flush=True)
    results: dict[tuple[str, int], dict] = {}
    kernels: dict[str, set] = {name: set() for name in args.models}
    for name in args.models:
        for length in args.lengths:
            result = run_one(name, length, args)
            results[(name, length)] = result
            kernels[name].update(result.get("kernels", []))
            timed = f", {len(result['times'])} timed" if result["status"] == "ok" else ""
            print(f"  {name:<17} T={length:<7} {cell(result, args).strip():<22} "
                  f"(run took {result['wall']:.1f} s{timed})", flush=True)
            if result["status"] == "crash":
                print(result["log"], file=sys.stderr)
            if result["status"] != "ok":
                break  # larger T would fail too
    width = 20
    print()
    print(f"{'T':>7}  " + "".join(f"{name:>{width}}" for name in args.models))
    print(f"{'':>7}  " + "".join(f"{'time s  peak GiB':>{width}}" for _ in args.models))
    for length in args.lengths:
        print(f"{length:>7}  " + "".join(f"{cell(results.get((name, length)), args):>{width}}" for name in args.models))
    print(f"{'params':>7}  " + "".join(f"{counts[name] / 1e6:>{width - 1}.2f}M" for name in args.models))
    for name in args.models:
        if name.startswith("transformer"):
            print(f"{name}: attention kernel {', '.join(sorted(kernels[name])) or 'not seen (no run finished a step)'}")


if __name__ == "__main__":
    main()
