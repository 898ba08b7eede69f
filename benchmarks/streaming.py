"""Live streaming on one CPU thread: compute time per chunk, real-time factor, memory over a long stream, and
the algorithmic latency, for the streaming zoo entries run through ``ctcrnn.streaming.StreamingRecognizer``
(features, model state and greedy decoding all included).

Audio: ``deepspeech2_small_streaming`` at its defaults (16 kHz, 80 log-mel bins, causal conv stack, 3 GRU layers
x 256, lookahead 4 frames), chunks of 20, 80 and 320 ms. Video: ``frame_cnn_rnn_streaming`` (32 x 32 frames at
25 fps), chunks of 1, 4 and 16 frames. Weights are random; the head's blank bias is raised so that, as on real
speech with pauses, most frames are blank (otherwise the transcript of an hour of noise, not the model, would
fill the memory). Per-chunk time: median and 95th percentile over the timed chunks; RTF = compute time / media
time. Memory: the process's RSS every simulated minute of one long stream (default one hour of audio at 80 ms
chunks), reported as first / last / max growth.

    python benchmarks/streaming.py                         # ~2-4 min on a 2-core CPU
    python benchmarks/streaming.py --hours 0.1 --seconds 20   # smoke run
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

import ctcrnn
from ctcrnn.audio.datasets import AudioPipeline
from ctcrnn.audio.features import FeatureConfig
from ctcrnn.streaming import StreamingRecognizer

AUDIO_LABELS = ["<blank>", *"abcdefghijklmnopqrstuvwxyz' "]
VIDEO_LABELS = ["<blank>", *(f"action{i}" for i in range(10))]


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def mostly_blank(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        model.head.bias[0] += 8.0
    return model.eval()


def audio_recognizer() -> tuple[StreamingRecognizer, int]:
    features = FeatureConfig(kind="fbank", sample_rate=16000, n_mels=80, normalize="global")
    pipeline = AudioPipeline(features, {"mean": [0.0] * 80, "std": [1.0] * 80})
    torch.manual_seed(0)
    model = mostly_blank(ctcrnn.create_model("deepspeech2_small_streaming", num_classes=len(AUDIO_LABELS)))
    return StreamingRecognizer(model, AUDIO_LABELS, pipeline.input_spec()), features.sample_rate


def video_recognizer() -> tuple[StreamingRecognizer, float]:
    torch.manual_seed(0)
    model = mostly_blank(ctcrnn.create_model("frame_cnn_rnn_streaming", num_classes=len(VIDEO_LABELS)))
    spec = {"modality": "video", "step_shape": [3, 32, 32], "fps": 25.0}
    return StreamingRecognizer(model, VIDEO_LABELS, spec), 25.0


def time_chunks(recognizer: StreamingRecognizer, chunks: list[torch.Tensor], media_s: float) -> dict:
    recognizer.reset()
    times = []
    for chunk in chunks:
        start = time.perf_counter()
        recognizer.accept(chunk)
        times.append(time.perf_counter() - start)
    times = times[5:]                              # warm-up: the first calls allocate
    ordered = sorted(times)
    return {"median_ms": 1000 * statistics.median(times), "p95_ms": 1000 * ordered[int(0.95 * (len(ordered) - 1))],
            "rtf": sum(times) / (media_s * len(times) / len(chunks))}


def memory_over(recognizer: StreamingRecognizer, chunk: torch.Tensor, chunks: int, per_minute: int) -> list[float]:
    recognizer.reset()
    samples = [rss_mb()]
    for i in range(chunks):
        recognizer.accept(chunk)
        if (i + 1) % per_minute == 0:
            samples.append(rss_mb())
    recognizer.finish()
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="media seconds timed per chunk size")
    parser.add_argument("--hours", type=float, default=1.0, help="length of the memory stream (audio, 80 ms chunks)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)

    audio, rate = audio_recognizer()
    print(f"torch {torch.__version__}, 1 thread; audio: deepspeech2_small_streaming "
          f"({sum(p.numel() for p in audio.model.parameters()) / 1e6:.2f} M parameters), latency {audio.latency()}")
    print(f"{'chunk':>8} {'median ms':>10} {'p95 ms':>8} {'RTF':>7}")
    wave = 0.1 * torch.randn(int(args.seconds * rate), generator=generator)
    for ms in (20, 80, 320):
        r = time_chunks(audio, list(wave.split(rate * ms // 1000)), args.seconds)
        print(f"{ms:>6}ms {r['median_ms']:>10.2f} {r['p95_ms']:>8.2f} {r['rtf']:>7.4f}")

    video, fps = video_recognizer()
    print(f"video: frame_cnn_rnn_streaming ({sum(p.numel() for p in video.model.parameters()) / 1e6:.2f} M), "
          f"latency {video.latency()}")
    frames = torch.rand(int(args.seconds * fps), 3, 32, 32, generator=generator)
    for n in (1, 4, 16):
        r = time_chunks(video, list(frames.split(n)), args.seconds)
        print(f"{n:>4} fr  {r['median_ms']:>10.2f} {r['p95_ms']:>8.2f} {r['rtf']:>7.4f}")

    chunk = 0.1 * torch.randn(rate * 80 // 1000, generator=generator)
    chunks = int(args.hours * 3600 / 0.08)
    start = time.perf_counter()
    samples = memory_over(audio, chunk, chunks, per_minute=750)
    wall = time.perf_counter() - start
    print(f"memory over {args.hours:g} h of audio in 80 ms chunks ({chunks} chunks, {wall:.0f} s, RTF "
          f"{wall / (args.hours * 3600):.4f}): RSS first {samples[0]:.1f} MB, after 1 min {samples[1]:.1f} MB, "
          f"last {samples[-1]:.1f} MB, max {max(samples):.1f} MB; growth after the first minute "
          f"{samples[-1] - samples[1]:+.1f} MB")


if __name__ == "__main__":
    main()
