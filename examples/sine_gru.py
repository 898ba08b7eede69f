"""GRU, LSTM or Transformer on noisy sines: predict the next clean value of a noisy sine, one step at a time.

Each sequence is sin(2π f t + φ) with a random frequency and phase plus Gaussian noise; at every step a
model reads the noisy value and predicts the *clean* value of the next step (forecasting and denoising at
once). Three models of about the same size: ``ctcrnn.nn.cells.GRUCell`` and ``LSTMCell`` (written from their
equations, unrolled here step by step) and a small causal Transformer (sinusoidal positions from
``ctcrnn.nn.transformer``). Prints a table of test error, parameters and time, and draws the learning
curves in one PNG.

    python examples/sine_gru.py                  # under a minute on a CPU
    python examples/sine_gru.py --steps 20 --out /tmp/curves.png

The GRU update that ``GRUCell`` runs (``ctcrnn/nn/cells.py``, ``gru_step``; PyTorch's variant of Cho et al.
2014), equation beside the line that computes it. ``gates_x`` = W_i· x + b_i· for all three gates at once:

    x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)    # reset gate   r  = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = torch.sigmoid(x_z + h_z)    # update gate  z  = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = torch.tanh(x_n + r * h_n)   # candidate    n  = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    h = (1 - z) * n + z * h         # new state    h' = (1 − z) ⊙ n + z ⊙ h

z near 1 keeps the old state (a slow sine is remembered), z near 0 replaces it; r decides how much of the
old state the candidate may read.
"""
from __future__ import annotations

import argparse
import math
import time

import torch
from torch import nn

from ctcrnn.nn.cells import GRUCell, LSTMCell
from ctcrnn.nn.transformer import sinusoidal_positions


def noisy_sines(batch: int, steps: int, generator: torch.Generator, noise: float = 0.1):
    """(inputs (B, T, 1) noisy values, targets (B, T, 1) the clean value one step later)."""
    frequency = 0.02 + 0.08 * torch.rand(batch, 1, generator=generator)          # cycles per step
    phase = 2 * math.pi * torch.rand(batch, 1, generator=generator)
    t = torch.arange(steps + 1, dtype=torch.float32)[None, :]
    clean = torch.sin(2 * math.pi * frequency * t + phase)
    noisy = clean + noise * torch.randn(clean.shape, generator=generator)
    return noisy[:, :-1, None], clean[:, 1:, None]


class CellRegressor(nn.Module):
    """A GRUCell or LSTMCell unrolled over time, a linear read-out of h at every step."""

    def __init__(self, cell: str, hidden: int):
        super().__init__()
        self.cell = (GRUCell if cell == "gru" else LSTMCell)(1, hidden)
        self.readout = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:                           # (B, T, 1) -> (B, T, 1)
        state, outputs = None, []
        for t in range(x.shape[1]):
            state = self.cell(x[:, t], state)
            outputs.append(state if isinstance(self.cell, GRUCell) else state[0])
        return self.readout(torch.stack(outputs, dim=1))


class CausalTransformer(nn.Module):
    """Input projection + sinusoidal positions -> pre-norm layers with a causal mask -> linear read-out."""

    def __init__(self, width: int, layers: int, heads: int = 2):
        super().__init__()
        self.input = nn.Linear(1, width)
        layer = nn.TransformerEncoderLayer(width, heads, width, dropout=0.0, batch_first=True, norm_first=True)
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.readout = nn.Linear(width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.input(x) + sinusoidal_positions(x.shape[1], self.input.out_features, x.device)
        mask = nn.Transformer.generate_square_subsequent_mask(x.shape[1])        # step t sees steps <= t only
        return self.readout(self.layers(h, mask=mask, is_causal=True))


def parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train(model: nn.Module, steps: int, batch: int, length: int, seed: int, test: tuple) -> dict:
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=max(steps, 1))
    curve, start = [], time.perf_counter()
    for step in range(steps):
        x, y = noisy_sines(batch, length, generator)
        loss = nn.functional.mse_loss(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        curve.append(loss.item())
    seconds = time.perf_counter() - start
    with torch.no_grad():
        test_mse = nn.functional.mse_loss(model(test[0]), test[1]).item()
    return {"curve": curve, "test_mse": test_mse, "seconds": seconds, "params": parameters(model)}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps per model")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=60, help="steps per sequence")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="sine_curves.png", help="learning-curve PNG")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (tiny matrices: one is fastest)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    test = noisy_sines(256, args.length, torch.Generator().manual_seed(10_000 + args.seed))
    # Sizes picked for about 3.3k parameters each.
    models = {"GRUCell (ctcrnn.nn.cells)": CellRegressor("gru", 32), "LSTMCell (ctcrnn.nn.cells)": CellRegressor("lstm", 27),
              "Transformer (causal, 2 layers)": CausalTransformer(16, 2)}
    results = {name: train(model, args.steps, args.batch, args.length, args.seed, test) for name, model in models.items()}
    # Baselines that need no training: repeat the last noisy value; predict zero (the signal's variance).
    repeat = nn.functional.mse_loss(test[0], test[1]).item()
    zero = test[1].pow(2).mean().item()
    print(f"{'model':<32}{'test MSE':>10}{'params':>9}{'train s':>9}{'ms/step':>9}")
    for name, r in results.items():
        print(f"{name:<32}{r['test_mse']:>10.4f}{r['params']:>9,}{r['seconds']:>9.1f}"
              f"{1000 * r['seconds'] / max(args.steps, 1):>9.1f}")
    print(f"{'baseline: repeat the last value':<32}{repeat:>10.4f}")
    print(f"{'baseline: predict 0':<32}{zero:>10.4f}")
    plot(results, args.out)
    print(f"learning curves: {args.out}")
    return results


def plot(results: dict, path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    for name, r in results.items():
        axis.plot(r["curve"], label=f"{name} ({r['params']:,} params)")
    axis.set_yscale("log")
    axis.set_xlabel("training step")
    axis.set_ylabel("training MSE (next clean value)")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


if __name__ == "__main__":
    main()
