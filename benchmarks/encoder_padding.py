"""Time one forward+backward of ctcrnn's RNNEncoder (one RNN per direction over the padded batch,
the backward one on sequences reversed within their lengths) against the PackedSequence route
through a multi-layer bidirectional torch RNN, on the same batch, in one run, and print the ratio.

    python benchmarks/encoder_padding.py [--batch 16] [--steps 150] [--hidden 96] [--repeats 5]
"""
import argparse
import time

import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ctcrnn.nn.encoder import EncoderConfig, RNNEncoder


def best_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--features", type=int, default=128)
    parser.add_argument("--hidden", type=int, default=96)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    x = torch.randn(args.batch, args.steps, args.features, requires_grad=True)
    lengths = torch.randint(args.steps // 3, args.steps + 1, (args.batch,))
    lengths[0] = args.steps
    print(f"B={args.batch} T={args.steps} F={args.features} H={args.hidden} layers={args.layers} "
          f"threads={torch.get_num_threads()}")
    print(f"{'cell':<6}{'ours (s)':>10}{'packed (s)':>12}{'packed/ours':>13}")
    for cell, rnn_class in (("gru", torch.nn.GRU), ("lstm", torch.nn.LSTM)):
        ours = RNNEncoder(args.features, EncoderConfig(cell=cell, hidden_size=args.hidden, num_layers=args.layers))
        packed_rnn = rnn_class(args.features, args.hidden, args.layers, batch_first=True, bidirectional=True)

        def run_ours():
            ours(x, lengths).sum().backward()

        def run_packed():
            out, _ = packed_rnn(pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False))
            pad_packed_sequence(out, batch_first=True)[0].sum().backward()

        a, b = best_time(run_ours, args.repeats), best_time(run_packed, args.repeats)
        print(f"{cell:<6}{a:>10.3f}{b:>12.3f}{b / a:>13.2f}")


if __name__ == "__main__":
    main()
