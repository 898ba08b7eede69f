"""GRU and LSTM written out from their equations: a readable, drop-in stand-in for torch's.

``GRUCell``/``LSTMCell`` and the layers ``GRU``/``LSTM`` take the same arguments, own parameters
with the same names, shapes, gate order and init as ``torch.nn.GRUCell``/``LSTMCell``/``GRU``/
``LSTM`` and return the same values, so ``state_dict``s load across in both directions. They are
the "reference" encoder implementation (``encoder.impl=reference``): slower than cuDNN but every
step is visible Python, which makes them the place to read, debug or modify the recurrence.

Shapes: T time steps, B batch, I input size, H hidden size, G gates (3 for GRU, 4 for LSTM),
L layers, D directions (2 if bidirectional). A recurrent *state* is a tuple: ``(h,)`` for GRU,
``(h, c)`` for LSTM, each (B, H), so one loop serves both cells.

Core module: must never import anything from a modality package (``ctcrnn.video``,
``ctcrnn.audio``, ...).
"""
from __future__ import annotations

import math
import numbers
import warnings
from itertools import accumulate
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

__all__ = ["GRUCell", "LSTMCell", "GRU", "LSTM", "gru_step", "lstm_step"]

State = tuple[Tensor, ...]
Step = Callable[[Tensor, State, Tensor, "Tensor | None"], State]


def gru_step(gates_x: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor | None) -> State:
    """One GRU update. gates_x: (B, 3H) = W_ih x + b_ih, precomputed; state: (h,), h (B, H) -> (h',)."""
    (h,) = state
    x_r, x_z, x_n = gates_x.chunk(3, dim=-1)
    h_r, h_z, h_n = F.linear(h, weight_hh, bias_hh).chunk(3, dim=-1)
    r = torch.sigmoid(x_r + h_r)    # r = σ(W_ir x + b_ir + W_hr h + b_hr)
    z = torch.sigmoid(x_z + h_z)    # z = σ(W_iz x + b_iz + W_hz h + b_hz)
    n = torch.tanh(x_n + r * h_n)   # n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))
    return ((1 - z) * n + z * h,)   # h' = (1 − z) ⊙ n + z ⊙ h


def lstm_step(gates_x: Tensor, state: State, weight_hh: Tensor, bias_hh: Tensor | None) -> State:
    """One LSTM update. gates_x: (B, 4H) = W_ih x + b_ih, precomputed; state: (h, c), each (B, H) -> (h', c')."""
    h, c = state
    x_i, x_f, x_g, x_o = (gates_x + F.linear(h, weight_hh, bias_hh)).chunk(4, dim=-1)
    i = torch.sigmoid(x_i)          # i = σ(W_ii x + b_ii + W_hi h + b_hi)
    f = torch.sigmoid(x_f)          # f = σ(W_if x + b_if + W_hf h + b_hf)
    g = torch.tanh(x_g)             # g = tanh(W_ig x + b_ig + W_hg h + b_hg)
    o = torch.sigmoid(x_o)          # o = σ(W_io x + b_io + W_ho h + b_ho)
    c = f * c + i * g               # c' = f ⊙ c + i ⊙ g
    return o * torch.tanh(c), c     # h' = o ⊙ tanh(c')


def recur(step: Step, gates_x: Tensor, batch_sizes: list[int], state: State,
          weight_hh: Tensor, bias_hh: Tensor | None, reverse: bool = False) -> tuple[Tensor, State]:
    """Run one direction of one layer over a time-major sequence.

    gates_x: (N, G*H), the rows of all steps in time order, ``batch_sizes[t]`` rows at step t
    (non-increasing, as in a PackedSequence; a padded (T, B) batch is ``[B] * T``).
    state: each (B, H) with B = batch_sizes[0]. Returns the outputs h, (N, H), and the final state.
    """
    if not batch_sizes:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    offsets = [0, *accumulate(batch_sizes)]
    outputs: list[Tensor | None] = [None] * len(batch_sizes)
    for t in (reversed(range(len(batch_sizes))) if reverse else range(len(batch_sizes))):
        size = batch_sizes[t]
        new = step(gates_x[offsets[t]:offsets[t + 1]], tuple(s[:size] for s in state), weight_hh, bias_hh)
        # Rows past `size` sit this step out. Forward, their sequence has ended, so they keep its
        # final state; backward, it has not begun yet, so they keep the initial state, from which
        # they start once the backward walk reaches their last step.
        state = new if size == state[0].size(0) else tuple(torch.cat((n, s[size:])) for n, s in zip(new, state))
        outputs[t] = new[0]
    return torch.cat(outputs), state


class _CellBase(nn.Module):
    gates: int
    num_states: int
    step: Step

    def __init__(self, input_size: int, hidden_size: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        self.input_size, self.hidden_size, self.bias = input_size, hidden_size, bias
        self.weight_ih = nn.Parameter(torch.empty(self.gates * hidden_size, input_size, **factory))
        self.weight_hh = nn.Parameter(torch.empty(self.gates * hidden_size, hidden_size, **factory))
        if bias:
            self.bias_ih = nn.Parameter(torch.empty(self.gates * hidden_size, **factory))
            self.bias_hh = nn.Parameter(torch.empty(self.gates * hidden_size, **factory))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Same distribution and parameter order as torch, so equal seeds give equal weights.
        stdv = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}" + ("" if self.bias else ", bias=False")

    def _forward(self, input: Tensor, state: State | None) -> State:
        """input (B, I) or (I,); state: each (B, H) or (H,), or None for zeros."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D instead")
        if state is not None and any(s.dim() not in (1, 2) for s in state):
            raise ValueError(f"{name}: Expected hidden to be 1D or 2D, got {[s.dim() for s in state]}")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        if state is None:
            zeros = input.new_zeros(input.size(0), self.hidden_size)
            state = (zeros,) * self.num_states
        elif not batched:
            state = tuple(s.unsqueeze(0) for s in state)
        new = self.step(F.linear(input, self.weight_ih, self.bias_ih), state, self.weight_hh, self.bias_hh)
        return new if batched else tuple(s.squeeze(0) for s in new)


class GRUCell(_CellBase):
    """torch.nn.GRUCell from the equations: ``cell(x (B, I), h (B, H) | None) -> h' (B, H)``; unbatched works too."""
    gates, num_states, step = 3, 1, staticmethod(gru_step)

    def forward(self, input: Tensor, hx: Tensor | None = None) -> Tensor:
        return self._forward(input, None if hx is None else (hx,))[0]


class LSTMCell(_CellBase):
    """torch.nn.LSTMCell from the equations: ``cell(x (B, I), (h, c) | None) -> (h', c')``, each (B, H)."""
    gates, num_states, step = 4, 2, staticmethod(lstm_step)

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        h, c = self._forward(input, None if hx is None else tuple(hx))
        return h, c


class _LayerBase(nn.Module):
    mode: str
    gates: int
    num_states: int
    step: Step

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 proj_size: int = 0, device=None, dtype=None):
        super().__init__()
        if proj_size:
            if self.mode == "LSTM":
                raise NotImplementedError("ctcrnn.cells.LSTM does not implement proj_size; use torch.nn.LSTM")
            raise ValueError(f"proj_size argument is only supported for LSTM, not {self.mode}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Number) or not 0 <= dropout <= 1:
            raise ValueError("dropout should be a number in range [0, 1] representing the probability "
                             "of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn("dropout option adds dropout after all but last recurrent layer, so non-zero "
                          f"dropout expects num_layers greater than 1, but got dropout={dropout} and "
                          f"num_layers={num_layers}", stacklevel=2)
        if input_size <= 0 or hidden_size <= 0 or num_layers <= 0:
            raise ValueError("input_size, hidden_size and num_layers must be greater than zero")
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bias, batch_first, float(dropout)
        self.bidirectional, self.proj_size = bidirectional, 0
        directions = 2 if bidirectional else 1
        factory = {"device": device, "dtype": dtype}
        # Registration order is torch's (per layer, per direction: w_ih, w_hh, b_ih, b_hh): it fixes
        # state_dict key order and which random numbers the init draws for which weight.
        self._all_weights: list[list[str]] = []
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * directions
            for direction in range(directions):
                suffix = f"_l{layer}" + ("_reverse" if direction else "")
                shapes = {"weight_ih": (self.gates * hidden_size, layer_input),
                          "weight_hh": (self.gates * hidden_size, hidden_size)}
                if bias:
                    shapes |= {"bias_ih": (self.gates * hidden_size,), "bias_hh": (self.gates * hidden_size,)}
                for name, shape in shapes.items():
                    setattr(self, name + suffix, nn.Parameter(torch.empty(shape, **factory)))
                self._all_weights.append([name + suffix for name in shapes])
        self.reset_parameters()

    def reset_parameters(self) -> None:
        stdv = 1.0 / math.sqrt(self.hidden_size)
        for weight in self.parameters():
            nn.init.uniform_(weight, -stdv, stdv)

    @property
    def all_weights(self) -> list[list[nn.Parameter]]:
        return [[getattr(self, name) for name in names] for names in self._all_weights]

    def flatten_parameters(self) -> None:
        """No-op, for code written against torch's RNNs (there is no cuDNN weight buffer here)."""

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}"
        defaults = {"num_layers": 1, "bias": True, "batch_first": False, "dropout": 0.0, "bidirectional": False}
        return s + "".join(f", {k}={getattr(self, k)}" for k, v in defaults.items() if getattr(self, k) != v)

    def _direction_weights(self, layer: int, direction: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        return (getattr(self, "weight_ih" + suffix), getattr(self, "weight_hh" + suffix),
                getattr(self, "bias_ih" + suffix, None), getattr(self, "bias_hh" + suffix, None))

    def _forward(self, input: Tensor | PackedSequence, hx: State | None):
        """input: (T, B, I), (B, T, I) if batch_first, (T, I) unbatched, or a PackedSequence.
        hx: each (L*D, B, H) ((L*D, H) unbatched), batch in the caller's order; None for zeros.
        Returns output ((T, B, D*H) or like the input) and the final state, each (L*D, B, H)."""
        name, directions = self.mode, 2 if self.bidirectional else 1
        packed = isinstance(input, PackedSequence)
        if packed:
            # Packed rows are time-major and sorted by decreasing length; hx follows the caller's order.
            data, batch_sizes_tensor, sorted_indices, unsorted_indices = input
            batch_sizes, batched = batch_sizes_tensor.tolist(), True
        else:
            if input.dim() not in (2, 3):
                raise ValueError(f"{name}: Expected input to be 2D or 3D, got {input.dim()}D instead")
            batched, batch_dim = input.dim() == 3, 0 if self.batch_first else 1
            if not batched:
                input = input.unsqueeze(batch_dim)
            if self.batch_first:
                input = input.transpose(0, 1)
            steps, batch = input.shape[:2]
            # A padded batch is a packed one whose batch size never shrinks: one code path serves both.
            data, batch_sizes = input.reshape(steps * batch, -1), [batch] * steps
            sorted_indices = unsorted_indices = None
        if data.size(-1) != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected {self.input_size}, "
                               f"got {data.size(-1)}")
        expected = (self.num_layers * directions, batch_sizes[0] if batch_sizes else 0, self.hidden_size)
        if hx is None:
            hx = (data.new_zeros(expected),) * self.num_states
        else:
            if any(s.dim() != (3 if batched else 2) for s in hx):
                raise RuntimeError(f"For {'batched 3-D' if batched else 'unbatched 2-D'} input, hx should "
                                   f"also be {3 if batched else 2}-D but got {[s.dim() for s in hx]}-D tensor")
            hx = tuple(s if batched else s.unsqueeze(1) for s in hx)
            if sorted_indices is not None:
                hx = tuple(s.index_select(1, sorted_indices) for s in hx)
            for s in hx:
                if s.shape != expected:
                    raise RuntimeError(f"Expected hidden size {expected}, got {list(s.shape)}")

        layer_input, finals = data, []
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(directions):
                w_ih, w_hh, b_ih, b_hh = self._direction_weights(layer, direction)
                gates_x = F.linear(layer_input, w_ih, b_ih)  # every step's input projection in one matmul
                initial = tuple(s[layer * directions + direction] for s in hx)
                out, final = recur(self.step, gates_x, batch_sizes, initial, w_hh, b_hh, reverse=direction == 1)
                outputs.append(out)
                finals.append(final)
            layer_input = torch.cat(outputs, dim=-1) if directions == 2 else outputs[0]
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, training=True)
        h_n = tuple(torch.stack([f[k] for f in finals]) for k in range(self.num_states))

        if packed:
            if unsorted_indices is not None:
                h_n = tuple(s.index_select(1, unsorted_indices) for s in h_n)
            return PackedSequence(layer_input, batch_sizes_tensor, sorted_indices, unsorted_indices), h_n
        output = layer_input.view(steps, batch, -1)
        if self.batch_first:
            output = output.transpose(0, 1)
        if not batched:
            output, h_n = output.squeeze(batch_dim), tuple(s.squeeze(1) for s in h_n)
        return output, h_n


class GRU(_LayerBase):
    """torch.nn.GRU from the equations: ``gru(x, h0 | None) -> (output, h_n)``, h_n (L*D, B, H)."""
    mode, gates, num_states, step = "GRU", 3, 1, staticmethod(gru_step)

    def forward(self, input: Tensor | PackedSequence, hx: Tensor | None = None):
        output, (h_n,) = self._forward(input, None if hx is None else (hx,))
        return output, h_n


class LSTM(_LayerBase):
    """torch.nn.LSTM from the equations (no proj_size): ``lstm(x, (h0, c0) | None) -> (output, (h_n, c_n))``."""
    mode, gates, num_states, step = "LSTM", 4, 2, staticmethod(lstm_step)

    def forward(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None):
        output, (h_n, c_n) = self._forward(input, None if hx is None else tuple(hx))
        return output, (h_n, c_n)
