"""DeepSpeech2-small on DTMF audio: training steps/s of ctcrnn against a minimal hand-written PyTorch loop,
and inference real-time factor on one thread.

Training: the same model, the same batches (collated once, so data loading is out of both), in the same
process, two copies stepping alternately batch by batch so machine noise hits both alike. "ctcrnn" is the trainer's own
``Stepper`` (feasibility check, CTC loss, clipping, scheduler, non-finite guard); "minimal" is
``model -> F.ctc_loss -> backward -> clip -> AdamW.step -> scheduler.step`` written out by hand. A third figure runs the
trainer's real data path (generation, features, bucketing) to show what the loader costs.

Inference: log-mel features plus the model on single utterances, one thread; RTF = compute time / audio time.

    python benchmarks/audio_training.py                 # ~2 min on a 2-core CPU
    python benchmarks/audio_training.py --steps 40 --rounds 5
"""
from __future__ import annotations

import argparse
import math
import statistics
import time

import torch
import torch.nn.functional as F

import ctcrnn  # noqa: F401  (registries)
from ctcrnn.data import build_dataset, collate
from ctcrnn.registry import create_model
from ctcrnn.training.stepping import Stepper
from ctcrnn.data import make_loader
from ctcrnn.training.trainer import cosine_with_warmup

FEATURES = {"kind": "fbank", "sample_rate": 8000, "n_mels": 40, "win_ms": 25.0, "hop_ms": 10.0}


def make_batches(dataset, batch_size: int, count: int) -> list[dict]:
    return [collate([dataset[i] for i in range(b * batch_size, (b + 1) * batch_size)]) for b in range(count)]


def new_model(num_classes: int, seed: int = 0):
    torch.manual_seed(seed)
    model = create_model("deepspeech2_small", num_classes=num_classes, in_shape=(40,))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, cosine_with_warmup(10, 10_000))
    return model.train(), optimizer, scheduler


def ctcrnn_step(model, stepper, batch) -> None:
    stepper.accumulate(batch)
    stepper.step()


def minimal_step(model, optimizer, scheduler, batch) -> None:
    """The same work written out by hand: forward, summed CTC / B, backward, clip, AdamW, scheduler."""
    log_probs, out_lengths = model(batch["inputs"], batch["lengths"])
    targets = torch.cat([torch.tensor(t) for t in batch["targets"]])
    target_lengths = torch.tensor([len(t) for t in batch["targets"]])
    loss = F.ctc_loss(log_probs.transpose(0, 1), targets, out_lengths, target_lengths,
                      reduction="sum") / len(target_lengths)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    optimizer.step()
    scheduler.step()


def interleaved_round(batches, num_classes: int) -> tuple[float, float]:
    """(ctcrnn steps/s, minimal steps/s): two fresh copies of the model step through the same batches,
    alternating per batch (and which goes first), so machine noise lands on both alike."""
    ours_model, ours_opt, ours_sched = new_model(num_classes)
    stepper = Stepper(ours_model, ours_opt, ours_sched, torch.device("cpu"), grad_clip=5.0)
    theirs = new_model(num_classes)
    ours_s = theirs_s = 0.0
    for i, batch in enumerate(batches):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            started = time.perf_counter()
            if which == 0:
                ctcrnn_step(ours_model, stepper, batch)
                ours_s += time.perf_counter() - started
            else:
                minimal_step(*theirs, batch)
                theirs_s += time.perf_counter() - started
    return len(batches) / ours_s, len(batches) / theirs_s


def loader_steps(dataset, batch_size: int, steps: int, num_classes: int, workers: int) -> float:
    """The trainer's data path too: items generated and featurised in ``workers`` DataLoader workers.
    Unshuffled and unbucketed, so the batches are the very ones the other two loops get ready-made."""
    model, optimizer, scheduler = new_model(num_classes)
    loader = make_loader(dataset, batch_size, workers, torch.device("cpu"))
    stepper = Stepper(model, optimizer, scheduler, torch.device("cpu"), grad_clip=5.0)
    started, done = time.perf_counter(), 0
    for batch in loader:
        stepper.accumulate(batch)
        stepper.step()
        done += 1
        if done == steps:
            break
    return done / (time.perf_counter() - started)


@torch.no_grad()
def real_time_factor(dataset, count: int) -> tuple[float, float]:
    """(RTF, seconds of audio) over ``count`` test utterances, one at a time, features included, 1 thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model, _, _ = new_model(len(dataset.labels))
    model.eval()
    audio_s = compute_s = 0.0
    try:
        for i in range(count):
            wave = dataset.load(dataset.utterances[i], 8000)
            started = time.perf_counter()
            feats = dataset.pipeline(wave)
            model(feats[None], torch.tensor([feats.shape[0]]))
            compute_s += time.perf_counter() - started
            audio_s += wave.shape[0] / 8000
    finally:
        torch.set_num_threads(threads)
    return compute_s / audio_s, audio_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers for the data-path figure")
    parser.add_argument("--rtf-utterances", type=int, default=100)
    args = parser.parse_args()

    args_data = {"train_size": args.batch_size * args.steps, "test_size": args.rtf_utterances, "features": FEATURES}
    train = build_dataset("synthetic_dtmf", "train", args_data)
    test = build_dataset("synthetic_dtmf", "test", args_data)
    num_classes = len(train.labels)
    batches = make_batches(train, args.batch_size, args.steps)
    frames = statistics.mean(int(b["lengths"].max()) for b in batches)
    print(f"deepspeech2_small, {sum(p.numel() for p in new_model(num_classes)[0].parameters()) / 1e6:.2f}M "
          f"parameters, batch {args.batch_size} x ~{frames:.0f} frames (10 ms), {torch.get_num_threads()} threads")
    interleaved_round(batches[:2], num_classes)  # warm-up
    ours, theirs = zip(*(interleaved_round(batches, num_classes) for _ in range(args.rounds)))
    ratios = [a / b for a, b in zip(ours, theirs)]
    print(f"train steps/s   ctcrnn Stepper {statistics.median(ours):6.2f}   minimal loop "
          f"{statistics.median(theirs):6.2f}   ratio {statistics.median(ratios):.3f} "
          f"(per round: {', '.join(f'{r:.3f}' for r in ratios)})")
    with_data = loader_steps(train, args.batch_size, args.steps, num_classes, args.workers)
    print(f"train steps/s   with ctcrnn's data path ({args.workers} worker): {with_data:6.2f}   "
          f"ratio to minimal loop on ready batches {with_data / statistics.median(theirs):.3f}")
    rtf, seconds = real_time_factor(test, args.rtf_utterances)
    print(f"inference (1 thread, features + model, one utterance at a time): RTF {rtf:.4f} over {seconds:.0f} s "
          f"of audio = {1 / rtf:.0f}x faster than real time")
    if not all(math.isfinite(r) for r in ratios):
        raise SystemExit("non-finite timing")


if __name__ == "__main__":
    main()
